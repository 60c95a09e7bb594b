"""The one exception type of :mod:`rnnkit.data` (defined with every user-error type in :mod:`rnnkit.errors`)."""

from __future__ import annotations

from rnnkit.errors import DataError

__all__ = ["DataError"]
