"""Run the Avocado jobs for several builds in one go (inside the test environment).

``python -m seriesgate.functional.jobs --results-dir DIR --build NAME=QEMU [...]`` runs one
Avocado job per build (``DIR/<build>/job-*``); then, with every build's results in hand, it
re-runs once the failures a second attempt could change the verdict of
(:mod:`seriesgate.functional.retry`; ``DIR/<build>-retry/job-*``), and writes
``DIR/jobs.json`` saying which job directory holds which build's first run and retries, and
why each failure was or was not retried. ``--reuse NAME=INDEX``: build NAME's first job is
already known (a cached baseline, or a build that finished in an earlier boot of the VM).
The host side (:mod:`seriesgate.functional.runner`) starts this once per L1 boot, since
booting the test VM is the costly part; the jobs run through the warm Avocado of
:mod:`seriesgate.functional.zygote` (``$SERIESGATE_WARM_AVOCADO=0``: without).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from seriesgate.functional import guestpool, zygote
from seriesgate.paths import PROJECT_ROOT

FUNCTIONAL_DIR = PROJECT_ROOT / "tests" / "functional"
AVOCADO_CFG = PROJECT_ROOT / "avocado.cfg"
# Owned by the testenv stage: checks the environment itself, not a QEMU build.
NOT_BUILD_TESTS = ("test_testenv_smoke.py",)
FAILED = ("FAIL", "ERROR", "INTERRUPTED")
# "0": a fresh Avocado process per job and per test, no warm server (for comparing; zygote).
WARM_AVOCADO_ENV = "SERIESGATE_WARM_AVOCADO"


def test_files(directory: Path = FUNCTIONAL_DIR) -> list[Path]:
    """The functional test files that test a QEMU build."""
    return sorted(p for p in directory.glob("test_*.py") if p.name not in NOT_BUILD_TESTS)


def avocado_bin() -> Path:
    """Avocado from the same environment as this Python (the project's venv)."""
    return Path(sys.executable).parent / "avocado"


def newest_job(results: Path) -> Path | None:
    jobs = sorted(results.glob("job-*"), key=lambda p: p.stat().st_mtime)
    return jobs[-1] if jobs else None


def avocado_argv(
    *,
    qemu_bin: Path,
    results: Path,
    tests: Sequence[str],
    firmware_dirs: Sequence[Path],
    tags: Sequence[str] | None,
    params: Sequence[str] = (),
) -> list[str]:
    argv = [
        str(avocado_bin()),
        "--config", str(AVOCADO_CFG),
        "run",
        # With a tag filter, files without a matching test must not abort the job.
        "--ignore-missing-references",
        "--job-results-dir", str(results),
        "-p", f"qemu_bin={qemu_bin}",
        "-p", f"firmware_dirs={':'.join(str(d) for d in firmware_dirs)}",
    ]  # fmt: skip
    for p in params:
        argv += ["-p", p]
    for tag in tags or ():
        argv += ["-t", tag]
    return [*argv, "--", *tests]


# Avocado's human output, one line per finished test:
#  " (2/5) tests/functional/test_x.py:Cls.test_y:  FAIL: reason (12.34 s)"
_FINISHED = re.compile(
    r"^\s*\((\d+)/(\d+)\)\s+(\S+?):\s+(PASS|FAIL|ERROR|SKIP|CANCEL|INTERRUPTED|WARN)\b"
    r".*\(([\d.]+)\s*s\)\s*$"
)


def finished_line(build: str, line: str) -> str | None:
    """The progress line for one of Avocado's "test finished" lines, else None.

    >>> finished_line("patched", " (2/5) tests/functional/t.py:Mig.test_x:  FAIL: no (12.34 s)")
    '[functional] patched Mig.test_x FAIL 12.3 s (2/5)'
    >>> finished_line("patched", " (2/5) tests/functional/t.py:Mig.test_x: STARTED") is None
    True
    """
    m = _FINISHED.match(line)
    if m is None:
        return None
    done, total, ref, status, secs = m.groups()
    name = ref.rsplit(":", 1)[-1]
    return f"[functional] {build} {name} {status} {float(secs):.1f} s ({done}/{total})"


def run_job(
    argv: list[str],
    results: Path,
    timeout: float,
    warm: zygote.WarmAvocado | None = None,
    build: str = "",
) -> tuple[Path | None, int]:
    """Run one Avocado job; its job directory and exit code (output to a log file, one
    progress line per finished test on stderr)."""
    if warm is not None:
        argv = [str(warm.avocado), *argv[1:]]
    results.mkdir(parents=True, exist_ok=True)
    log = results / "avocado.out"
    with log.open("ab") as out:
        out.write(("$ " + " ".join(argv) + "\n").encode())
        out.flush()
        proc = subprocess.Popen(  # noqa: S603 - argv list
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=PROJECT_ROOT,
            env=None if warm is None else warm.env,
        )
        assert proc.stdout is not None

        def relay() -> None:
            assert proc.stdout is not None
            for raw in proc.stdout:
                out.write(raw)
                out.flush()
                line = finished_line(build, raw.decode(errors="replace"))
                if line and build:
                    print(line, file=sys.stderr, flush=True)

        reader = threading.Thread(target=relay, daemon=True)
        reader.start()
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            rc = -1
        finally:
            reader.join(timeout=10)
            proc.stdout.close()
    return newest_job(results), rc


@contextlib.contextmanager
def warm_avocado(results_dir: Path) -> Iterator[zygote.WarmAvocado | None]:
    """The warm Avocado (:mod:`seriesgate.functional.zygote`), unless disabled; its server
    logs to ``results_dir/zygote.log``."""
    if os.environ.get(WARM_AVOCADO_ENV, "1") == "0":
        yield None
        return
    # Local temporary space: a unix socket cannot be bound on 9p (the results in L1).
    with (
        tempfile.TemporaryDirectory(prefix="sg-zygote-") as tmp,
        zygote.running(Path(tmp), log_path=results_dir / "zygote.log") as warm,
    ):
        yield warm


def _write_index(results_dir: Path, index: dict[str, Any]) -> None:
    # Written after every job: if the test VM dies later, what finished still counts (the
    # host side reads this file after the VM is gone).
    tmp = results_dir / "jobs.json.tmp"
    tmp.write_text(json.dumps(index, indent=2) + "\n")
    tmp.replace(results_dir / "jobs.json")


def _outcomes(name: str, entry: dict[str, Any], tags: Sequence[str] | None) -> list[Any]:
    """A build's outcomes so far that ``tags`` selects, for the retry decision (none when
    its first job has no results)."""
    from seriesgate.errors import InfraError
    from seriesgate.functional.runner import entry_outcomes

    try:
        return entry_outcomes(name, entry, tags or ())[0]
    except InfraError:
        return []


def _remeasure(
    name: str,
    entry: dict[str, Any],
    tags: Sequence[str] | None,
    run: Callable[[list[str]], tuple[Path | None, int]],
) -> None:
    """Measure again the tests of a reused job whose cached result must not be reused
    (flaky, no result) with ``run(refs)``; the new job replaces their results
    (``replace_jobs``)."""
    wanted = set(entry.pop("remeasure", []))
    selected = {o.test_id for o in _outcomes(name, entry, tags)}
    refs = [t + "$" for t in sorted(wanted & selected)]
    if not refs:
        return
    print(
        f"[functional] {name}: measuring again {len(refs)} test(s) flaky or without a result "
        "in the cached baseline ...",
        file=sys.stderr,
        flush=True,
    )
    again, _ = run(refs)
    entry["replace_jobs"] = [*entry.get("replace_jobs", []), str(again) if again else None]


def run_builds(
    builds: dict[str, Path],
    results_dir: Path,
    *,
    firmware_dirs: Sequence[Path] = (),
    tags: Sequence[str] | None = None,
    params: Sequence[str] = (),
    retry: bool = True,
    job_timeout: float = 3600.0,
    tests: Sequence[str] | None = None,
    reused: dict[str, dict[str, Any]] | None = None,
    build_tags: dict[str, list[str]] | None = None,
    reproduced: Sequence[Any] = (),
) -> dict[str, Any]:
    """Run every build's job, then the retries that could change the verdict; return and
    write the jobs index.

    ``tests``: Avocado references to run (default: every build test file). ``reused``: builds
    whose first job is already known (a cached baseline: ``{"job": DIR, "retry_jobs": [...]}``);
    they run no first job, but may be retried (:mod:`seriesgate.functional.retry`); only
    their tests that ``tags`` selects count. ``build_tags``: a build's own tag filter instead
    of ``tags`` (the repaired variant runs a subset under ``--all``). ``reproduced``: crash
    signatures an earlier boot's retry reproduced (``retry.ReproducedCrash``), not retried
    again.
    """
    from seriesgate.functional import retry as retry_policy

    if not tests:
        tests = [str(p.relative_to(PROJECT_ROOT)) for p in test_files()]
    reused = reused or {}
    own_tags = {name: (build_tags or {}).get(name, tags) for name in builds}
    results_dir.mkdir(parents=True, exist_ok=True)
    with warm_avocado(results_dir) as warm:

        def job(
            qemu: Path,
            refs: Sequence[str],
            where: Path,
            label: str,
            tag: Sequence[str] | None,
            share: bool = True,
        ) -> tuple[Path | None, int]:
            """One Avocado job of ``refs`` on ``qemu`` under ``where``; ``share``: its tests
            may hand guests on (retries do not: a retry runs on guests of its own)."""
            with contextlib.ExitStack() as stack:
                extra = list(params)
                if share and share_guests:
                    pool = stack.enter_context(tempfile.TemporaryDirectory(prefix="sg-pool-"))
                    stack.enter_context(guestpool.job_pool(Path(pool)))
                    extra.append(f"{guestpool.POOL_PARAM}={pool}")
                argv = avocado_argv(
                    qemu_bin=qemu, results=where, tests=refs,
                    firmware_dirs=firmware_dirs, tags=tag, params=extra,
                )  # fmt: skip
                return run_job(argv, where, job_timeout, warm, build=label)

        share_guests = guestpool.sharing_enabled()
        index: dict[str, Any] = {
            "builds": {},
            "warm_avocado": warm is not None,
            "shared_guests": share_guests,
        }
        for name, qemu_bin in builds.items():
            if name in reused:
                entry = {"qemu_bin": str(qemu_bin), **reused[name], "reused": True}
                index["builds"][name] = entry
                _write_index(results_dir, index)
                again = partial(job, qemu_bin, where=results_dir / name, label=name, tag=None)
                _remeasure(name, entry, own_tags[name], again)
                _write_index(results_dir, index)
                continue
            start = time.monotonic()
            print(f"[functional] {name}: avocado job ...", file=sys.stderr, flush=True)
            first, rc = job(qemu_bin, tests, results_dir / name, name, own_tags[name])
            entry = {"qemu_bin": str(qemu_bin), "job": str(first) if first else None, "rc": rc}
            entry["wall_s"] = round(time.monotonic() - start, 1)
            print(f"[functional] {name}: done ({entry['wall_s']} s)", file=sys.stderr, flush=True)
            index["builds"][name] = entry
            _write_index(results_dir, index)
        if not retry:
            return index
        # Retries after every first job: whether one could change the verdict depends on
        # the other builds' results (a failure on both builds alike is not retried).
        outcomes = [o for n, e in index["builds"].items() for o in _outcomes(n, e, own_tags[n])]
        decisions = retry_policy.decide(outcomes, reproduced=reproduced)
        index["retry_decisions"] = [
            {"test": d.test_id, "build": d.build, "retry": d.retry, "note": d.note}
            for d in decisions
            if d.note
        ]
        _write_index(results_dir, index)
        for name, qemu_bin in builds.items():
            refs = retry_policy.retry_refs(decisions, name)
            if not refs:
                continue
            entry = index["builds"][name]
            entry["retry_pending"] = True
            _write_index(results_dir, index)
            print(
                f"[functional] {name}: retrying {len(refs)} failed test(s) ...",
                file=sys.stderr,
                flush=True,
            )
            where = results_dir / f"{name}-retry"
            rjob, rrc = job(qemu_bin, refs, where, f"{name} (retry)", None, share=False)
            entry["retry_jobs"] = [*entry.get("retry_jobs", []), str(rjob) if rjob else None]
            entry["retry_rc"] = rrc
            entry.pop("retry_pending")
            _write_index(results_dir, index)
        return index


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m seriesgate.functional.jobs")
    parser.add_argument("--results-dir", type=Path, required=True)
    parser.add_argument("--build", action="append", default=[], metavar="NAME=QEMU")
    parser.add_argument("--firmware-dir", action="append", default=[], type=Path)
    parser.add_argument("--tags", action="append", default=None)
    parser.add_argument("-p", dest="params", action="append", default=[])
    parser.add_argument("--no-retry", action="store_true")
    parser.add_argument("--test", action="append", default=None, help="Avocado test reference")
    parser.add_argument(
        "--reuse",
        action="append",
        default=[],
        metavar="NAME=JOBS_JSON",
        help="build NAME's first job is known: the 'builds'.NAME entry of this index",
    )
    parser.add_argument(
        "--build-tags",
        action="append",
        default=[],
        metavar="NAME=TAG",
        help="a tag filter for build NAME only (repeatable, ORed), instead of --tags",
    )
    parser.add_argument(
        "--reproduced-crashes",
        type=Path,
        metavar="JSON",
        help="crash signatures an earlier boot's retries reproduced: not retried again",
    )
    args = parser.parse_args(argv)
    # This process only drives jobs: QEMUs a test parks for the next are reaped here.
    guestpool.become_subreaper()
    reproduced = []
    if args.reproduced_crashes:
        from seriesgate.functional.retry import ReproducedCrash

        listed = json.loads(args.reproduced_crashes.read_text())
        reproduced = [ReproducedCrash.from_json(r) for r in listed]
    build_tags: dict[str, list[str]] = {}
    for spec in args.build_tags:
        name, _, tag = spec.partition("=")
        build_tags.setdefault(name, []).append(tag)
    reused = {}
    for spec in args.reuse:
        name, _, path = spec.partition("=")
        reused[name] = json.loads(Path(path).read_text())["builds"][name]
    builds = {}
    for spec in args.build:
        name, _, path = spec.partition("=")
        if not path:
            parser.error(f"--build wants NAME=PATH, got {spec!r}")
        builds[name] = Path(path)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    index = run_builds(
        builds,
        args.results_dir,
        firmware_dirs=args.firmware_dir,
        tags=args.tags,
        params=args.params,
        retry=not args.no_retry,
        tests=args.test,
        reused=reused,
        build_tags=build_tags,
        reproduced=reproduced,
    )
    # The gate judges the tests' results; this exit code only says the jobs ran.
    return 0 if all(e.get("job") for e in index["builds"].values()) else 3


if __name__ == "__main__":
    sys.exit(main())
