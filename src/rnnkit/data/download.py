"""Real HTTP(S) downloads: streamed, resumable, checksummed, atomically renamed into place.

``fetch(url, dest)`` writes to ``dest`` + ``.part`` first. An interrupted transfer leaves that part file
behind and the next call resumes it with an HTTP ``Range`` request (a server that answers ``200`` instead of
``206`` makes it start over). Only a complete file whose checksum matches is fsynced and renamed onto
``dest`` with ``os.replace``, so ``dest`` is either absent or whole; a checksum mismatch deletes the part.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from rnnkit.data.errors import DataError

CHUNK = 1 << 16
#: Seconds to wait before retry ``k`` (1-based) is ``RETRY_BACKOFF_S * 2 ** (k - 1)``, at most 30 s.
RETRY_BACKOFF_S = 1.0
_USER_AGENT = "rnnkit-data/0.1 (+urllib)"


class _Transient(Exception):
    """A failed attempt worth retrying (network error, cut-short body, HTTP 5xx)."""


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of the file at ``path`` with ``hashlib`` algorithm ``algorithm`` ("sha256", "md5")."""
    h = hashlib.new(algorithm, usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _mismatch(path: Path, sha256: str | None, md5: str | None) -> tuple[str, str, str] | None:
    """``(algorithm, expected, actual)`` for the first checksum that does not match, else ``None``."""
    for algorithm, expected in (("sha256", sha256), ("md5", md5)):
        if expected:
            actual = file_digest(path, algorithm)
            if actual.lower() != expected.strip().lower():
                return algorithm, expected.strip().lower(), actual
    return None


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """``(first byte, total size)`` from a ``Content-Range`` header such as ``bytes 100-199/200``."""
    m = re.fullmatch(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*", value or "")
    if not m:
        return None, None
    return (int(m[1]) if m[1] else None), (int(m[2]) if m[2] != "*" else None)


class _Progress:
    """A rich progress bar on stderr when ``enabled`` and stderr is a terminal; otherwise silent."""

    def __init__(self, enabled: bool, label: str, total: int | None, done: int) -> None:
        self._bar: Any = None
        if not (enabled and sys.stderr.isatty()):
            return
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

        columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
        self._bar = Progress(*columns, console=Console(stderr=True), transient=True)
        self._task = self._bar.add_task(label, total=total, completed=done)
        self._bar.start()

    def advance(self, n: int) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def _attempt(url: str, part: Path, timeout: float, progress: bool) -> None:
    """One request: resume ``part`` if it has bytes, else start it; raise ``_Transient`` on a retryable
    failure and ``DataError`` on a final one. Returns once ``part`` holds the whole body."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        e.close()
        if e.code == 416 and have:  # nothing left to send: complete, or a stale part from another file
            if _content_range(e.headers.get("Content-Range"))[1] == have:
                return
            part.unlink(missing_ok=True)
            raise _Transient(f"server refused to resume {part.name}; starting over") from None
        if e.code in (408, 425, 429) or e.code >= 500:
            raise _Transient(f"HTTP {e.code} {e.reason}") from None
        raise DataError(f"download of {url} failed with HTTP {e.code} {e.reason}; check the URL, "
                        f"or put the file at {part.with_suffix('')} yourself") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        raise _Transient(f"{type(e).__name__}: {getattr(e, 'reason', e)}") from None
    with response:
        length = response.headers.get("Content-Length")
        body = int(length) if length and length.isdigit() else None
        start, total = _content_range(response.headers.get("Content-Range"))
        if response.status == 206:
            if not have or start != have:  # a range we did not ask for: start over from scratch
                part.unlink(missing_ok=True)
                raise _Transient(f"server sent bytes from {start}, not from {have}; starting over")
            mode, total = "ab", total if total is not None else (have + body if body is not None else None)
        else:  # 200: the server ignored the Range header (or there was none) and sends the whole file
            mode, have, total = "wb", 0, body
        got = 0
        bar = _Progress(progress, part.name.removesuffix(".part"), total, have)
        try:
            with open(part, mode) as f:
                while chunk := response.read(CHUNK):
                    f.write(chunk)
                    got += len(chunk)
                    bar.advance(len(chunk))
                f.flush()
                os.fsync(f.fileno())
        except (OSError, http.client.HTTPException) as e:
            raise _Transient(f"transfer interrupted after {have + got} bytes ({type(e).__name__})") from None
        finally:
            bar.close()
    if body is not None and got < body:
        raise _Transient(f"transfer cut short: got {have + got} of {have + body} bytes")


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort; not possible on every platform)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fetch(url: str, dest: Path | str, *, sha256: str | None = None, md5: str | None = None,
          timeout: float = 60, retries: int = 3, progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` and return ``dest``.

    An existing ``dest`` is kept when it matches the given checksums (or when none are given). The body
    streams into ``dest`` + ``.part``; a part left by an earlier run is resumed with a ``Range`` request.
    Network errors, HTTP 5xx and bodies shorter than their ``Content-Length`` are retried ``retries`` times
    (each retry resumes), with exponential backoff. A checksum mismatch deletes the part and raises
    :class:`DataError` with the expected and actual digests; so does running out of retries (the part is
    kept so that the next call resumes). Progress is drawn with rich only when stderr is a terminal.
    """
    dest = Path(dest).expanduser()
    part = dest.with_suffix(dest.suffix + ".part")
    if dest.is_file():
        if _mismatch(dest, sha256, md5) is None:
            return dest
        dest.unlink()  # damaged or outdated: never leave it in the cache
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(min(RETRY_BACKOFF_S * 2 ** (attempt - 1), 30.0))
        try:
            _attempt(url, part, timeout, progress)
            break
        except _Transient as e:
            errors.append(str(e))
    else:
        raise DataError(f"download of {url} failed after {retries + 1} attempts (last: {errors[-1]}); "
                        f"check the network and run again to resume {part}")
    bad = _mismatch(part, sha256, md5)
    if bad is not None:
        part.unlink(missing_ok=True)
        algorithm, expected, actual = bad
        raise DataError(f"checksum mismatch for {url}: expected {algorithm} {expected}, got {actual}; "
                        "the download was deleted, run again or check the URL")
    os.replace(part, dest)
    fsync_dir(dest.parent)
    return dest
