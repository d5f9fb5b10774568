"""The gate end to end: fetch -> apply -> build -> testenv -> functional -> report.

``seriesgate run`` joins the stages. Each stage takes the previous stage's typed
result; whatever a stage produced stays on disk in the run's results directory
even when a later stage fails, and the summary/report are written in every case
(an interrupted or failed run reports what it knows and exits 2).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from seriesgate import progress
from seriesgate.errors import (
    EXIT_GATE_FAILS,
    EXIT_PASS,
    EXIT_UNDECIDED,
    InputError,
    SeriesgateError,
)
from seriesgate.paths import results_root


@dataclass
class RunOptions:
    """What ``seriesgate run`` does; ``tags`` empty runs every functional test."""

    message_id: str | None = None  # None: the default series from patches/
    mbox: Path | None = None
    version: int | None = None
    base: str | None = None
    tags: tuple[str, ...] = ()
    env_mode: str | None = None  # "host" | "vm" | None (automatic)
    each_patch: bool = True
    bisect: bool = True
    bisect_max: int = 2  # regressed tests bisected per run (each probe boots guests)
    out: Path | None = None
    fresh_baseline: bool = False  # measure the baseline again instead of reusing cached results


@dataclass
class RunState:
    """What the stages produced so far (None: the stage did not run or failed)."""

    results_dir: Path
    tags: tuple[str, ...] = ()  # the functional tests selected (empty: all)
    series_set: Any = None
    tree: Any = None
    builds: Any = None
    env: Any = None
    functional: Any = None
    bisect: list[dict[str, Any]] = field(default_factory=list)
    stage_times: dict[str, float] = field(default_factory=dict)
    error: str | None = None


def run_name(message_id: str | None) -> str:
    """A results-directory name for a series: the message-id's local part, made safe.

    >>> run_name("20231128104303.3314000-1-eperezma@redhat.com")
    '20231128104303.3314000-1-eperezma'
    >>> run_name(None)
    'default'
    """
    if not message_id:
        return "default"
    local = message_id.strip("<>").split("@", 1)[0]
    return re.sub(r"[^A-Za-z0-9._-]+", "_", local)[:80] or "series"


def new_results_dir(opts: RunOptions) -> Path:
    if opts.out is not None:
        opts.out.mkdir(parents=True, exist_ok=True)
        return opts.out
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = results_root() / f"{stamp}-{run_name(opts.message_id)}"
    path.mkdir(parents=True, exist_ok=False)
    return path


@contextmanager
def _stage(state: RunState, name: str) -> Iterator[None]:
    start = time.monotonic()
    progress.say("run", f"stage {name} ...")
    try:
        yield
    finally:
        state.stage_times[name] = round(time.monotonic() - start, 1)
        progress.say("run", f"stage {name} finished in {state.stage_times[name]:.1f} s")


def _run_stages(opts: RunOptions, state: RunState) -> None:
    # Imported here so that `seriesgate --help` stays fast and each stage stays optional
    # for the commands that do not need it.
    from seriesgate.build import build_all
    from seriesgate.functional.runner import run_functional_isolated
    from seriesgate.series import fetch_series_set
    from seriesgate.testenv import prepare
    from seriesgate.tree import format_table, prepare_tree

    out = state.results_dir
    with _stage(state, "fetch"):
        state.series_set = fetch_series_set(
            opts.message_id, mbox=opts.mbox, version=opts.version, workdir=out / "series"
        )
    with _stage(state, "apply"):
        state.tree = prepare_tree(state.series_set, base_spec=opts.base, workdir=out)
        print(format_table(state.tree), file=sys.stderr)
    if state.tree.conflict is not None:
        return  # the gate fails on a conflict; nothing to build
    with _stage(state, "build"):
        state.builds = build_all(
            state.tree, out_dir=out, each_patch=opts.each_patch, series_set=state.series_set
        )
    if state.builds.patched is None or not state.builds.patched.ok:
        return  # the gate fails on a build failure; nothing to test
    with _stage(state, "testenv"):
        state.env = prepare(_mode(opts.env_mode))
    with _stage(state, "functional"):
        state.functional, not_run = run_functional_isolated(
            state.builds,
            state.env,
            results_dir=out,
            tags=opts.tags,
            fresh_baseline=opts.fresh_baseline,
        )
        if not_run:
            state.error = "the test VM failed every attempt for: " + "; ".join(not_run)
    if opts.bisect:
        with _stage(state, "bisect"):
            try:
                state.bisect = _bisect_regressions(state, opts.bisect_max)
            except SeriesgateError as exc:
                # Bisecting only locates a regression the tests already found: its failure
                # is reported, and the verdict still stands on the functional results.
                progress.say("bisect", f"bisect failed: {exc}")
                state.bisect = [
                    {
                        "test": "(bisect)",
                        "first_bad_patch_index": None,
                        "subject": None,
                        "evidence": {"error": str(exc)},
                    }
                ]


def _mode(name: str | None) -> Any:
    if name is None:
        return None
    from seriesgate.testenv.model import Mode

    return Mode(name)


def _bisect_regressions(state: RunState, max_tests: int) -> list[dict[str, Any]]:
    """For each test that regressed on patched, find the first patch where it fails."""
    from seriesgate.functional.bisect import CachedProbes, bisect_regressions

    found: list[dict[str, Any]] = bisect_regressions(
        state.builds,
        state.env,
        state.functional,
        results_dir=state.results_dir / "bisect",
        max_tests=max_tests,
        runner=CachedProbes(state.env),  # a series bisected before answers from the cache
    )
    return found


def _report(state: RunState) -> dict[str, Any]:
    from seriesgate.report import write_reports
    from seriesgate.report.summary import build_summary

    summary: dict[str, Any] = build_summary(
        series_set=state.series_set,
        tree=state.tree,
        builds=state.builds,
        env=state.env,
        functional=state.functional,
        stage_times=state.stage_times,
        error=state.error,
    )
    summary["test_selection"] = list(state.tags)  # empty: every test
    if state.bisect:
        summary["bisect"] = state.bisect
    (state.results_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    write_reports(summary, state.results_dir)
    return summary


def run_gate(opts: RunOptions) -> int:
    """Run the whole gate; return the exit code (0 pass, 1 gate fails, 2 undecided)."""
    state = RunState(results_dir=new_results_dir(opts), tags=opts.tags)
    progress.say("run", f"results in {state.results_dir}")
    start = time.monotonic()
    interrupted = False
    try:
        _run_stages(opts, state)
    except SeriesgateError as exc:
        state.error = str(exc)
        print(f"seriesgate: error: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        interrupted = True
        state.error = "interrupted (Ctrl-C)"
    except Exception as exc:  # a bug in seriesgate: keep results, say where
        state.error = f"internal error: {type(exc).__name__}: {exc}"
        (state.results_dir / "internal-error.txt").write_text(traceback.format_exc())
        print(f"seriesgate: {state.error} (traceback in internal-error.txt)", file=sys.stderr)
    state.stage_times["total"] = round(time.monotonic() - start, 1)
    if state.series_set is None:
        # Nothing to report on: the error line above says why.
        progress.say("run", f"results in {state.results_dir}")
        return EXIT_UNDECIDED
    try:
        summary = _report(state)
    except KeyboardInterrupt:
        return EXIT_UNDECIDED
    code = EXIT_UNDECIDED if interrupted else int(summary["overall"]["exit_code"])
    headline = summary.get("headline") or summary["overall"]["verdict"]
    progress.say("run", f"results in {state.results_dir}")
    print(f"seriesgate: verdict: {headline} (exit {code}) — {state.results_dir / 'report.md'}")
    return code


# The gate's default tests: every claim of the series, the live-migration correctness
# tests and the quick sanity tests (`--all`: every test, as `make check` runs).
GATE_TAGS = ("quick", "core", "claim")


def selected_tags(specs: list[str], everything: bool = False) -> tuple[str, ...]:
    """The Avocado tags a run selects from ``--tags`` values and ``--all`` (empty: all).

    >>> selected_tags([])
    ('quick', 'core', 'claim')
    >>> selected_tags(["quick,slow"])
    ('quick', 'slow')
    >>> selected_tags(["all"]), selected_tags([], everything=True)
    ((), ())
    """
    tags = tuple(t for spec in specs for t in spec.split(",") if t)
    if tags == ("all",):  # `--tags all`: what a CI variable can say
        return ()
    if everything and tags:
        raise InputError("--all and --tags both given", hint="use one of them")
    return () if everything else tags or GATE_TAGS


# For CI variables: the same as --fresh-baseline.
FRESH_BASELINE_ENV = "SERIESGATE_FRESH_BASELINE"


def _cmd_run(args: argparse.Namespace) -> int:
    opts = RunOptions(
        message_id=args.message_id,
        mbox=args.mbox,
        version=args.version,
        base=args.base,
        tags=selected_tags(args.tags, args.all),
        env_mode=args.env,
        each_patch=not args.no_each_patch,
        bisect=not args.no_bisect,
        bisect_max=args.bisect_max,
        out=args.out,
        fresh_baseline=args.fresh_baseline or os.environ.get(FRESH_BASELINE_ENV, "") == "1",
    )
    if opts.mbox is not None and not opts.mbox.is_file():
        raise InputError(f"mbox {opts.mbox} does not exist", hint="give the path of an mbox file")
    code = run_gate(opts)
    if args.check_tool:
        # `make check`: the tool works when it reached a verdict, whatever the verdict is.
        return EXIT_PASS if code in (EXIT_PASS, EXIT_GATE_FAILS) else EXIT_UNDECIDED
    return code


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "run",
        help="verify a series end to end (default: the series in patches/)",
        description=(
            "fetch -> apply -> build -> testenv -> functional tests -> report. "
            "Exit 0: gate passes; 1: gate fails; 2: could not decide."
        ),
    )
    p.add_argument("message_id", nargs="?", metavar="MSGID", help="cover letter message-id")
    p.add_argument("--mbox", type=Path, help="read the series from this mbox (offline)")
    p.add_argument("--version", type=int, help="series version (default: newest)")
    p.add_argument("--base", help="base tree: debian:qemu[/SUITE], git:URL@REF, dir:PATH")
    p.add_argument(
        "--tags",
        action="append",
        default=[],
        help=f"Avocado tags to run, ORed (default: {','.join(GATE_TAGS)}; all: every test)",
    )
    p.add_argument("--all", action="store_true", help="run every functional test")
    p.add_argument("--env", choices=("host", "vm"), help="test environment (default: auto)")
    p.add_argument("--no-each-patch", action="store_true", help="skip every-patch builds")
    p.add_argument("--no-bisect", action="store_true", help="do not bisect regressions")
    p.add_argument(
        "--bisect-max", type=int, default=2, help="regressed tests to bisect (default 2)"
    )
    p.add_argument("--out", type=Path, help="results directory (default: results/<time>-<id>)")
    p.add_argument(
        "--fresh-baseline",
        action="store_true",
        help="measure the baseline again instead of reusing its cached results "
        f"(${FRESH_BASELINE_ENV}=1 does the same)",
    )
    p.add_argument(
        "--check-tool",
        action="store_true",
        help="exit 0 whenever a verdict was reached (used by `make check`)",
    )
    p.set_defaults(func=_cmd_run)
