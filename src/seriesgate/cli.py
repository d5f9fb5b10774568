"""The one console entry point: ``seriesgate <command>``.

Each pipeline stage owns its subcommands: ``seriesgate.<stage>.cli`` defines
``register(subparsers)``, which adds parsers whose ``func(args) -> int`` runs
the command. Errors become one line on stderr and the documented exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from seriesgate import __version__, progress
from seriesgate.errors import CommandError, SeriesgateError

# In pipeline order; ``seriesgate --help`` lists the commands in this order.
STAGE_CLIS = (
    "seriesgate.series.cli",
    "seriesgate.tree.cli",
    "seriesgate.build.cli",
    "seriesgate.testenv.cli",
    "seriesgate.functional.cli",
    "seriesgate.report.cli",
    "seriesgate.pipeline",
    "seriesgate.bench",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seriesgate",
        description="Tell whether a QEMU mailing-list patch series is fit to merge.",
    )
    parser.add_argument("--version", action="version", version=f"seriesgate {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in STAGE_CLIS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    progress.set_quiet(args.quiet)
    try:
        code: int = args.func(args)
        return code
    except SeriesgateError as exc:
        print(f"seriesgate: error: {exc}", file=sys.stderr)
        if isinstance(exc, CommandError) and exc.output:
            print(f"seriesgate: command: {' '.join(exc.argv)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("seriesgate: interrupted; results so far are kept", file=sys.stderr)
        return 2
