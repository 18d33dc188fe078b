"""Problems the user can fix, as opposed to bugs.

Every entry point prints a `UserError` as one line on stderr, without a traceback, and exits with
its `exit_code` (2 unless the error says otherwise; braingan/cli.py). Anything else is a bug or a
fault we did not foresee and keeps its traceback. Raise these with a message that says what was
expected, what was found and which setting or file to change.
"""

from __future__ import annotations


class UserError(Exception):
    """Base of every error the entry points report in one line."""

    exit_code = 2


class UsageError(UserError, ValueError):
    """A setting, an input file or a folder is wrong; the message names it and how to fix it."""


class MissingFileError(UsageError, FileNotFoundError):
    """A file or folder that a setting names does not exist."""


class NoSpaceError(UserError, OSError):
    """A write ran out of disk space (or quota); the message says what is still intact."""


class Interrupted(UserError):
    """Training stopped on a signal after saving; exits 128 + the signal number, as a killed process would."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + int(signum)


def one_line(error: BaseException) -> str:
    """The message of `error` on one line (a multi-line message is joined with '; ')."""
    text = str(error).strip() or type(error).__name__
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())
