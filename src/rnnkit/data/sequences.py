"""Sequence-classification data: the :class:`SequenceData` container and its sources (NPZ, CSV, MNIST).

NPZ (``numpy.savez``): ``X`` float ``(N, T, D)`` or ``(N, T)`` (one feature), ``y`` int ``(N,)`` (one label
per sequence) or ``(N, T)`` (one label per step), optional ``lengths`` int ``(N,)`` (valid steps of each
sequence, the rest is padding) and optional ``classes`` (``K`` strings, the name of each label).

CSV, long format: a header row, then one row per time step. Columns: ``id`` (sequence identifier, any text),
optional ``t`` (orders the steps of a sequence; only the order matters), ``label`` (an integer >= 0 or a
class name) and the features (every other column, or the ``features`` given), all numbers. Sequences keep
the order in which their ids first appear, are zero-padded to the longest and come with ``lengths``. One
label per sequence when it is constant within every sequence, else one per step (``per_step`` forces it).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnnkit.data.errors import DataError, csv_rows
from rnnkit.data.mnist import class_names, load_mnist


@dataclass
class SequenceData:
    """A labelled set of ``N`` sequences of ``T`` steps of ``D`` features.

    ``X`` float32 ``(N, T, D)``; ``y`` int64 ``(N,)`` or ``(N, T)`` per-step labels; ``lengths`` int64
    ``(N,)`` in ``1..T`` or ``None`` (all ``T`` steps valid); ``classes`` the name of each label or ``None``.
    Build it with :meth:`from_arrays` to coerce and validate.
    """

    X: np.ndarray
    y: np.ndarray
    lengths: np.ndarray | None = None
    classes: list[str] | None = None

    @classmethod
    def from_arrays(cls, X: np.ndarray, y: np.ndarray, lengths: np.ndarray | None = None,
                    classes: list[str] | None = None, *, where: str = "sequence data") -> SequenceData:
        """Coerce and validate; raise :class:`DataError` (prefixed with ``where``) on the first problem."""
        return _validated(X, y, lengths, classes, where)

    def __len__(self) -> int:
        return len(self.X)

    @property
    def num_steps(self) -> int:
        return self.X.shape[1]

    @property
    def num_features(self) -> int:
        return self.X.shape[2]

    @property
    def num_classes(self) -> int:
        """``len(classes)`` when named, else the largest label + 1."""
        return len(self.classes) if self.classes is not None else int(self.y.max(initial=-1)) + 1

    @property
    def per_step(self) -> bool:
        """Whether ``y`` holds one label per step ``(N, T)`` rather than one per sequence ``(N,)``."""
        return self.y.ndim == 2

    def subset(self, index: np.ndarray | slice) -> SequenceData:
        """The sequences selected by ``index`` (integer array, boolean mask or slice)."""
        lengths = None if self.lengths is None else self.lengths[index]
        return SequenceData(self.X[index], self.y[index], lengths, self.classes)

    def split(self, test_fraction: float = 0.2, seed: int = 0) -> tuple[SequenceData, SequenceData]:
        """A random ``(train, test)`` split with ``round(N * test_fraction)`` test sequences."""
        if not 0 < test_fraction < 1:
            raise DataError(f"test_fraction must be between 0 and 1, got {test_fraction}; use e.g. 0.2")
        order = np.random.default_rng(seed).permutation(len(self))
        n_test = min(max(int(round(len(self) * test_fraction)), 1), len(self) - 1)
        return self.subset(np.sort(order[n_test:])), self.subset(np.sort(order[:n_test]))


def _integers(a: np.ndarray, what: str, where: str) -> np.ndarray:
    """``a`` as int64; floats are accepted only when they are whole numbers."""
    a = np.asarray(a)
    if a.dtype.kind in "biu":
        return a.astype(np.int64)
    if a.dtype.kind == "f" and np.isfinite(a).all() and (a == np.round(a)).all():
        return a.astype(np.int64)
    raise DataError(f"{where}: {what} must hold integers, got {a.dtype} values; store whole numbers")


def _validated(X: np.ndarray, y: np.ndarray, lengths: np.ndarray | None, classes: list[str] | None,
               where: str) -> SequenceData:
    X = np.asarray(X)
    if X.dtype.kind not in "biuf":
        raise DataError(f"{where}: X must be numeric, got dtype {X.dtype}; store numbers only")
    if X.ndim == 2:
        X = X[:, :, None]
    if X.ndim != 3 or X.shape[0] == 0 or X.shape[1] == 0:
        raise DataError(f"{where}: X has shape {X.shape}; expected (N, T, D) or (N, T) with N, T >= 1")
    X = X.astype(np.float32, copy=False)
    finite = np.isfinite(X).all(axis=(1, 2))
    if not finite.all():
        raise DataError(f"{where}: X has NaN or infinite values (first in sequence {int(np.argmin(finite))}); "
                        "fill or drop them")
    n, t = X.shape[:2]
    y = _integers(y, "y", where)
    if y.shape not in ((n,), (n, t)):
        raise DataError(f"{where}: y has shape {y.shape}; expected ({n},) labels or ({n}, {t}) per-step labels")
    if lengths is not None:
        lengths = _integers(lengths, "lengths", where)
        if lengths.shape != (n,):
            raise DataError(f"{where}: lengths has shape {lengths.shape}; expected ({n},), one per sequence")
        if lengths.min() < 1 or lengths.max() > t:
            raise DataError(f"{where}: lengths must lie in 1..{t} (the padded length), found "
                            f"{int(lengths.min())}..{int(lengths.max())}; fix the lengths or the padding")
        if y.ndim == 2:  # labels of padding steps are ignored
            y = np.where(np.arange(t) < lengths[:, None], y, 0)
    if y.min() < 0:
        raise DataError(f"{where}: labels must be integers >= 0, found {int(y.min())}; map classes to 0..K-1")
    if classes is not None:
        classes = [str(c) for c in classes]
        if y.max() >= len(classes):
            raise DataError(f"{where}: label {int(y.max())} has no name among the {len(classes)} classes; "
                            "give one class name per label")
    return SequenceData(X, y, lengths, classes)


def load_npz(path: Path | str, labels: bool = True) -> SequenceData:
    """Sequences from an ``.npz`` with ``X``, ``y`` and optional ``lengths`` and ``classes`` (see module doc);
    ``labels=False`` (prediction): ``y`` may be absent."""
    path = Path(path)
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise DataError(f"{path} is a single .npy array, not an .npz; save X and y together with numpy.savez")
        with archive:
            arrays = {k: archive[k] for k in archive.files}
    except FileNotFoundError:
        raise DataError(f"file not found: {path}; check the path") from None
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path} is not a readable .npz file ({type(e).__name__}); save it with numpy.savez, "
                        "without object arrays") from None
    if not labels and "y" not in arrays and "X" in arrays and np.ndim(arrays["X"]) >= 1:
        arrays["y"] = np.zeros(len(arrays["X"]), np.int64)
    missing = [k for k in ("X", "y") if k not in arrays]
    if missing:
        raise DataError(f"{path} lacks array {' and '.join(missing)} (it has {', '.join(arrays) or 'none'}); "
                        "save X and y with numpy.savez(path, X=..., y=...)")
    classes = arrays.get("classes")
    names = None if classes is None else [str(c) for c in classes.reshape(-1)]
    return _validated(arrays["X"], arrays["y"], arrays.get("lengths"), names, str(path))


def load_csv(path: Path | str, *, id_col: str = "id", time_col: str = "t", label_col: str = "label",
             features: list[str] | None = None, per_step: bool | None = None,
             delimiter: str = ",") -> SequenceData:
    """Sequences from a long-format CSV, one row per step (see module doc); always returns ``lengths``."""
    path = Path(path)
    rows = csv_rows(path, delimiter)
    if not rows:
        raise DataError(f"{path} is empty; write a header row ({id_col},{label_col},features...) and data rows")
    header = [h.strip() for h in rows[0]]
    for required in (id_col, label_col):
        if required not in header:
            raise DataError(f"{path} has no {required!r} column (header: {','.join(header)}); add it or pass "
                            f"{'id_col' if required == id_col else 'label_col'}=")
    has_t = time_col in header
    names = features if features is not None else [h for h in header if h not in (id_col, time_col, label_col)]
    unknown = [c for c in names if c not in header]
    if not names or unknown:
        raise DataError(f"{path}: feature columns {unknown or 'missing'}; header is {','.join(header)}, "
                        "give feature columns that exist")
    i_id, i_label, i_t = header.index(id_col), header.index(label_col), header.index(time_col) if has_t else -1
    cols = [header.index(c) for c in names]
    groups: dict[str, list[tuple[float, list[float], str]]] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise DataError(f"{path} line {line} has {len(row)} fields, the header has {len(header)}; fix the row")
        try:
            step = float(row[i_t]) if has_t else float(len(groups.get(row[i_id], ())))
            values = [float(row[j]) for j in cols]
        except ValueError:
            bad = next(c for c in [time_col] * has_t + names if not _is_number(row[header.index(c)]))
            raise DataError(f"{path} line {line}: {bad} = {row[header.index(bad)]!r} is not a number; "
                            "fill in every feature and time value") from None
        groups.setdefault(row[i_id], []).append((step, values, row[i_label].strip()))
    if not groups:
        raise DataError(f"{path} has a header but no data rows; add one row per time step")
    for key, steps in groups.items():
        steps.sort(key=lambda s: s[0])
        if has_t and len({s[0] for s in steps}) < len(steps):
            raise DataError(f"{path}: sequence {key!r} repeats a {time_col} value; give each step its own {time_col}")
    labels = [s[2] for steps in groups.values() for s in steps]
    if all(_is_int(v) for v in labels):
        classes, code = None, {v: int(v) for v in set(labels)}
    else:
        classes = sorted(set(labels))
        code = {v: i for i, v in enumerate(classes)}
    varying = [k for k, steps in groups.items() if len({s[2] for s in steps}) > 1]
    if per_step is False and varying:
        raise DataError(f"{path}: the label varies within sequence {varying[0]!r}; pass per_step=True or give "
                        "each sequence one label")
    per_step = bool(varying) if per_step is None else per_step
    n, t = len(groups), max(len(s) for s in groups.values())
    X = np.zeros((n, t, len(names)), np.float32)
    y = np.zeros((n, t) if per_step else (n,), np.int64)
    lengths = np.zeros(n, np.int64)
    for i, steps in enumerate(groups.values()):
        lengths[i] = len(steps)
        X[i, : len(steps)] = [s[1] for s in steps]
        y[i] = [code[s[2]] for s in steps] + [0] * (t - len(steps)) if per_step else code[steps[0][2]]
    return _validated(X, y, lengths, classes, str(path))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _is_int(text: str) -> bool:
    return text.lstrip("+-").isdigit()


def load_mnist_sequences(name: str = "mnist", split: str = "train", root: Path | str | None = None,
                         download: bool = True) -> SequenceData:
    """MNIST or Fashion-MNIST as sequences: each image is 28 steps (rows) of 28 features, scaled to [0, 1].

    ``X`` float32 ``(N, 28, 28)``, ``y`` int64 ``(N,)``, ``classes`` the 10 class names.
    """
    images, labels = load_mnist(name, split, root, download)
    X = images.astype(np.float32) / np.float32(255)
    return SequenceData(X, labels, None, class_names(name))
