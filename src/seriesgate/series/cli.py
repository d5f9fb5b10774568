"""``seriesgate fetch``: fetch a series and its prerequisites with b4."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from seriesgate import paths
from seriesgate.series.fetch import fetch_series_set
from seriesgate.series.model import SeriesSet


def default_out(command: str) -> Path:
    """A fresh per-run results directory: results/<command>-<timestamp>."""
    return paths.results_root() / f"{command}-{time.strftime('%Y%m%d-%H%M%S')}"


def add_series_arguments(parser: argparse.ArgumentParser) -> None:
    """MSGID, --mbox, --version: shared by every command that starts from a series."""
    parser.add_argument(
        "msgid",
        nargs="?",
        metavar="MSGID",
        help="message-id of the series (cover letter); default: the series in patches/*/",
    )
    parser.add_argument("--mbox", type=Path, help="read the thread from this mbox (offline)")
    parser.add_argument("--version", type=int, help="series version to take (b4 am -v)")


def describe(series_set: SeriesSet) -> str:
    """A short human summary: one line per series, one per patch."""
    lines = []
    for series in series_set.all_series:
        role = "target" if series is series_set.target else "prerequisite"
        lines.append(
            f"{role}: {series.name} v{series.version} <{series.message_id}> "
            f"({len(series.patches)} patches, {series.source})"
        )
        lines.append(f"  {series.subject}")
        for patch in series.patches:
            files = len(patch.files)
            lines.append(
                f"  {patch.index:2d}/{patch.total} {patch.subject}  "
                f"[{files} file{'s' if files != 1 else ''}]"
            )
    return "\n".join(lines)


def cmd_fetch(args: argparse.Namespace) -> int:
    out: Path = args.out or default_out("fetch")
    series_set = fetch_series_set(args.msgid, mbox=args.mbox, version=args.version, workdir=out)
    print(describe(series_set))
    print(f"am-ready mboxes and series.json in {out}")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "fetch",
        help="fetch a series and its prerequisites with b4",
        description="Fetch a series (b4 am) and, recursively, the series it is based on.",
    )
    add_series_arguments(parser)
    parser.add_argument("--out", type=Path, help="results directory (default: results/fetch-*)")
    parser.set_defaults(func=cmd_fetch)
