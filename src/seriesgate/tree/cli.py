"""``seriesgate apply``: apply a series (and its prerequisites) to a base tree."""

from __future__ import annotations

import argparse
from pathlib import Path

from seriesgate.errors import EXIT_PASS, EXIT_UNDECIDED
from seriesgate.series.cli import add_series_arguments, default_out
from seriesgate.series.fetch import fetch_series_set
from seriesgate.tree.apply import format_table, prepare_tree

# Exit code on a conflict, as the issue specifies for this stage.
EXIT_CONFLICT = EXIT_UNDECIDED


def cmd_apply(args: argparse.Namespace) -> int:
    out: Path = args.out or default_out("apply")
    series_set = fetch_series_set(args.msgid, mbox=args.mbox, version=args.version, workdir=out)
    tree = prepare_tree(series_set, base_spec=args.base, workdir=out)
    print(format_table(tree))
    print(f"apply.json: {out / 'apply.json'}")
    return EXIT_CONFLICT if tree.conflict else EXIT_PASS


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "apply",
        help="apply a series and its prerequisites to a base tree",
        description=(
            "Fetch a series, then apply prerequisites, the series, local fixups and repairs to a "
            "base tree, one commit each: git am, git am --3way, already-present test, patch "
            "--fuzz. Exit 0 when everything but the repairs applied (a repair that does not "
            "apply is reported, with no repaired tree), 2 on a conflict (partial tree kept)."
        ),
    )
    add_series_arguments(parser)
    parser.add_argument(
        "--base",
        metavar="SPEC",
        help="base tree: debian:qemu[/SUITE], git:URL@REF or dir:PATH "
        "(default: the manifest's, else debian:qemu/trixie)",
    )
    parser.add_argument("--out", type=Path, help="results directory (default: results/apply-*)")
    parser.set_defaults(func=cmd_apply)
