"""Errors that mean "bad input": runners print them as one `error:` line and exit with status 2."""


class InputError(ValueError):
    """A user-supplied file, flag or name is wrong; the message names it and what was expected."""


class NumericalError(ArithmeticError):
    """Training produced a non-finite loss or Q value; runners print one `error:` line, exit 1."""
