"""The exception type of :mod:`rnnkit.data` (defined with every user-error type in :mod:`rnnkit.errors`), and the
one-line messages for a file that is not UTF-8 and for a CSV that cannot be read (:func:`csv_rows`)."""

from __future__ import annotations

import csv
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


def csv_rows(path: str | Path, delimiter: str = ",") -> list[list[str]]:
    """Every row of a UTF-8 CSV file (a byte-order mark is dropped), header included; a missing file, one that is
    not UTF-8 or not CSV is a one-line DataError naming it."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            return list(csv.reader(f, delimiter=delimiter))
    except FileNotFoundError:
        raise DataError(f"file not found: {path}; check the path") from None
    except UnicodeDecodeError:
        raise not_utf8(path) from None
    except (OSError, csv.Error) as e:
        raise DataError(f"cannot read {path} as UTF-8 CSV ({type(e).__name__}); check the file") from None


__all__ = ["DataError", "csv_rows", "not_utf8"]
