"""One writer per run folder: an OS lock (``flock``) on ``<run>/.lock`` for the whole life of a process that writes
the run (train, resume, backtest, tune). The operating system releases it when the process ends, however it ends
(``kill -9`` included), so a lock is never stale; a second writer gets :class:`~rnnkit.errors.RunInUse` at once
and the first goes on untouched. Where ``fcntl`` does not exist (Windows) the lock is a no-op.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rnnkit.errors import RunInUse

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Linux/macOS
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".lock"


def folder_taken(path: str | Path) -> bool:
    """Whether ``path`` exists as anything but an empty folder (a lone lock file, which another process of the same
    data-parallel run or a run that never started leaves, counts as empty)."""
    path = Path(path)
    return path.exists() and (not path.is_dir() or any(p.name != LOCK_NAME for p in path.iterdir()))


@contextmanager
def run_lock(run_dir: str | Path, what: str = "run folder") -> Iterator[Path]:
    """Hold the lock of ``run_dir`` (created if missing) inside the block; RunInUse when another process has it."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
                raise RunInUse(f"{what} {run_dir} is in use by another rnnkit process (pid {holder}); wait for it "
                               "to finish, or stop it first") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield run_dir
    finally:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


__all__ = ["LOCK_NAME", "folder_taken", "run_lock"]
