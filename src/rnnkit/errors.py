"""Every user-error type of rnnkit, in one leaf module (it imports nothing of rnnkit).

A :class:`UserError` is a mistake the user can fix — a bad config key, a malformed file, a damaged run folder —
and its message is one line that names the problem (file, key) and the fix; the CLI prints it as
``rnnkit: error: ...`` and exits with status 2. Anything else that escapes is a bug in rnnkit, not a user error.
Each type also derives from ValueError, so ``except ValueError`` around rnnkit calls keeps working.
"""

from __future__ import annotations


class UserError(ValueError):
    """The common base: a user mistake with a one-line message that says how to fix it."""

    def __init__(self, message: object = "") -> None:
        super().__init__(" ".join(str(message).split()))


class ConfigError(UserError):
    """A user mistake in a config file, an override or an estimator's arguments."""


class DataError(UserError):
    """A data problem the user can fix: missing, malformed or corrupt file, wrong shapes."""


class CheckpointError(UserError):
    """A missing, incomplete or corrupted checkpoint or run folder."""


class UsageError(UserError):
    """A wrong command-line argument or API call argument (a value out of range, a wrong file suffix)."""


class RunExists(UserError, FileExistsError):
    """The run (or backtest, tune) folder to create exists already; nothing is overwritten."""


class RunInUse(UserError):
    """Another process holds the run folder (one writer per run)."""


class ExportError(UserError):
    """A user mistake in an export request (format, output path, a missing optional extra)."""


__all__ = ["CheckpointError", "ConfigError", "DataError", "ExportError", "RunExists", "RunInUse", "UsageError",
           "UserError"]
