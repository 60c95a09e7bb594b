"""The built-in sources of the ``sequences`` modality (sequence classification): npz, csv, mnist,
fashion-mnist, the generated Cylinder-Bell-Funnel set and the embedded demo data. Each is one function; see
:mod:`rnnkit.data.sources`."""

from __future__ import annotations

from typing import Any

import numpy as np

from rnnkit.data.embedded import load_embedded
from rnnkit.data.sequences import SequenceData, load_csv, load_mnist_sequences, load_npz
from rnnkit.data.sources import register_source
from rnnkit.errors import ConfigError

_PATHS = {"train": "path", "val": "val_path", "test": "test_path"}


@register_source("npz", modality="sequences")
def npz_source(d: Any, part: str) -> SequenceData | None:
    """``X`` (N, T, D), ``y`` and optional ``lengths`` from ``data.path`` (``val_path``, ``test_path``)."""
    path = getattr(d, _PATHS[part])
    return None if path is None else load_npz(path)


@register_source("csv", modality="sequences")
def csv_source(d: Any, part: str, *, id_col: str = "id", time_col: str = "t", label_col: str = "label",
               features: list | None = None, per_step: bool | None = None, delimiter: str = ",") -> SequenceData | None:
    """A long-format CSV, one row per step (see :func:`rnnkit.data.sequences.load_csv`)."""
    path = getattr(d, _PATHS[part])
    return None if path is None else load_csv(path, id_col=id_col, time_col=time_col, label_col=label_col,
                                              features=features, per_step=per_step, delimiter=delimiter)


def _pixels(data: SequenceData, pixels: bool, permute: int | None) -> SequenceData:
    """28 rows of 28 pixels as they are, or (``pixels``) 784 steps of one pixel each, in reading order or in the
    fixed random order drawn from the seed ``permute`` (the same for every image and split)."""
    if permute is not None and not pixels:
        raise ConfigError("data.options.permute reorders single pixels; set data.options.pixels: true as well")
    if not pixels:
        return data
    X = data.X.reshape(len(data.X), -1, 1)
    if permute is not None:
        X = X[:, np.random.default_rng(permute).permutation(X.shape[1])]
    return SequenceData(np.ascontiguousarray(X), data.y, None, data.classes)


@register_source("mnist", modality="sequences")
def mnist_source(d: Any, part: str, *, pixels: bool = False, permute: int | None = None) -> SequenceData | None:
    """MNIST, each image 28 steps of 28 pixels (``pixels: true``: 784 steps of one pixel, the pixel-by-pixel
    benchmark; ``permute: SEED``: in a fixed random order), from ``data.root`` (downloaded when missing)."""
    return None if part == "val" else _pixels(load_mnist_sequences("mnist", part, d.root, d.download), pixels,
                                              permute)


@register_source("fashion-mnist", modality="sequences")
def fashion_mnist_source(d: Any, part: str, *, pixels: bool = False,
                         permute: int | None = None) -> SequenceData | None:
    """Fashion-MNIST, each image 28 steps of 28 pixels (``pixels``, ``permute``: as for mnist), from
    ``data.root`` (downloaded when missing)."""
    return None if part == "val" else _pixels(load_mnist_sequences("fashion-mnist", part, d.root, d.download),
                                              pixels, permute)


@register_source("embedded", modality="sequences")
def embedded_source(d: Any, part: str) -> SequenceData | None:
    """Data shipped inside the package (``data.name``: digits)."""
    return load_embedded(d.name) if part == "train" else None


CBF_CLASSES = ["cylinder", "bell", "funnel"]


def cbf_data(n: int, length: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` Cylinder-Bell-Funnel series (Saito 1994): X (n, length, 1) float32, y (n,) int64 in 0..2, balanced.

    Each series is noise N(0, 1) plus, on an event [a, b], an amplitude 6 + N(0, 1) that is flat (cylinder),
    rises linearly to b (bell) or falls linearly from a (funnel). With ``length`` 128, a ~ U[16, 32] and
    b - a ~ U[32, 96], the standard definition; other lengths scale both ranges."""
    s = length / 128.0
    y = rng.permutation(np.arange(n) % 3)
    t = np.arange(length)[None, :]
    a = rng.uniform(16 * s, 32 * s, (n, 1))
    b = a + rng.uniform(32 * s, 96 * s, (n, 1))
    amp = 6.0 + rng.standard_normal((n, 1))
    on = (t >= a) & (t <= b)
    shape = np.where(y[:, None] == 0, 1.0, np.where(y[:, None] == 1, (t - a) / (b - a), (b - t) / (b - a)))
    X = amp * on * shape + rng.standard_normal((n, length))
    return X[..., None].astype(np.float32), y.astype(np.int64)


@register_source("cbf", modality="sequences")
def cbf_source(d: Any, part: str, *, n_train: int = 30, n_test: int = 900, length: int = 128,
               seed: int = 0) -> SequenceData | None:
    """Cylinder-Bell-Funnel, generated (:func:`cbf_data`): ``n_train`` training and ``n_test`` test series of
    ``length`` steps, three classes; the UCR archive's sizes by default (30 / 900, 128 steps). A small
    series-classification set, the kind where a network trained for a few dozen steps learns nothing."""
    if part == "val":
        return None
    for key, value, low in (("n_train", n_train, 3), ("n_test", n_test, 1), ("length", length, 8)):
        if value < low:
            raise ConfigError(f"data.options.{key} must be >= {low} for source: cbf, got {value}")
    n = n_train if part == "train" else n_test
    X, y = cbf_data(n, length, np.random.default_rng([seed, 0 if part == "train" else 1]))
    return SequenceData(X, y, None, list(CBF_CLASSES))
