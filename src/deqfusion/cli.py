"""The ``deqfusion`` command line: one subcommand per experiment or tool.

Each subcommand lives in ``deqfusion.commands.<module>`` and provides ``NAME``, ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``. This file parses, checks the output path, dispatches, and is
the one error path of every command: a :class:`~deqfusion.errors.UserError` (bad paths, options, data,
checkpoints), a :class:`~deqfusion.errors.RunFailed` (training diverged) and an ``OSError`` on a named file (a
path that cannot be written) end as one line ``deqfusion <command>: error: <message>`` on stderr with exit status
2, no traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .errors import RunFailed, UserError
from .training.checkpoint import check_output_path

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

#: commands whose ``--out`` names a file (every other command's ``--out`` is an output folder)
OUT_IS_FILE = {"plot"}
#: exit status of every error reported as one line
ERROR_STATUS = 2


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
        if getattr(args, "out", None) is not None:
            check_output_path(args.out, "--out", "file" if args.command in OUT_IS_FILE else "folder")
        return int(args._run(args) or 0)
    except UserError as exc:
        return _error(args.command, str(exc))
    except RunFailed as exc:
        return _error(args.command, f"{exc} (the run stopped; a smaller --lr or another seed may help, see the "
                                    "divergence guard in docs/robustness.md)")
    except OSError as exc:
        if exc.filename is None:
            raise
        name = exc.filename if exc.filename2 is None else f"{exc.filename} -> {exc.filename2}"
        return _error(args.command, f"{name}: {exc.strerror or exc}; check the paths given on the command line")
    except KeyboardInterrupt:
        print(f"deqfusion {args.command}: interrupted", file=sys.stderr)
        return 130


def _error(command: str, message: str) -> int:
    text = " ".join(message.split())  # one line, whatever the message held
    print(f"deqfusion {command}: error: {text}", file=sys.stderr)
    return ERROR_STATUS


if __name__ == "__main__":
    sys.exit(main())
