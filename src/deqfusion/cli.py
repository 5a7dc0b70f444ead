"""The ``deqfusion`` command line: one subcommand per experiment or tool.

Each subcommand lives in ``deqfusion.commands.<module>`` and provides ``NAME``, ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``. This file parses, checks the options shared by several
commands (:data:`OPTION_RULES`) and the output path, dispatches, and is the one error path of every command: a
:class:`~deqfusion.errors.UserError` (bad paths, options, data, checkpoints) and an ``OSError`` on a named file
(a path that cannot be written) end as one line ``deqfusion <command>: error: <message>`` on stderr with exit
status 2; a :class:`~deqfusion.errors.RunFailed` (training diverged, a degenerate final model) the same way with
exit status 3. No traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import math
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
    "deqfusion.commands.report",
]

#: commands whose ``--out`` names a file (every other command's ``--out`` is an output folder)
OUT_IS_FILE = {"plot"}
#: exit status of a user error or data fault reported as one line
ERROR_STATUS = 2
#: exit status of a failed run (training diverged, a degenerate final model), reported as one line
FAILED_RUN_STATUS = 3

#: options shared by several commands and the values they accept: ``dest -> (test, what the value must be)``;
#: checked for every command that has the option, before the command runs (None means "the default")
OPTION_RULES = {
    **dict.fromkeys(("epochs", "max_epochs", "batch_size", "eval_every", "hidden", "step_size", "repeats",
                     "f_max_iter", "b_max_iter", "unrolled_steps", "phantom_steps", "max_seq_length", "rank",
                     "steps", "modalities", "batch", "width"),
                    (lambda v: v >= 1, "be >= 1")),
    **dict.fromkeys(("patience", "threads"), (lambda v: v >= 0, "be >= 0")),
    **dict.fromkeys(("lr", "fusion_lr", "head_lr", "f_tol", "b_tol", "gamma"),
                    (lambda v: math.isfinite(v) and v > 0, "be finite and > 0")),
    **dict.fromkeys(("weight_decay", "lambda_jac", "clip", "grad_clip"),
                    (lambda v: math.isfinite(v) and v >= 0, "be finite and >= 0")),
    **dict.fromkeys(("dropout", "input_dropout", "modality_dropout", "warmup"),
                    (lambda v: 0 <= v < 1, "lie in [0, 1)")),
    **dict.fromkeys(("val_fraction", "dev_holdout", "band"), (lambda v: 0 < v < 1, "lie in (0, 1)")),
}


def parse_command_options(module, argv: list[str], what: str) -> argparse.Namespace:
    """Parse ``argv`` with the options of the command ``module`` (a command that runs another one, e.g. ``ablate``
    running ``omics``); a bad or unknown option is a :class:`UserError` naming ``what``."""
    p = argparse.ArgumentParser(prog=f"deqfusion {module.NAME}", add_help=False, exit_on_error=False)
    module.add_arguments(p)
    try:
        ns, rest = p.parse_known_args(argv)
    except (argparse.ArgumentError, SystemExit) as exc:
        raise UserError(f"{what}: {exc}") from None
    if rest:
        raise UserError(f"{what}: unrecognised option(s) {rest}")
    return ns


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
        check_options(args)
        if getattr(args, "out", None) is not None:
            check_output_path(args.out, "--out", "file" if args.command in OUT_IS_FILE else "folder")
        return int(args._run(args) or 0)
    except UserError as exc:
        return _error(args.command, str(exc))
    except RunFailed as exc:
        return _error(args.command, f"{exc} ({exc.hint})", FAILED_RUN_STATUS)
    except OSError as exc:
        if exc.filename is None:
            raise
        name = exc.filename if exc.filename2 is None else f"{exc.filename} -> {exc.filename2}"
        return _error(args.command, f"{name}: {exc.strerror or exc}; check the paths given on the command line")
    except KeyboardInterrupt:
        print(f"deqfusion {args.command}: interrupted", file=sys.stderr)
        return 130


def check_options(args: argparse.Namespace) -> None:
    """Raise :class:`UserError` naming the first option of :data:`OPTION_RULES` whose value (or one of its
    values, for an option taking several) is out of range."""
    for dest, (ok, what) in OPTION_RULES.items():
        value = getattr(args, dest, None)
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if v is not None and not isinstance(v, bool) and isinstance(v, (int, float)) and not ok(v):
                option = "--" + dest.replace("_", "-")
                raise UserError(f"{option} must {what}, got {v}")


def _error(command: str, message: str, status: int = ERROR_STATUS) -> int:
    text = " ".join(message.split())  # one line, whatever the message held
    print(f"deqfusion {command}: error: {text}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
