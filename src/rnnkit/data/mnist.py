"""MNIST and Fashion-MNIST from their standard IDX files, downloaded on first use.

Files are looked for in ``root`` or ``data_root() / name`` under their standard names, gzipped
(``train-images-idx3-ubyte.gz``) or not (``train-images-idx3-ubyte``). Files already there are accepted after
structural validation only (recompressed copies have other gzip checksums); downloads are checked against the
upstream MD5s below.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rnnkit.data.download import fetch
from rnnkit.data.errors import DataError
from rnnkit.data.idx import read_idx
from rnnkit.data.paths import dataset_dir

#: name -> (base URL, {file name: MD5 of the gzipped file}).
#: MNIST: the ossci-datasets S3 mirror, torchvision's first choice (same files as yann.lecun.com/exdb/mnist).
#: Fashion-MNIST: the Zalando S3 website bucket named in github.com/zalandoresearch/fashion-mnist README.
SOURCES: dict[str, tuple[str, dict[str, str]]] = {
    "mnist": ("https://ossci-datasets.s3.amazonaws.com/mnist/", {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    }),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/", {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    }),
}
MNIST_CLASSES = [str(d) for d in range(10)]
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
SPLITS = {"train": "train", "test": "t10k"}


def class_names(name: str = "mnist") -> list[str]:
    """The 10 class names of ``"mnist"`` (digits) or ``"fashion-mnist"`` (clothing), indexed by label."""
    _check_name(name)
    return list(FASHION_MNIST_CLASSES if name == "fashion-mnist" else MNIST_CLASSES)


def _check_name(name: str) -> None:
    if name not in SOURCES:
        raise DataError(f"unknown dataset {name!r}; use one of {', '.join(SOURCES)}")


def _locate(name: str, folder: Path, stem: str, download: bool) -> Path:
    """The path of ``stem`` (gzipped or raw) in ``folder``, downloading the gzipped file when allowed."""
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    if not download:
        raise DataError(f"{name} file {stem}.gz not found in {folder}; put the IDX files there, set RNNKIT_DATA, "
                        "or allow downloading (download=True)")
    base, md5s = SOURCES[name]
    return fetch(base + f"{stem}.gz", folder / f"{stem}.gz", md5=md5s.get(f"{stem}.gz"))


def load_mnist(name: str = "mnist", split: str = "train", root: Path | str | None = None,
               download: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 ``(N, 28, 28)`` and labels int64 ``(N,)`` of ``split`` ("train" or "test") of ``name``
    ("mnist" or "fashion-mnist"), read from ``root`` or ``data_root() / name``."""
    _check_name(name)
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r} for {name}; use 'train' or 'test'")
    folder = dataset_dir(name, root)
    prefix = SPLITS[split]
    images_path = _locate(name, folder, f"{prefix}-images-idx3-ubyte", download)
    labels_path = _locate(name, folder, f"{prefix}-labels-idx1-ubyte", download)
    images, labels = read_idx(images_path), read_idx(labels_path)
    fix = "delete it so that it is downloaded again"
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError(f"{images_path} holds {images.dtype} {images.shape}, not uint8 (N, 28, 28) images; {fix}")
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DataError(f"{labels_path} holds {labels.dtype} {labels.shape}, not uint8 (N,) labels; {fix}")
    if len(images) != len(labels):
        raise DataError(f"{images_path.name} has {len(images)} images but {labels_path.name} has {len(labels)} "
                        f"labels in {folder}; replace the mismatched file")
    if labels.size and labels.max() > 9:
        raise DataError(f"{labels_path} has label {int(labels.max())}, outside 0..9; {fix}")
    return images, labels.astype(np.int64)
