"""Exceptions that carry a message meant for the user.

The command line (:mod:`deqfusion.cli`) reports every :class:`UserError` and every :class:`RunFailed` as one line
``deqfusion <command>: error: <message>`` with no traceback, exit status 2 for a user error and 3 for a failed
run; messages name the option or file at fault and, where there is one, the fix.
"""


class UserError(Exception):
    """Something the user can fix: a missing file, a bad option, malformed data. The CLI prints it as one line."""


class DataError(UserError, ValueError):
    """A data file is missing or malformed; the message names the file and the problem."""


class RunFailed(Exception):
    """A run that failed (training diverged, a solve overflowed, a final model is degenerate); the CLI prints it
    as one line with :attr:`hint` and exit status 3."""

    hint = "a smaller --lr or another seed may help; see the divergence guard in docs/robustness.md"


class DEQDivergenceError(RunFailed, RuntimeError):
    """A fixed-point solve produced non-finite values."""
