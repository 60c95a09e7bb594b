"""Helpers several tasks share: the recurrent stack a model config describes, classification metrics, and
prediction files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from torch import nn

from rnnkit.config import ModelConfig, layer_options


def make_rnn(m: ModelConfig, input_size: int) -> nn.Module:
    """The rnnkit recurrent layer described by ``m`` (batch-first), built through the cell registry."""
    from rnnkit import layers

    return layers.make_layer(m.cell, input_size, m.hidden_size, m.num_layers, **layer_options(m))


def confusion_matrix(y: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    """(K, K) counts: row = true class, column = predicted class."""
    return np.bincount(y * k + pred, minlength=k * k).reshape(k, k)


def classification_metrics(cm: np.ndarray) -> dict:
    """Accuracy and macro-F1 (over classes present in the labels or the predictions) of a confusion matrix."""
    tp = np.diag(cm).astype(np.float64)
    support, predicted = cm.sum(1), cm.sum(0)
    present = (support + predicted) > 0
    f1 = np.divide(2 * tp, support + predicted, out=np.zeros_like(tp), where=present)
    macro_f1 = float(f1[present].mean()) if present.any() else 0.0
    return {"accuracy": float(tp.sum() / max(cm.sum(), 1)), "macro_f1": macro_f1}


def write_predictions(records: list[dict], path: Path) -> None:
    """Write ``records`` as CSV (by suffix ``.csv``) or JSON."""
    import csv

    if path.suffix == ".csv":
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(records[0]) if records else ["index", "predicted"])
            w.writeheader()
            w.writerows(records)
    else:
        path.write_text(json.dumps(records, indent=1) + "\n")


__all__ = ["classification_metrics", "confusion_matrix", "make_rnn", "write_predictions"]
