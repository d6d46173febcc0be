"""Exceptions that the command line turns into one clear line and an exit code.

``InputError`` -> exit 2 (bad input: file, case data, options);
``ConvergenceError`` -> exit 3 (a solver did not converge; the message gives the mismatch).
"""


class GatError(Exception):
    """Base class of the errors gat-hpc reports to a user without a traceback."""

    exit_code = 1


class InputError(GatError):
    """The input is wrong: a missing or malformed file, an unknown bus, an unsolvable case."""

    exit_code = 2


class ConvergenceError(GatError):
    """A solver stopped without meeting its tolerance."""

    exit_code = 3

    def __init__(self, message, iterations=None, mismatch=None):
        super().__init__(message)
        self.iterations = iterations
        self.mismatch = mismatch
