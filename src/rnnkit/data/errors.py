"""The exception type of :mod:`rnnkit.data` (defined with every user-error type in :mod:`rnnkit.errors`), and the
one-line message for a file that is not UTF-8."""

from __future__ import annotations

from pathlib import Path

from rnnkit.errors import DataError


def not_utf8(path: str | Path) -> DataError:
    """A DataError naming the file, the first byte that is not UTF-8 and its line."""
    raw = Path(path).read_bytes()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        return DataError(f"{path} is not UTF-8 text (byte {raw[e.start]:#x} on line {line}); re-save it as UTF-8")
    return DataError(f"{path} is not UTF-8 text; re-save it as UTF-8")


__all__ = ["DataError", "not_utf8"]
