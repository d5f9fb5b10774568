"""``seriesgate build``: fetch, apply, then build baseline / every patch / patched QEMU."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from seriesgate.build.builder import build_all
from seriesgate.build.model import BuildSet
from seriesgate.errors import EXIT_GATE_FAILS, EXIT_PASS


def format_table(builds: BuildSet) -> str:
    """The build table a maintainer reads: one line per build and per patch."""
    lines = [f"configure: {shlex.join(builds.patched.configure_line)}"]
    for b in (builds.baseline, builds.posted, builds.patched, builds.repaired):
        if b is None:
            continue
        state = "builds" if b.ok else "FAILS "
        origin = "stored" if b.cached else f"{b.wall_time:.0f} s, {b.compile_steps} steps"
        lines.append(f"{b.name:9s} {b.commit[:12]}  {state}  ({origin})  {b.binary or b.log}")
        lines += [f"            {e.file}:{e.line}: {e.message}" for e in b.errors[:3]]
    if builds.each_patch:
        lines.append("every patch:")
    for p in builds.each_patch:
        lines.append(f"  {p.index:02d} {'builds' if p.builds else 'FAILS '}  {p.subject}")
        lines += [f"            {e.file}:{e.line}: {e.message}" for e in p.errors[:3]]
    if builds.checkpatch:
        lines.append("checkpatch:")
    for c in builds.checkpatch:
        lines.append(f"  {c.index:02d} {c.errors} errors, {c.warnings} warnings  {c.subject}")
        lines += [f"            {m}" for m in c.messages[:3]]
    lines.append(f"firmware (-L): {' '.join(str(d) for d in builds.firmware_dirs)}")
    return "\n".join(lines)


def cmd_build(args: argparse.Namespace) -> int:
    # The earlier stages are imported here so `seriesgate --help` stays fast.
    from seriesgate.series import cli as series_cli
    from seriesgate.series import fetch_series_set
    from seriesgate.tree import prepare_tree

    out: Path = args.out or series_cli.default_out("build")
    series_set = fetch_series_set(
        args.msgid, mbox=args.mbox, version=args.version, workdir=out / "series"
    )
    tree = prepare_tree(series_set, base_spec=args.base, workdir=out)
    builds = build_all(tree, out_dir=out, each_patch=not args.no_each_patch, series_set=series_set)
    print(format_table(builds))
    print(f"build.json and logs in {out}")
    return EXIT_PASS if builds.baseline.ok and builds.patched.ok else EXIT_GATE_FAILS


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from seriesgate.series.cli import add_series_arguments

    parser = subparsers.add_parser(
        "build",
        help="build baseline, every patch and patched QEMU; run checkpatch",
        description=(
            "Fetch and apply the series, then build QEMU at the base (+ prerequisites), after "
            "every patch, as posted, with local fixups and (when the series has repairs) repaired; "
            "checkpatch each patch. "
            "Exit 0: baseline and patched build; 1: one of them does not; 2: could not decide."
        ),
    )
    add_series_arguments(parser)
    parser.add_argument("--base", help="base tree: debian:qemu[/SUITE], git:URL@REF, dir:PATH")
    parser.add_argument("--out", type=Path, help="results directory (default: results/build-*)")
    parser.add_argument(
        "--no-each-patch", action="store_true", help="skip the build after every patch"
    )
    parser.set_defaults(func=cmd_build)
