"""Sequence classification: one label per sequence, or one per step (``y`` of shape (N, T)).

Model: rnnkit RNN/LSTM/GRU -> pooling over time (last state / mean / max, honouring lengths) -> dropout
-> Linear head. Per-step labelling skips the pooling and applies the head at every step. Loss:
cross-entropy (padded steps masked out); metrics: accuracy, macro-F1, confusion matrix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rnnkit.config import Config, ConfigError, DataConfig, ModelConfig
from rnnkit.layers import Dropout
from rnnkit.tasks import register_task
from rnnkit.tasks.base import ExportSpec, StepResult, Task
from rnnkit.tasks.common import classification_metrics, confusion_matrix, make_rnn, write_predictions


@dataclass
class ClassifierModelConfig(ModelConfig):
    pooling: Literal["last", "mean", "max", "meanmax"] = "last"  # how a sequence's outputs become one vector
    head_dropout: float = 0.0  # dropout between the pooled features and the Linear head

    def check(self) -> None:
        super().check()
        if not 0.0 <= self.head_dropout < 1.0:
            raise ConfigError(f"model.head_dropout must be in [0, 1), got {self.head_dropout}")


class SequenceClassifier(nn.Module):
    """x (B, T, D), lengths (B,) or None -> logits (B, K), or (B, T, K) when ``per_step``."""

    def __init__(self, m: ClassifierModelConfig, input_size: int, num_classes: int, per_step: bool) -> None:
        super().__init__()
        self.pooling, self.per_step = m.pooling, per_step
        self.directions = 2 if m.bidirectional else 1
        self.rnn = make_rnn(m, input_size)
        self.drop = Dropout(m.head_dropout)
        width = self.directions * m.hidden_size
        self.head = nn.Linear(width * (2 if m.pooling == "meanmax" else 1), num_classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        out, state = self.rnn(x, lengths=lengths)  # out (B, T, dirs*H), zeros at padded steps
        if self.per_step:
            return self.head(self.drop(out))
        if self.pooling == "last":
            h = state[0] if isinstance(state, tuple) else state  # (layers*dirs, B, H)
            feats = torch.cat(list(h[-self.directions :]), dim=-1)  # (B, dirs*H) final step of each sequence
        else:
            steps = torch.arange(x.shape[1], device=x.device)
            n = lengths.to(x.device) if lengths is not None else torch.full((x.shape[0],), x.shape[1], device=x.device)
            valid = (steps[None, :] < n[:, None])[:, :, None]  # (B, T, 1)
            mean = out.sum(1) / n[:, None].to(out.dtype)
            top = out.masked_fill(~valid, float("-inf")).amax(1) if self.pooling != "mean" else None
            feats = mean if top is None else top if self.pooling == "max" else torch.cat([mean, top], -1)
        return self.head(self.drop(feats))


@dataclass(frozen=True)
class Split:
    """Prepared tensors on the CPU: X (N, T, D) float32, y (N,) or (N, T) int64, lengths (N,) int64 | None."""

    X: torch.Tensor
    y: torch.Tensor
    lengths: torch.Tensor | None

    def __len__(self) -> int:
        return len(self.X)


def per_sequence(X: np.ndarray, lengths: np.ndarray | None) -> np.ndarray:
    """Each sequence's features z-normalised over its own valid steps (X (N, T, D) -> float32, padding kept 0):
    the standard for series classification, where the offset and scale of a series are not what tells its class.
    A constant feature becomes 0."""
    N, T, _ = X.shape
    n = np.full(N, T) if lengths is None else np.asarray(lengths)
    valid = (np.arange(T)[None, :] < n[:, None])[:, :, None]
    x = X.astype(np.float64)
    mean = np.where(valid, x, 0.0).sum(1, keepdims=True) / n[:, None, None]
    std = np.sqrt(np.where(valid, (x - mean) ** 2, 0.0).sum(1, keepdims=True) / n[:, None, None])
    return np.where(valid, (x - mean) / np.maximum(std, 1e-8), 0.0).astype(np.float32)


@register_task("sequence_classification")
class SequenceClassification(Task):
    model_config = ClassifierModelConfig
    data_config = DataConfig
    metrics = ("loss", "accuracy", "macro_f1")
    running_metric = "accuracy"

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        self.classes: list[str] = []
        self.input_size = 0
        self.num_steps = 0
        self.per_step = False
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None

    # ---- data ------------------------------------------------------------------------------------------
    def _load(self):
        """(train, test or None) of the configured source (:mod:`rnnkit.data.sources`)."""
        from rnnkit.data.sources import load_part

        return load_part("sequences", self.cfg.data, "train"), load_part("sequences", self.cfg.data, "test")

    def _load_val(self):
        """The source's own validation part (``data.val_path``), or None."""
        from rnnkit.data.sources import load_part

        return load_part("sequences", self.cfg.data, "val")

    def setup(self) -> None:
        from rnnkit.data import DataError

        t = self.cfg.training
        d, seed = self.cfg.data, t.seed if t.split_seed is None else t.split_seed
        train, test = self._load()
        if d.limit is not None:
            train = train.subset(slice(0, d.limit))
        if test is None and d.test_fraction > 0:
            train, test = train.split(d.test_fraction, seed)
        val = self._load_val()
        if val is None and d.val_fraction > 0:
            train, val = train.split(d.val_fraction, seed + 1)
        parts = {"train": train, "val": val, "test": test}
        for name, part in parts.items():
            if part is not None and len(part) == 0:
                raise DataError(f"the {name} split is empty ({len(train)} training sequences after the splits); give "
                                "more data, raise data.limit, or set data.val_fraction / test_fraction to 0")
        k = max(p.num_classes for p in parts.values() if p is not None)
        n = sum(len(p) for p in parts.values() if p is not None)
        if k > max(10_000, 2 * n):
            raise DataError(f"the labels go up to {k - 1} but there are only {n} sequences: a class per label value "
                            f"would be {k} classes; relabel y as 0..K-1")
        self.classes = train.classes or [str(i) for i in range(k)]
        self.input_size, self.num_steps, self.per_step = train.num_features, train.num_steps, train.per_step
        if k < 2:
            raise DataError("the training labels hold a single class; classification needs at least 2")
        big = float(np.abs(train.X).max()) if train.X.size else 0.0
        if big > 1e15 and not d.standardize:
            raise DataError(f"the features reach {big:.3g}, which overflows float32 arithmetic in the network (NaN "
                            "metrics); scale them, or set data.standardize: true")
        if d.standardize:
            tx = per_sequence(train.X, train.lengths) if d.normalize == "per_sequence" else train.X
            x = tx if train.lengths is None else tx[np.arange(train.num_steps) < train.lengths[:, None]]
            x = x.reshape(-1, train.num_features).astype(np.float64)
            self.mean, self.std = x.mean(0), np.maximum(x.std(0), 1e-8)
        self.splits = {name: self.prepare(p, name) for name, p in parts.items() if p is not None}

    def prepare(self, data, where: str = "data", labels: bool = True) -> Split:
        """SequenceData -> Split (standardised with the training statistics), checking the feature count."""
        from rnnkit.data import DataError

        if data.num_features != self.input_size:
            raise DataError(f"{where} has {data.num_features} features per step but the model was trained on "
                            f"{self.input_size}; give sequences shaped (N, T, {self.input_size})")
        if labels and data.num_classes > len(self.classes) and len(data):
            raise DataError(f"{where} has label {data.num_classes - 1} but the model knows {len(self.classes)} "
                            "classes; relabel the data")
        X = data.X
        if self.cfg.data.normalize == "per_sequence":
            X = per_sequence(X, data.lengths)
        if self.mean is not None:
            X = ((X - self.mean) / self.std).astype(np.float32)
        lengths = None if data.lengths is None else torch.from_numpy(data.lengths)
        if labels and data.per_step != self.per_step:
            want = "one label per step, y (N, T)" if self.per_step else "one label per sequence, y (N,)"
            raise DataError(f"{where}: the model was trained with {want}; give labels of that shape")
        shape = X.shape[:2] if self.per_step else X.shape[:1]
        y = torch.from_numpy(data.y) if labels else torch.zeros(shape, dtype=torch.int64)
        return Split(torch.from_numpy(np.ascontiguousarray(X)), y, lengths)

    def as_input(self, data, where: str = "input", labels: bool = True) -> Split:
        """A .npz/.csv path, a SequenceData, or an array X (N, T, D) -> Split. With ``labels=False``
        (prediction) an .npz needs no ``y`` and labels are not checked."""
        from rnnkit.data.sequences import SequenceData

        if isinstance(data, Split):
            return data
        if isinstance(data, str | Path):
            data, where = self._read(Path(data), labels), str(data)
        elif not isinstance(data, SequenceData):
            x = np.asarray(data)
            data = SequenceData.from_arrays(x, np.zeros(len(x), np.int64), where=where)
        return self.prepare(data, where, labels)

    def _read(self, path: Path, labels: bool):
        from rnnkit.data import DataError
        from rnnkit.data.sequences import load_csv, load_npz

        if not path.is_file():
            raise DataError(f"file not found: {path}; check the path")
        if path.suffix == ".npz":
            return load_npz(path, labels=labels)
        if path.suffix == ".csv":
            return load_csv(path, **self.cfg.data.options)
        raise DataError(f"{path}: unsupported input type '{path.suffix}'; give a .npz or .csv file")

    def state(self) -> dict:
        return {"classes": self.classes, "input_size": self.input_size, "num_steps": self.num_steps,
                "per_step": self.per_step, "mean": None if self.mean is None else self.mean.tolist(),
                "std": None if self.std is None else self.std.tolist()}

    def load_state(self, state: dict) -> None:
        self.classes, self.input_size = state["classes"], state["input_size"]
        self.num_steps, self.per_step = state["num_steps"], state["per_step"]
        self.mean = None if state["mean"] is None else np.asarray(state["mean"])
        self.std = None if state["std"] is None else np.asarray(state["std"])

    def summary(self) -> dict:
        sizes = {name: len(s) for name, s in self.splits.items()}
        return {"splits": sizes, "num_steps": self.num_steps, "num_features": self.input_size,
                "classes": self.classes, "per_step": self.per_step,
                "variable_lengths": any(s.lengths is not None for s in self.splits.values())}

    # ---- model and training ----------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        return SequenceClassifier(self.cfg.model, self.input_size, len(self.classes), self.per_step)

    def make_batch(self, data: Split, idx: torch.Tensor) -> Split:
        X, y = data.X[idx], data.y[idx]
        lengths = None if data.lengths is None else data.lengths[idx]
        if lengths is not None:  # trim padding beyond this batch's longest sequence
            t = int(lengths.max())
            X, y = X[:, :t], (y[:, :t] if y.dim() == 2 else y)
        return Split(X, y, lengths)

    def export_spec(self, model: nn.Module, data: Split | None) -> ExportSpec:
        if data is not None and len(data):
            idx = torch.arange(min(8, len(data)))
            b = self.make_batch(data, idx)
            x = b.X.float()
            lengths = b.lengths if b.lengths is not None else torch.full((len(idx),), x.shape[1])
        else:
            x, lengths = torch.randn(4, 12, self.input_size), torch.tensor([12, 5, 9, 1])
        out = "logits (batch, time, classes)" if self.per_step else "logits (batch, classes)"
        return ExportSpec(model, (x, lengths.to(torch.int64)), ["x", "lengths"], ["logits"],
                          {"x": {0: "batch", 1: "time"}, "lengths": {0: "batch"}},
                          f"x (batch, time, {self.input_size}) float32 features as the run's data feeds them "
                          f"(standardised when data.standardize), lengths (batch,) int64 -> {out}; classes in "
                          f"order {list(self.classes)}")

    def _forward(self, model: nn.Module, batch: Split, device: torch.device):
        """-> logits (n, K) and labels (n,) of the valid items (sequences, or steps when per-step)."""
        logits = model(batch.X.to(device, non_blocking=True), batch.lengths)
        y = batch.y.to(device, non_blocking=True)
        if self.per_step:
            t = logits.shape[1]
            n = batch.lengths if batch.lengths is not None else torch.full((len(y),), t)
            valid = (torch.arange(t)[None, :] < n[:, None]).to(device)
            return logits[valid], y[valid]
        return logits, y

    def step(self, model: nn.Module, batch: Split, device: torch.device) -> StepResult:
        logits, y = self._forward(model, batch, device)
        loss = F.cross_entropy(logits.float(), y, reduction="sum")
        correct = (logits.argmax(-1) == y).sum().item()
        return StepResult(loss, len(y), {"accuracy": float(correct)})

    # ---- evaluation and prediction ---------------------------------------------------------------------
    @torch.no_grad()
    def _outputs(self, model: nn.Module, data: Split, device: torch.device):
        model.eval()
        bs, losses, preds, probs, ys = self.cfg.training.eval_batch_size, 0.0, [], [], []
        for i in range(0, len(data), bs):
            batch = self.make_batch(data, torch.arange(i, min(i + bs, len(data))))
            logits, y = self._forward(model, batch, device)
            logits = logits.float()
            losses += F.cross_entropy(logits, y, reduction="sum").item()
            p = logits.softmax(-1)
            probs.append(p.cpu())
            preds.append(p.argmax(-1).cpu())
            ys.append(y.cpu())
        cat = (lambda xs: torch.cat(xs).numpy()) if probs else (lambda xs: np.zeros(0))
        return losses, cat(preds), cat(probs), cat(ys)

    def evaluate(self, model: nn.Module, data: Split, device: torch.device) -> dict:
        loss, pred, _, y = self._outputs(model, data, device)
        cm = confusion_matrix(y.astype(np.int64), pred.astype(np.int64), len(self.classes))
        return {"loss": loss / max(len(y), 1), **classification_metrics(cm), "count": int(len(y)),
                "confusion_matrix": cm.tolist()}

    def predict(self, model: nn.Module, data: Split, device: torch.device) -> list[dict]:
        """One record per sequence (or per valid step): index, [step], predicted class, probabilities."""
        _, pred, probs, _ = self._outputs(model, data, device)
        if self.per_step:
            t = data.X.shape[1]
            n = data.lengths.tolist() if data.lengths is not None else [t] * len(data)
            keys = [(i, s) for i in range(len(data)) for s in range(n[i])]
        else:
            keys = [(i, None) for i in range(len(data))]
        out = []
        for (i, s), c, p in zip(keys, pred.tolist(), probs.tolist(), strict=True):
            rec = {"index": i} if s is None else {"index": i, "step": s}
            rec["predicted"] = self.classes[c]
            rec.update({f"p_{name}": round(v, 6) for name, v in zip(self.classes, p, strict=True)})
            out.append(rec)
        return out

    def combine(self, outputs: list) -> torch.Tensor:  # noqa: D102 - see Objective.combine
        from rnnkit.training.ensemble import mean_probabilities

        return mean_probabilities(outputs)

    def finalize_metrics(self, metrics: dict) -> dict:
        """Add the baselines (majority, logistic regression on summary features, 1-NN), fitted on the training
        split as the model sees it and scored on the test split, and judge the model against them."""
        from rnnkit.tasks import baselines

        train, test = self.splits.get("train"), self.splits.get("test")
        if not self.cfg.training.baselines or train is None or test is None or "test" not in metrics:
            return metrics
        if self.per_step:
            metrics["baselines_skipped"] = {"all": "per-step labels (a tagger): no sequence-level baselines"}
            return metrics

        def arrays(s: Split) -> tuple:
            return s.X.numpy(), s.y.numpy(), None if s.lengths is None else s.lengths.numpy()

        base, skip = baselines.sequence_baselines(arrays(train), arrays(test), self.cfg.training.seed)
        metrics["baselines"] = base
        if skip:
            metrics["baselines_skipped"] = skip
        return baselines.judge(metrics, "accuracy", True, "accuracy")

    def report_sections(self, run_dir: Path, metrics: dict, model: nn.Module | None = None) -> list:
        from rnnkit.report import confusion_section
        from rnnkit.tasks import baselines

        split = "test" if "test" in metrics else "val"
        cm = metrics.get(split, {}).get("confusion_matrix")
        out = [baselines.section(metrics, "accuracy", True, "accuracy")]
        if cm:
            out.append(confusion_section(np.asarray(cm), self.classes, split))
        return [s for s in out if s is not None]


__all__ = ["ClassifierModelConfig", "SequenceClassification", "SequenceClassifier", "classification_metrics",
           "confusion_matrix", "make_rnn", "write_predictions"]
