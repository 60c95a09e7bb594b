"""IMDB: the tarball download, verification and safe extraction against a local HTTP server; Keras' imdb.npz."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from rnnkit.data import DataError, download
from rnnkit.data.imdb import imdb_folder, keras_vocabulary, load_imdb, load_keras_imdb, safe_extract

REVIEWS = {"train/pos/0_9.txt": "A wonderful film.<br /><br />Loved it", "train/pos/1_8.txt": "great great fun",
           "train/neg/0_2.txt": "Dull, and far too long.", "train/neg/1_1.txt": "awful",
           "train/unsup/0_0.txt": "no label here", "test/pos/0_10.txt": "superb", "test/neg/0_3.txt": "boring",
           "README": "tiny copy of the aclImdb layout"}


def make_tarball(members: dict[str, bytes | str], prefix: str = "aclImdb/") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, body in members.items():
            data = body.encode() if isinstance(body, str) else body
            info = tarfile.TarInfo(prefix + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class Server(ThreadingHTTPServer):
    daemon_threads = True
    files: dict[str, bytes]
    cut_next: int  # the next this-many responses send half their body, then hang up
    requests: list[str | None]  # Range header of every request


class Handler(BaseHTTPRequestHandler):
    server: Server

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        rng = self.headers.get("Range")
        self.server.requests.append(rng)
        body = self.server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = int(rng.split("=")[1].split("-")[0]) if rng else 0
        self.send_response(206 if rng else 200)
        if rng:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        part = body[start:]
        self.send_header("Content-Length", str(len(part)))
        self.end_headers()
        if self.server.cut_next > 0:
            self.server.cut_next -= 1
            part = part[: len(part) // 2]
        self.wfile.write(part)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    monkeypatch.setattr(download, "RETRY_BACKOFF_S", 0.0)
    srv = Server(("127.0.0.1", 0), Handler)
    srv.files, srv.cut_next, srv.requests = {}, 0, []
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def url(srv: Server, name: str) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}/{name}"


def test_download_extract_and_load(server: Server, tmp_path: Path) -> None:
    blob = make_tarball(REVIEWS)
    server.files["/aclImdb_v1.tar.gz"] = blob
    server.cut_next = 1  # the first transfer is cut short: fetch must resume it with a Range request
    folder = imdb_folder(tmp_path, url=url(server, "aclImdb_v1.tar.gz"), sha256=hashlib.sha256(blob).hexdigest())
    assert folder == tmp_path / "aclImdb"
    assert server.requests[0] is None and server.requests[1] is not None and server.requests[1].startswith("bytes=")
    assert (tmp_path / "aclImdb_v1.tar.gz").read_bytes() == blob
    train = load_imdb("train", tmp_path, download=False)
    assert sorted(zip(train.labels, train.texts, strict=True))[0] == ("neg", "Dull, and far too long.")
    assert len(train) == 4 and set(train.labels) == {"neg", "pos"}  # unsup/ is skipped
    assert len(load_imdb("test", tmp_path, download=False)) == 2
    n = len(server.requests)
    imdb_folder(tmp_path, url=url(server, "aclImdb_v1.tar.gz"))  # cached: no request
    assert len(server.requests) == n


def test_checksum_mismatch_leaves_nothing(server: Server, tmp_path: Path) -> None:
    server.files["/aclImdb_v1.tar.gz"] = make_tarball(REVIEWS)
    with pytest.raises(DataError, match="checksum mismatch"):
        imdb_folder(tmp_path, url=url(server, "aclImdb_v1.tar.gz"), sha256="0" * 64)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("evil", ["../escaped.txt", "/abs/escaped.txt", "aclImdb/../../escaped.txt"])
def test_member_escaping_the_folder_is_refused(server: Server, tmp_path: Path, evil: str) -> None:
    blob = make_tarball({**{f"aclImdb/{k}": v for k, v in REVIEWS.items()}, evil: "pwned"}, prefix="")
    server.files["/aclImdb_v1.tar.gz"] = blob
    root = tmp_path / "data" / "imdb"
    with pytest.raises(DataError, match="unsafe archive"):
        imdb_folder(root, url=url(server, "aclImdb_v1.tar.gz"), sha256=hashlib.sha256(blob).hexdigest())
    assert not list(tmp_path.rglob("escaped.txt")) and not Path("/abs/escaped.txt").exists()
    assert not (root / "aclImdb").exists() and not list(root.glob(".*partial"))


def test_links_are_refused(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("aclImdb/link")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    (tmp_path / "a.tar").write_bytes(buf.getvalue())
    with pytest.raises(DataError, match="link"):
        safe_extract(tmp_path / "a.tar", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_without_download(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="allow downloading"):
        load_imdb("train", tmp_path, download=False)


def _keras_files(tmp_path: Path) -> tuple[bytes, bytes]:
    """Files in the real layout: imdb.npz holds each review as bare frequency ranks (no start id, no offset)."""
    x_train = np.empty(3, dtype=object)
    x_train[:] = [[1, 2], [3, 4, 1], [2]]  # good film / bad plot good / film
    x_test = np.empty(1, dtype=object)
    x_test[:] = [[4, 3]]  # plot bad
    buf = io.BytesIO()
    np.savez(buf, x_train=x_train, y_train=np.array([1, 0, 1]), x_test=x_test, y_test=np.array([0]))
    index = json.dumps({"good": 1, "film": 2, "bad": 3, "plot": 4}).encode()
    return buf.getvalue(), index


def test_keras_npz(server: Server, tmp_path: Path) -> None:
    npz, index = _keras_files(tmp_path)
    server.files.update({"/imdb.npz": npz, "/imdb_word_index.json": index})
    base = url(server, "")
    (xtr, ytr), (xte, yte), vocab = load_keras_imdb(tmp_path, num_words=6, url=base,
                                                    sha256=hashlib.sha256(npz).hexdigest(),
                                                    word_index_md5=hashlib.md5(index).hexdigest())
    assert xtr == [[1, 4, 5], [1, 2, 2, 4], [1, 5]]  # Keras' load_data: 1 starts, rank r -> r + 3, >= num_words -> 2
    assert ytr.tolist() == [1, 0, 1] and xte == [[1, 2, 2]] and yte.tolist() == [0]
    assert vocab.itos[4:] == ["good", "film"] and vocab.encode(["good", "plot"]) == [1, 4, 2]
    # the training ids of "good film" are what encoding the text gives: training and predict --text agree
    assert xtr[0] == vocab.encode(["good", "film"])
    with pytest.raises(DataError, match="published SHA-256"):  # a file that is not the published one
        load_keras_imdb(tmp_path, download=False, sha256="1" * 64)


def test_keras_vocabulary_layout() -> None:
    v = keras_vocabulary({"the": 1, "a": 2})
    assert v.itos[:6] == ["<pad>", "<start>", "<oov>", "<unused>", "the", "a"] and (v.oov, v.bos) == (2, 1)


def test_imdb_task_trains_from_local_folder(tmp_path: Path) -> None:
    import rnnkit

    imdb = tmp_path / "imdb"
    (tmp_path / "t.tar.gz").write_bytes(make_tarball(REVIEWS))
    safe_extract(tmp_path / "t.tar.gz", imdb / "x")
    (imdb / "x" / "aclImdb").rename(imdb / "aclImdb")
    cfg = {"name": "imdb-tiny", "task": "text_classification",
           "model": {"hidden_size": 8, "embedding_dim": 8},
           "data": {"source": "imdb", "root": str(imdb), "download": False, "val_fraction": 0.0},
           "training": {"epochs": 1, "batch_size": 2, "monitor": "train_loss", "num_threads": 1}}
    run = rnnkit.train(cfg, out=tmp_path / "run")
    assert run.task.classes == ["neg", "pos"] and run.metrics["test"]["count"] == 2
    assert [r["predicted"] in ("neg", "pos") for r in run.predict(["superb film"])] == [True]

