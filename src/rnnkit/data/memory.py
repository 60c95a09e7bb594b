"""In-memory data for a run: arrays, tensors, lists of texts, pandas series written to files the registered
sources read (``npz``, ``csv``, ``array``, ``text``), so that a run folder holds what it was trained on and
resumes, reports and reloads like any other. The estimators and ``rnnkit.train`` with data in the config use it.

Files are written to a staging folder beside the run folder (the run folder must not exist before training),
then :func:`settle` moves them into ``<run>/data/`` and points the run's ``config.yaml`` there.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rnnkit.data.errors import DataError


def staging_dir(run_dir: Path) -> Path:
    """Where data is written before the run folder exists (moved to ``<run>/data`` afterwards)."""
    return run_dir.parent / f".{run_dir.name}.data"


def as_sequences(X: Any, lengths: Any = None) -> tuple[np.ndarray, np.ndarray | None]:
    """X as (N, T, D) float32 and lengths (N,) or None: an array/tensor (N, T, D) or (N, T) (one feature), or a
    list of (T_i, D) arrays, padded with zeros at the end."""
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    if isinstance(X, list | tuple) and X and np.ndim(X[0]) >= 1 and len({np.shape(x) for x in X}) > 1:
        seqs = [np.asarray(x, dtype=np.float32) for x in X]
        seqs = [s[:, None] if s.ndim == 1 else s for s in seqs]
        if len({s.shape[1:] for s in seqs}) != 1 or any(s.ndim != 2 for s in seqs):
            raise DataError("a list of sequences needs arrays of shape (T_i, D) with the same D")
        n = np.array([len(s) for s in seqs], dtype=np.int64)
        if n.min() < 1:
            raise DataError("every sequence needs at least one step")
        out = np.zeros((len(seqs), int(n.max()), seqs[0].shape[1]), np.float32)
        for i, s in enumerate(seqs):
            out[i, : len(s)] = s
        return out, n if lengths is None else np.asarray(lengths, dtype=np.int64)
    try:
        arr = np.asarray(X, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise DataError(f"X must hold numbers (a float array of shape (N, T, D)): {exc}") from None
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise DataError(f"X must be (N, T, D), (N, T) or a list of (T_i, D) arrays, got shape {arr.shape}")
    if 0 in arr.shape:
        raise DataError(f"X has shape {arr.shape}: it needs at least one sequence, one step and one feature")
    return arr, None if lengths is None else np.asarray(lengths, dtype=np.int64)


def write_npz(path: Path, X: np.ndarray, y: np.ndarray, lengths: np.ndarray | None) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"X": X, "y": y}
    if lengths is not None:
        arrays["lengths"] = lengths
    np.savez(path, **arrays)
    return str(path.resolve())


def missing(values: np.ndarray | list) -> np.ndarray:
    """(N,) bool: which of the N values (a 1-D array or a list) are None or NaN, a missing label or text."""
    if isinstance(values, np.ndarray):
        if values.dtype.kind == "f":
            return np.isnan(values)
        if values.dtype.kind != "O":
            return np.zeros(len(values), bool)
        values = values.tolist()
    return np.array([v is None or (isinstance(v, float) and v != v) for v in values], bool)


def as_texts(texts: Any) -> list[str]:
    if isinstance(texts, str):
        raise DataError("give a list of texts, not one string")
    texts = list(texts)
    gone = np.flatnonzero(missing(texts))
    if len(gone):  # None or NaN: a missing text, not the word "None"
        raise DataError(f"text {gone[0]} is missing ({texts[gone[0]]!r}); drop it or give an empty string")
    return [str(t) for t in texts]


def write_text_csv(path: Path, texts: list[str], y: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for t, label in zip(texts, y.tolist(), strict=True):
            w.writerow([t, str(label)])
    return str(path.resolve())


def has_dates(series: Any) -> bool:
    index = getattr(series, "index", None)
    return index is not None and type(index).__name__ in ("DatetimeIndex", "PeriodIndex")


def write_series_csv(path: Path, series: Any) -> dict:
    import pandas as pd

    frame = series.to_frame() if isinstance(series, pd.Series) else series
    frame = frame.copy()
    if type(frame.index).__name__ == "PeriodIndex":
        frame.index = frame.index.to_timestamp()
    if frame.index.tz is not None:  # the calendar counts local days
        frame.index = frame.index.tz_localize(None)
    if len(frame.columns) == 0:
        raise DataError("the DataFrame has no columns; give the target as its first column")
    if len(frame) and (frame.index != frame.index.normalize()).any():
        raise DataError("the series has times of day (hourly or finer); rnnkit's calendar counts days, weeks, "
                        "months, quarters and years: resample it (e.g. series.resample('D').mean()) or give "
                        "series.to_numpy() to forecast by position")
    cols = [str(c) for c in frame.columns]
    frame.columns = cols
    date_col = next(c for c in ("date", "_date", "__date") if c not in cols)  # a column may be called date
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.rename_axis(date_col).reset_index().to_csv(path, index=False, date_format="%Y-%m-%d")
    return {"source": "csv", "path": str(path.resolve()), "date_col": date_col, "target": cols[0],
            "covariates": cols[1:]}


def relocate(run_dir: Path, old: Path, new: Path) -> None:
    """A run folder copied from ``old`` to ``new``: its config's data paths and run.json's reproduce line name
    the copy."""
    for name in ("config.yaml", "run.json"):
        f = run_dir / name
        if f.is_file():
            f.write_text(f.read_text().replace(str(old.resolve()), str(new.resolve())))


_IN_MEMORY = {"X", "y", "lengths", "texts", "labels", "text", "series"}


def stage_config(raw: dict, run_dir: Path) -> tuple[dict, Path | None]:
    """A config mapping whose ``data`` holds in-memory data -> the same config reading files staged next to
    ``run_dir`` (and the staging folder, which :func:`settle` moves into the run folder after training):

    * ``X`` (N, T, D) array/tensor/list of (T_i, D) arrays, ``y``, optional ``lengths`` (sequence classification);
    * ``texts`` and ``labels`` lists (text classification);
    * ``series`` (forecasting): a 1-D array/list, or a pandas Series/DataFrame with a DatetimeIndex;
      ``values`` may also be a numpy array;
    * ``text`` (language model): a string or a list of documents.
    """
    data = raw.get("data")
    if not isinstance(data, dict):
        return raw, None
    if "values" in data and not isinstance(data["values"], list | type(None)):
        data = {**data, "values": np.asarray(data["values"], dtype=np.float64).ravel().tolist()}
    given = _IN_MEMORY & set(data)
    if not given:
        return {**raw, "data": data}, None
    staging = staging_dir(run_dir)
    rest = {k: v for k, v in data.items() if k not in _IN_MEMORY}
    if "X" in given:
        X, lengths = as_sequences(data["X"], data.get("lengths"))
        y = np.asarray(data.get("y", np.zeros(len(X), np.int64)))
        rest.update({"source": "npz", "path": write_npz(staging / "train.npz", X, y, lengths)})
    elif "texts" in given:
        path = write_text_csv(staging / "train.csv", as_texts(data["texts"]), np.asarray(data.get("labels")))
        rest.update({"source": rest.get("source", "csv"), "path": path})
    elif "series" in given:
        s = data["series"]
        rest.update(write_series_csv(staging / "series.csv", s) if has_dates(s) else
                    {"source": "array", "values": np.asarray(s, dtype=np.float64).ravel().tolist()})
    elif "text" in given:
        docs = [data["text"]] if isinstance(data["text"], str) else list(data["text"])
        staging.mkdir(parents=True, exist_ok=True)
        paths = []
        for i, doc in enumerate(docs):
            (staging / f"doc{i:04d}.txt").write_text(str(doc), encoding="utf-8")
            paths.append(str((staging / f"doc{i:04d}.txt").resolve()))
        rest.update({"source": "text", "files": paths})
    return {**raw, "data": rest}, staging


def settle(run_dir: Path, staging: Path | None) -> None:
    """Move the staged data into ``<run>/data`` and point the run's config there."""
    if staging is None or not staging.exists():
        return
    if not run_dir.exists():
        shutil.rmtree(staging)
        return
    final = run_dir / "data"
    shutil.move(str(staging), str(final))
    relocate(run_dir, staging, final)


__all__ = ["as_sequences", "as_texts", "has_dates", "relocate", "settle", "stage_config", "staging_dir",
           "write_npz", "write_series_csv", "write_text_csv"]
