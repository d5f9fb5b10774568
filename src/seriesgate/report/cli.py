"""``seriesgate report``: render the reports of a run.

- ``--from SUMMARY_JSON`` (repeatable): re-render (and merge) finished runs' summaries;
- ``--stages DIR [--functional DIR ...]``: make the summary from stage outputs of separate
  jobs (``seriesgate build --out DIR``, ``seriesgate functional --results-dir DIR``), as a
  scaled-out CI pipeline produces them.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from seriesgate import progress
from seriesgate.errors import InputError


def register(subparsers: Any) -> None:
    """Add the ``report`` command."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "report",
        help="render the reports of a finished run from its summary.json",
        description=(
            "Re-render report.md, report.html, junit.xml and reply.txt from a summary.json "
            "(several summaries: merged, e.g. from parallel CI test jobs). "
            "Exits with the verdict's exit code."
        ),
    )
    parser.add_argument(
        "--from",
        dest="summaries",
        metavar="SUMMARY_JSON",
        type=Path,
        action="append",
        help="summary.json of a run (repeat to merge partial runs)",
    )
    parser.add_argument(
        "--stages",
        type=Path,
        metavar="DIR",
        help="--out dir of `seriesgate build` (series/series.json, apply.json, build.json)",
    )
    parser.add_argument(
        "--functional",
        type=Path,
        metavar="DIR",
        action="append",
        default=[],
        help="--results-dir of `seriesgate functional` (repeatable; with --stages)",
    )
    parser.add_argument(
        "--out", type=Path, help="where to write the reports (default: the summary's directory)"
    )
    parser.add_argument(
        "--bench", type=Path, help="bench results JSON to add as the downtime benchmark section"
    )
    parser.set_defaults(func=run)


def _from_stages(stage_dir: Path, functional_dirs: list[Path]) -> dict[str, Any]:
    from seriesgate.report import stages
    from seriesgate.report.summary import build_summary

    series_set = stages.load_series_set(stage_dir)
    tree = stages.load_tree(stage_dir)
    builds = stages.load_builds(stage_dir, tree)
    functional = stages.load_functional(functional_dirs) if functional_dirs else None
    times = {}
    if builds is not None:
        times["build"] = sum(b.wall_time for b in (builds.baseline, builds.patched))
    return build_summary(
        series_set=series_set,
        tree=tree,
        builds=builds,
        functional=functional,
        stage_times=times,
    )


def run(args: argparse.Namespace) -> int:
    from seriesgate.report import write_reports
    from seriesgate.report.bench_plot import load_bench
    from seriesgate.report.merge import merge_summaries
    from seriesgate.report.summary import load_summary

    if bool(args.summaries) == bool(args.stages):
        raise InputError("give either --from SUMMARY_JSON or --stages DIR")
    if args.summaries:
        summaries = [load_summary(p) for p in args.summaries]
        summary = merge_summaries(summaries) if len(summaries) > 1 else summaries[0]
        out = args.out or args.summaries[0].parent
    else:
        summary = _from_stages(args.stages, args.functional)
        out = args.out or args.stages
    if args.bench:
        summary["bench"] = load_bench(args.bench)
    written = write_reports(summary, out)
    progress.say("report", f"{len(written)} files in {out}")
    print(summary["overall"]["headline"])
    code: int = summary["overall"]["exit_code"]
    return code
