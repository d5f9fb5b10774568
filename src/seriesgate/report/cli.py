"""``seriesgate report --from SUMMARY_JSON [--out DIR] [--bench BENCH_JSON]``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from seriesgate import progress


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
        required=True,
        help="summary.json of a run (repeat to merge partial runs)",
    )
    parser.add_argument(
        "--out", type=Path, help="where to write the reports (default: the summary's directory)"
    )
    parser.add_argument(
        "--bench", type=Path, help="bench results JSON to add as the downtime benchmark section"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from seriesgate.report import write_reports
    from seriesgate.report.bench_plot import load_bench
    from seriesgate.report.merge import merge_summaries
    from seriesgate.report.summary import load_summary

    summaries = [load_summary(p) for p in args.summaries]
    summary = merge_summaries(summaries) if len(summaries) > 1 else summaries[0]
    if args.bench:
        summary["bench"] = load_bench(args.bench)
    out = args.out or args.summaries[0].parent
    written = write_reports(summary, out)
    progress.say("report", f"{len(written)} files in {out}")
    print(summary["overall"]["headline"])
    code: int = summary["overall"]["exit_code"]
    return code
