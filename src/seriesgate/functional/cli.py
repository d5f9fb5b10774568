"""``seriesgate functional``: run the Avocado functional tests on QEMU builds in the test env."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from seriesgate.errors import EXIT_GATE_FAILS, EXIT_PASS, InputError
from seriesgate.functional.model import FunctionalResults, Status
from seriesgate.paths import results_root


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "functional",
        help="run the functional tests (Avocado) on baseline/patched QEMU in the test environment",
        description="Boot the test environment once and run the Avocado functional tests on "
        "each build; failed tests are retried once. Results (Avocado jobs, measurements) go "
        "under --results-dir.",
    )
    p.add_argument(
        "--build",
        choices=("baseline", "patched", "repaired", "both"),
        default="both",
        help="which build(s) to test (both: baseline and patched)",
    )
    p.add_argument("--tags", action="append", help="Avocado tag filter (repeatable, OR)")
    p.add_argument(
        "--bin",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="QEMU binary for build NAME (e.g. baseline=/path/qemu-system-x86_64)",
    )
    p.add_argument("--firmware-dir", action="append", default=[], type=Path, help="QEMU -L dir")
    p.add_argument("-p", dest="params", action="append", default=[], help="extra Avocado -p")
    p.add_argument("--no-retry", action="store_true", help="do not retry failed tests")
    p.add_argument("--results-dir", type=Path, help="default: results/functional-<time>")
    p.add_argument("--test", action="append", default=[], help="Avocado test reference")
    p.add_argument(
        "--use-va",
        action="store_true",
        help="load vdpa_sim with use_va=1 (dead datapath with anonymous RAM: tests must fail)",
    )
    p.set_defaults(func=run)


def _binaries(args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, Path]:
    given: dict[str, Path] = {}
    for spec in args.bin:
        name, _, path = spec.partition("=")
        if not path:
            raise InputError(f"--bin wants NAME=PATH, got {spec!r}")
        if not Path(path).is_file():
            raise InputError(f"--bin {name}: {path} is not a file")
        given[name] = Path(path).resolve()
    missing = [n for n in names if n not in given]
    if missing:
        raise InputError(
            f"no QEMU binary for build(s) {', '.join(missing)}",
            hint="pass --bin NAME=PATH (the build stage's cache_dir()/bin/<commit>/...)",
        )
    return {n: given[n] for n in names}


def summary_lines(results: FunctionalResults) -> list[str]:
    lines = []
    for o in results.outcomes:
        extra = " (flaky: passed on retry)" if o.flaky else ""
        reason = f": {o.fail_reason.splitlines()[0][:160]}" if o.fail_reason else ""
        note = f" [{o.retry_note}]" if o.retry_note else ""
        lines.append(f"{o.build:9} {o.status.value:6} {o.time:6.1f}s {o.name}{extra}{note}{reason}")
    return lines


def run(args: argparse.Namespace) -> int:
    from seriesgate.functional.runner import binaries_of, run_functional
    from seriesgate.testenv import prepare

    names = ("baseline", "patched") if args.build == "both" else (args.build,)
    binaries = _binaries(args, names)
    binaries_of(binaries, names)
    results_dir = args.results_dir or results_root() / time.strftime("functional-%Y%m%d-%H%M%S")
    env = prepare()
    results = run_functional(
        binaries,
        env,
        results_dir=results_dir,
        tags=args.tags,
        builds=names,
        params=args.params,
        retry=not args.no_retry,
        firmware_dirs=[d.resolve() for d in args.firmware_dir] or None,
        tests=args.test,
        use_va=args.use_va,
    )
    for line in summary_lines(results):
        print(line)
    print(f"results: {results_dir}")
    bad = [o for o in results.outcomes if o.status not in (Status.PASS, Status.SKIP)]
    return EXIT_GATE_FAILS if bad else EXIT_PASS
