"""Exceptions that carry a message meant for the user."""


class UserError(Exception):
    """Something the user can fix: a missing file, a bad option, malformed data. The CLI prints it as one line."""


class DataError(UserError, ValueError):
    """A data file is missing or malformed; the message names the file and the problem."""


class DEQDivergenceError(RuntimeError):
    """A fixed-point solve produced non-finite values."""
