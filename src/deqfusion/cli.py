"""The ``deqfusion`` command line: one subcommand per experiment or tool.

Each subcommand lives in ``deqfusion.commands.<module>`` and provides ``NAME``, ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``. This file only parses and dispatches; errors that a user
can fix (bad paths, bad options, bad data) are raised as :class:`deqfusion.errors.UserError` (or ``ValueError``
from input checks) and reported as one line with a non-zero exit status.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .errors import UserError

#: command modules, in the order ``deqfusion --help`` lists them
COMMAND_MODULES = [
    "deqfusion.commands.mosi_features",
    "deqfusion.commands.mosi_bert",
    "deqfusion.commands.mmimdb",
    "deqfusion.commands.omics",
    "deqfusion.commands.bench",
    "deqfusion.commands.plot",
    "deqfusion.commands.missing",
    "deqfusion.commands.ablate",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deqfusion", description="Deep Equilibrium Multimodal Fusion")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for modname in COMMAND_MODULES:
        mod = importlib.import_module(modname)
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP))
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except UserError as exc:
        print(f"deqfusion {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"deqfusion {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
