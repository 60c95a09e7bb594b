"""rnnkit.data.fetch and load_mnist downloads against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import io
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from rnnkit.data import DataError, download, fetch, load_mnist, mnist, write_idx


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    files: dict[str, bytes]
    mode: str  # "normal", "ignore-range" (always 200) or "truncate" (sends half of what it announces)
    log: list[tuple[str, str | None]]  # (path, Range header) of every request


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        srv, wanted = self.server, self.headers.get("Range")
        srv.log.append((self.path, wanted))
        body = srv.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        if wanted and srv.mode != "ignore-range":
            start = int(wanted.removeprefix("bytes=").split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        chunk = body[start:]
        self.send_header("Content-Length", str(len(chunk)))
        self.end_headers()
        self.wfile.write(chunk[: len(chunk) // 2] if srv.mode == "truncate" else chunk)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Server]:
    monkeypatch.setattr(download, "RETRY_BACKOFF_S", 0.0)
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.files, srv.mode, srv.log = {}, "normal", []
    thread = threading.Thread(target=srv.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join()


def _url(srv: _Server, path: str) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}{path}"


@pytest.fixture
def payload(tmp_path: Path) -> bytes:
    """A gzipped IDX file of 40 random 28x28 images (about 30 KB, several read chunks)."""
    images = np.random.default_rng(0).integers(0, 256, (40, 28, 28), dtype=np.uint8)
    return write_idx(tmp_path / "src.gz", images).read_bytes()


def test_download_verifies_checksum_and_reuses_cache(server: _Server, payload: bytes, tmp_path: Path) -> None:
    server.files["/f.gz"] = payload
    dest = tmp_path / "cache" / "f.gz"
    sha = hashlib.sha256(payload).hexdigest()
    assert fetch(_url(server, "/f.gz"), dest, sha256=sha, progress=False) == dest
    assert dest.read_bytes() == payload and not dest.with_suffix(".gz.part").exists()
    fetch(_url(server, "/f.gz"), dest, sha256=sha, md5=hashlib.md5(payload).hexdigest())
    assert server.log == [("/f.gz", None)]  # the cached file was not downloaded again


def test_damaged_cached_file_is_replaced(server: _Server, payload: bytes, tmp_path: Path) -> None:
    server.files["/f.gz"] = payload
    dest = tmp_path / "f.gz"
    dest.write_bytes(b"garbage")
    fetch(_url(server, "/f.gz"), dest, md5=hashlib.md5(payload).hexdigest(), progress=False)
    assert dest.read_bytes() == payload and len(server.log) == 1


def test_resumes_partial_file_with_range(server: _Server, payload: bytes, tmp_path: Path) -> None:
    server.files["/f.gz"] = payload
    dest = tmp_path / "f.gz"
    dest.with_suffix(".gz.part").write_bytes(payload[:1000])
    fetch(_url(server, "/f.gz"), dest, sha256=hashlib.sha256(payload).hexdigest(), progress=False)
    assert server.log == [("/f.gz", "bytes=1000-")]
    assert dest.read_bytes() == payload and not dest.with_suffix(".gz.part").exists()


def test_server_ignoring_range_restarts(server: _Server, payload: bytes, tmp_path: Path) -> None:
    server.files["/f.gz"], server.mode = payload, "ignore-range"
    dest = tmp_path / "f.gz"
    dest.with_suffix(".gz.part").write_bytes(b"X" * 1000)  # would corrupt the file if appended to
    fetch(_url(server, "/f.gz"), dest, sha256=hashlib.sha256(payload).hexdigest(), progress=False)
    assert server.log == [("/f.gz", "bytes=1000-")] and dest.read_bytes() == payload


def test_complete_part_is_not_downloaded_again(server: _Server, payload: bytes, tmp_path: Path) -> None:
    server.files["/f.gz"] = payload
    dest = tmp_path / "f.gz"
    dest.with_suffix(".gz.part").write_bytes(payload)
    fetch(_url(server, "/f.gz"), dest, sha256=hashlib.sha256(payload).hexdigest(), progress=False)
    assert [code for _, code in server.log] == [f"bytes={len(payload)}-"] and dest.read_bytes() == payload


def test_truncated_transfers_retry_then_fail_then_resume(server: _Server, payload: bytes, tmp_path: Path) -> None:
    server.files["/f.gz"], server.mode = payload, "truncate"
    dest, part = tmp_path / "f.gz", tmp_path / "f.gz.part"
    with pytest.raises(DataError, match=r"failed after 3 attempts .*cut short") as info:
        fetch(_url(server, "/f.gz"), dest, retries=2, progress=False)
    assert "\n" not in str(info.value) and not dest.exists()
    assert [r for _, r in server.log][0] is None and all(r.startswith("bytes=") for _, r in server.log[1:])
    kept = part.stat().st_size
    assert len(payload) // 2 < kept < len(payload) and payload.startswith(part.read_bytes())
    server.mode = "normal"  # the connection is back: the next call resumes where the last one stopped
    fetch(_url(server, "/f.gz"), dest, sha256=hashlib.sha256(payload).hexdigest(), progress=False)
    assert dest.read_bytes() == payload and server.log[-1][1] == f"bytes={kept}-"


def test_bad_checksum_leaves_nothing(server: _Server, payload: bytes, tmp_path: Path) -> None:
    server.files["/f.gz"] = payload
    dest = tmp_path / "cache" / "f.gz"
    actual = hashlib.md5(payload).hexdigest()
    with pytest.raises(DataError, match=f"expected md5 {'0' * 32}, got {actual}"):
        fetch(_url(server, "/f.gz"), dest, md5="0" * 32, progress=False)
    assert list(dest.parent.iterdir()) == []


def test_http_404_is_not_retried(server: _Server, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="HTTP 404"):
        fetch(_url(server, "/missing.gz"), tmp_path / "m.gz", progress=False)
    assert len(server.log) == 1 and list(tmp_path.iterdir()) == []


def test_unreachable_server_gives_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(download, "RETRY_BACKOFF_S", 0.0)
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    port = srv.server_address[1]
    srv.server_close()  # nothing listens on this port any more
    with pytest.raises(DataError, match="failed after 2 attempts"):
        fetch(f"http://127.0.0.1:{port}/x.gz", tmp_path / "x.gz", retries=1, timeout=5, progress=False)
    assert not (tmp_path / "x.gz").exists()


def test_load_mnist_downloads_then_uses_cache(server: _Server, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    arrays = {"train-images-idx3-ubyte.gz": rng.integers(0, 256, (12, 28, 28), dtype=np.uint8),
              "train-labels-idx1-ubyte.gz": rng.integers(0, 10, 12, dtype=np.uint8)}
    md5s = {}
    for name, array in arrays.items():
        blob = write_idx(tmp_path / name, array).read_bytes()
        server.files[f"/mnist/{name}"], md5s[name] = blob, hashlib.md5(blob).hexdigest()
    monkeypatch.setitem(mnist.SOURCES, "mnist", (_url(server, "/mnist/"), md5s))
    monkeypatch.setenv("RNNKIT_DATA", str(tmp_path / "root"))
    images, labels = load_mnist("mnist", "train")
    assert images.dtype == np.uint8 and images.shape == (12, 28, 28) and labels.dtype == np.int64
    np.testing.assert_array_equal(images, arrays["train-images-idx3-ubyte.gz"])
    np.testing.assert_array_equal(labels, arrays["train-labels-idx1-ubyte.gz"])
    assert sorted(p.name for p in (tmp_path / "root" / "mnist").iterdir()) == sorted(arrays)
    load_mnist("mnist", "train", download=False)
    assert len(server.log) == 2  # second call read the cache
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz not found in .*download=True"):
        load_mnist("mnist", "test", download=False)
    md5s["train-images-idx3-ubyte.gz"] = "f" * 32  # a mirror serving the wrong file
    with pytest.raises(DataError, match="checksum mismatch"):
        load_mnist("mnist", "train", root=tmp_path / "other")
    assert not (tmp_path / "other" / "train-images-idx3-ubyte.gz").exists()


def test_progress_bar_on_a_terminal(server: _Server, payload: bytes, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    class _Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stderr", _Tty())
    server.files["/f.gz"] = payload
    fetch(_url(server, "/f.gz"), tmp_path / "cache" / "f.gz", progress=True)
    assert (tmp_path / "cache" / "f.gz").read_bytes() == payload
