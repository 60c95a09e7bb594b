"""IMDB movie reviews (Maas et al. 2011): the official tarball as raw text, or Keras' pre-indexed ``imdb.npz``.

    folder = imdb_folder()                       # $RNNKIT_DATA/imdb/aclImdb, downloaded and extracted once
    train = load_imdb("train")                   # TextData: 25000 reviews, labels "neg" / "pos"
    (xtr, ytr), (xte, yte), vocab = load_keras_imdb(num_words=10000)

The tarball (``aclImdb_v1.tar.gz``, 84 MB) is fetched with :func:`rnnkit.data.fetch` (resumable, SHA-256
checked) into ``$RNNKIT_DATA/imdb/`` and extracted by :func:`safe_extract`: every member is checked before
anything is written (no absolute path, no ``..``, no link, no device file may leave the target folder),
the members are written to a temporary sibling folder, and that folder is renamed into place, so an
interrupted extraction never leaves a half-filled ``aclImdb``.

``imdb.npz`` stores Python lists as pickled object arrays: it is opened with ``allow_pickle`` only after its
SHA-256 matched the published one.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import tarfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from rnnkit.data.download import fetch, file_digest
from rnnkit.data.errors import DataError
from rnnkit.data.paths import dataset_dir
from rnnkit.data.sources import register_source
from rnnkit.data.text import OOV, PAD, TextData, Vocabulary, load_folder

IMDB_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
IMDB_SHA256 = "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe"
KERAS_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
KERAS_NPZ_SHA256 = "69664113be75683a8fe16e3ed0ab59fda8886cb3cd7ada244f7d9544e4676b9f"
KERAS_WORD_INDEX_MD5 = "bfafd718b763782e994055a2d397834f"
CLASSES = ("neg", "pos")


def _check_member(m: tarfile.TarInfo, dest: Path) -> None:
    name = m.name
    parts = PurePosixPath(name).parts
    if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
        raise DataError(f"unsafe archive: member '{name}' would be written outside {dest}; the archive was not "
                        "extracted, delete it and download it again")
    if not (m.isfile() or m.isdir()):
        raise DataError(f"unsafe archive: member '{name}' is a link or special file; the archive was not extracted, "
                        "delete it and download it again")
    if not (dest / name).resolve().is_relative_to(dest.resolve()):
        raise DataError(f"unsafe archive: member '{name}' resolves outside {dest}; the archive was not extracted")


def safe_extract(archive: Path | str, dest: Path | str) -> Path:
    """Extract the (gzipped) tar ``archive`` into ``dest`` after checking every member; atomic per call."""
    archive, dest = Path(archive), Path(dest)
    tmp = dest.with_name(f".{dest.name}.partial")
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for m in members:
                _check_member(m, tmp)
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(tmp, members=members, **kwargs)  # noqa: S202 - members checked above
    except (tarfile.TarError, EOFError, OSError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataError(f"{archive} is not a readable tar archive ({type(e).__name__}: {e}); delete it and download "
                        "it again") from None
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(tmp, dest)
    return dest


def imdb_folder(root: Path | str | None = None, download: bool = True, *, url: str = IMDB_URL,
                sha256: str = IMDB_SHA256) -> Path:
    """``<root>/aclImdb`` (root: ``$RNNKIT_DATA/imdb``), downloading and extracting the tarball when missing."""
    folder = dataset_dir("imdb", root)
    target = folder / "aclImdb"
    if (target / "train").is_dir() and (target / "test").is_dir():
        return target
    tarball = folder / "aclImdb_v1.tar.gz"
    if not tarball.is_file() and not download:
        raise DataError(f"IMDB is not in {folder}; put aclImdb_v1.tar.gz (or the extracted aclImdb folder) there, "
                        "or allow downloading (data.download: true)")
    fetch(url, tarball, sha256=sha256)
    out = safe_extract(tarball, folder / ".aclImdb.extract")
    inner = out / "aclImdb"
    if not (inner / "train").is_dir():
        shutil.rmtree(out, ignore_errors=True)
        raise DataError(f"{tarball} has no aclImdb/train folder; delete it and download it again")
    os.replace(inner, target)
    shutil.rmtree(out, ignore_errors=True)
    return target


def load_imdb(split: str = "train", root: Path | str | None = None, download: bool = True, **kwargs) -> TextData:
    """Reviews of ``split`` ("train" or "test") with labels "neg" / "pos" (the unlabelled reviews are skipped)."""
    if split not in ("train", "test"):
        raise DataError(f"IMDB split '{split}' is not one of train, test")
    return load_folder(imdb_folder(root, download, **kwargs) / split, classes=CLASSES)


def keras_vocabulary(word_index: dict[str, int], num_words: int | None = None) -> Vocabulary:
    """Keras' indexing: 0 padding, 1 start of review, 2 out of vocabulary, word of rank r at r + 3."""
    size = max(word_index.values()) + 4
    itos = [PAD, "<start>", OOV, "<unused>"] + [""] * (size - 4)
    for word, rank in word_index.items():
        itos[rank + 3] = word
    if num_words is not None:
        itos = itos[:num_words]
    return Vocabulary(itos, oov=2, bos=1)


def load_keras_imdb(root: Path | str | None = None, download: bool = True, num_words: int | None = None, *,
                    url: str = KERAS_URL, sha256: str = KERAS_NPZ_SHA256, word_index_md5: str = KERAS_WORD_INDEX_MD5):
    """Keras' ``imdb.npz`` -> ``((x_train, y_train), (x_test, y_test), vocab)``: x lists of id lists in Keras'
    ``load_data`` layout (1 starts each review, the word of frequency rank r is id r + 3, ids >= ``num_words``
    become 2, the OOV id) — the file itself holds the bare ranks — and y int64 arrays (0 negative, 1 positive).
    The vocabulary uses the same layout, so text encoded for prediction matches the training ids."""
    folder = dataset_dir("imdb", root)
    npz, index = folder / "imdb.npz", folder / "imdb_word_index.json"
    for path in (npz, index):
        if not path.is_file() and not download:
            raise DataError(f"{path} is missing; put Keras' {path.name} there or allow downloading (data.download: "
                            "true)")
    if download:
        fetch(url + "imdb.npz", npz, sha256=sha256)
        fetch(url + "imdb_word_index.json", index, md5=word_index_md5)
    if file_digest(npz, "sha256") != sha256:  # pickled arrays: load only the published file
        raise DataError(f"{npz} does not match the published SHA-256 {sha256}; delete it and download it again")
    try:
        word_index = json.loads(index.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise DataError(f"{index} is not valid JSON; delete it and download it again") from None
    vocab = keras_vocabulary(word_index, num_words)
    limit = len(vocab)
    out = []
    with np.load(npz, allow_pickle=True) as z:
        for split in ("train", "test"):
            xs = [[vocab.bos] + [r + 3 if r + 3 < limit else vocab.oov for r in seq] for seq in z[f"x_{split}"]]
            out.append((xs, np.asarray(z[f"y_{split}"], dtype=np.int64)))
    return out[0], out[1], vocab


@register_source("imdb", modality="text")
def imdb_source(d: Any, part: str) -> TextData | None:
    """The Stanford IMDB reviews (downloaded into ``data.root`` when missing)."""
    return None if part == "val" else load_imdb(part, d.root, d.download)


@dataclass
class PretokenizedText(TextData):
    """Texts already as token ids (``ids``, one list per text) with their vocabulary: Keras' ``imdb.npz``."""

    ids: list = field(default_factory=list)
    vocab: Vocabulary | None = None


@functools.lru_cache(maxsize=2)
def _keras(root: str | None, download: bool, num_words: int | None):
    return load_keras_imdb(root, download, num_words)


@register_source("imdb-npz", modality="text")
def imdb_npz_source(d: Any, part: str) -> TextData | None:
    """Keras' ``imdb.npz``: reviews as word ids (Keras' layout: 1 start, 2 out-of-vocabulary, words from 3)."""
    if part == "val":
        return None
    (xtr, ytr), (xte, yte), vocab = _keras(d.root, d.download, d.num_words)
    x, y = (xtr, ytr) if part == "train" else (xte, yte)
    return PretokenizedText([""] * len(x), [("neg", "pos")[int(v)] for v in y], list(x), vocab)


__all__ = ["CLASSES", "IMDB_SHA256", "IMDB_URL", "PretokenizedText", "imdb_folder", "keras_vocabulary", "load_imdb",
           "load_keras_imdb", "safe_extract"]
