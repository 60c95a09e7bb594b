"""The one exception type of :mod:`rnnkit.data`."""

from __future__ import annotations


class DataError(ValueError):
    """A data problem the user can fix: missing, malformed or corrupt file, wrong shapes.

    The message is always a single line that names the problem and the fix; the CLI prints it and exits
    with status 2.
    """

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))
