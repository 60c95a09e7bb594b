"""Long-range memory benchmarks, generated on the fly: the adding problem and the copy-memory task.

* ``task: adding`` (Hochreiter & Schmidhuber 1997; Le et al. 2015). Each step holds two numbers: a value
  drawn from U(0, 1) and a marker. Exactly two steps are marked, one in the first half of the sequence and
  one in the second; the target is the sum of the two marked values. Always predicting 1 scores
  MSE = Var(u1 + u2) = 1/6 ~ 0.167, so anything clearly below that has learned to remember.
  Model: recurrent stack -> its output at the last step -> Linear -> one number; loss MSE; metric ``mse``.
* ``task: copy`` (Arjovsky et al. 2016). ``copy_length`` symbols from {1..num_symbols}, then
  ``num_steps - 1`` blanks, a delimiter, and ``copy_length`` more blanks: after the delimiter the model
  must output the symbols it saw ``num_steps + copy_length`` steps earlier (blank before that). Inputs are
  one-hot; loss cross-entropy over every step (the memoryless baseline is
  ``copy_length * log(num_symbols) / (num_steps + 2 * copy_length)``); metric ``accuracy`` on the recalled
  symbols.

``data.num_steps`` is T. Every split is drawn from its own generator seeded by ``(data.seed, split)``, so
changing the training size or the training seed never changes the test set.

Model extras (``model:``): ``init: identity`` is the IRNN of Le et al. 2015 (use with ``cell: rnn``,
``activation: relu``): W_hh = I, biases 0, W_ih ~ N(0, 0.001^2); ``init: orthogonal`` makes every
recurrent gate block orthogonal; ``forget_bias`` adds to the forget gate's bias (LSTM, minLSTM; other cells have no
forget gate, and a config switched to one of them with ``--set model.cell=...`` ignores it with a warning).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rnnkit.config import ConfigError, ModelConfig
from rnnkit.tasks import register_task
from rnnkit.tasks.base import ExportSpec, StepResult, Task
from rnnkit.tasks.common import make_rnn

SPLITS = ("train", "val", "test")
FORGET_GATE = {"lstm": 1, "minlstm": 0}  # cells with a forget gate: its block in the input projection
_WARNED: set[str] = set()


@dataclass
class LongRangeModelConfig(ModelConfig):
    init: Literal["default", "identity", "orthogonal"] = "default"  # recurrent weight initialisation
    forget_bias: float | None = None  # LSTM, minLSTM: added to the forget gate's input bias

    def check(self) -> None:
        super().check()
        if self.init == "identity" and self.cell != "rnn":
            raise ConfigError("model.init: identity (IRNN) needs cell: rnn; use init: orthogonal for lstm/gru")
        if self.forget_bias is not None and self.cell not in FORGET_GATE and self.cell not in _WARNED:
            _WARNED.add(self.cell)  # once per process (a config is checked more than once)
            print(f"rnnkit: warning: model.forget_bias applies to cells with a forget gate ({', '.join(FORGET_GATE)}); "
                  f"ignored for cell: {self.cell}", file=sys.stderr)


@dataclass
class LongRangeDataConfig:
    """Generated data: sizes, T and the data seed (not a file: there is nothing to download)."""

    num_steps: int = 100  # T: adding: sequence length; copy: the delay between the symbols and the delimiter
    train_size: int = 10000
    val_size: int = 1000
    test_size: int = 1000
    seed: int = 1234  # data seed, independent of training.seed
    num_symbols: int = 8  # copy only: alphabet size
    copy_length: int = 10  # copy only: symbols to remember

    @property
    def val_fraction(self) -> float:  # read by the config's monitor check
        return self.val_size / max(self.train_size + self.val_size, 1)

    def check(self) -> None:
        for key in ("num_steps", "train_size", "num_symbols", "copy_length"):
            if getattr(self, key) < 1:
                raise ConfigError(f"data.{key} must be >= 1, got {getattr(self, key)}")
        for key in ("val_size", "test_size"):
            if getattr(self, key) < 0:
                raise ConfigError(f"data.{key} must be >= 0, got {getattr(self, key)}")


# ---- data generation -----------------------------------------------------------------------------------


def adding_data(n: int, steps: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """-> X (n, T, 2) float32 [value, marker], y (n,) float32: the sum of the two marked values."""
    if steps < 2:
        raise ConfigError(f"data.num_steps must be >= 2 for the adding problem, got {steps}")
    values = rng.uniform(0.0, 1.0, (n, steps))
    half = steps // 2
    first, second = rng.integers(0, half, n), rng.integers(half, steps, n)
    marks = np.zeros((n, steps))
    rows = np.arange(n)
    marks[rows, first] = marks[rows, second] = 1.0
    y = values[rows, first] + values[rows, second]
    return np.stack([values, marks], -1).astype(np.float32), y.astype(np.float32)


def copy_data(n: int, delay: int, symbols: int, length: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """-> tokens (n, delay + 2*length) int64 (0 blank, 1..symbols, symbols+1 delimiter), targets (same shape):
    blank everywhere except the last ``length`` steps, which repeat the first ``length`` tokens."""
    seq = rng.integers(1, symbols + 1, (n, length))
    x = np.zeros((n, delay + 2 * length), np.int64)
    x[:, :length] = seq
    x[:, delay + length - 1] = symbols + 1
    y = np.zeros_like(x)
    y[:, -length:] = seq
    return x, y


# ---- model ---------------------------------------------------------------------------------------------


def init_recurrent(rnn: nn.Module, m: LongRangeModelConfig) -> None:
    """Apply ``m.init`` and ``m.forget_bias`` to an rnnkit layer's weights (in place)."""
    H = m.hidden_size
    with torch.no_grad():
        for name, p in rnn.named_parameters():
            if m.init == "identity":
                if name.startswith("weight_hh"):
                    p.copy_(torch.eye(H))
                elif name.startswith("weight_ih"):
                    p.normal_(0.0, 0.001)
                elif name.startswith("bias"):
                    p.zero_()
            elif m.init == "orthogonal" and name.startswith("weight_hh"):
                for block in p.split(H, 0):
                    nn.init.orthogonal_(block)
            if m.forget_bias is not None and name.startswith("bias_ih") and m.cell in FORGET_GATE:
                k = FORGET_GATE[m.cell]  # LSTM gates i, f, g, o; minLSTM f, i, h̃
                p[k * H : (k + 1) * H] += m.forget_bias


class LongRangeNet(nn.Module):
    """x (B, T, D) -> (B,) one number from the last step (``per_step=False``) or (B, T, K) logits per step."""

    def __init__(self, m: LongRangeModelConfig, input_size: int, outputs: int, per_step: bool) -> None:
        super().__init__()
        self.per_step = per_step
        self.rnn = make_rnn(m, input_size)
        init_recurrent(self.rnn, m)
        self.head = nn.Linear((2 if m.bidirectional else 1) * m.hidden_size, outputs)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        out, _ = self.rnn(x, lengths=lengths)  # (B, T, dirs*H)
        return self.head(out) if self.per_step else self.head(out[:, -1]).squeeze(-1)


# ---- tasks ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """X (N, T, 2) float32 (adding) or (N, T) int64 tokens (copy); y (N,) float32 or (N, T) int64."""

    X: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.X)


class LongRange(Task):
    """Shared by both problems: generated splits, batching, no state beyond the config."""

    model_config = LongRangeModelConfig
    data_config = LongRangeDataConfig

    def generate(self, n: int, rng: np.random.Generator) -> Split:
        raise NotImplementedError

    def setup(self) -> None:
        d = self.cfg.data
        sizes = {"train": d.train_size, "val": d.val_size, "test": d.test_size}
        self.splits = {s: self.generate(n, np.random.default_rng([d.seed, i])) for i, (s, n) in
                       enumerate(sizes.items()) if n > 0}

    def summary(self) -> dict:
        return {"splits": {s: len(v) for s, v in self.splits.items()}, "num_steps": self.cfg.data.num_steps,
                "sequence_length": int(next(iter(self.splits.values())).X.shape[1]), "data_seed": self.cfg.data.seed}

    def make_batch(self, data: Split, idx: torch.Tensor) -> Split:
        return Split(data.X[idx], data.y[idx])

    def as_input(self, data, where: str = "input", labels: bool = True) -> Split:
        """A Split, an ``.npz`` with ``X`` (and ``y``), or an array X -> Split (``y`` zeros when absent)."""
        from rnnkit.data import DataError

        if isinstance(data, Split):
            return data
        y = None
        if isinstance(data, str | Path):
            if not Path(data).is_file():
                raise DataError(f"file not found: {data}; check the path")
            with np.load(data, allow_pickle=False) as z:
                if "X" not in z.files:
                    raise DataError(f"{data} has no array 'X'; save the inputs as X")
                data, y = z["X"], (z["y"] if "y" in z.files else None)
        x = self.check_input(np.asarray(data), where)
        if y is None:
            if labels:
                raise DataError(f"{where} has no labels y; evaluation needs them")
            y = np.zeros(x.shape[:1] if self.name == "adding" else x.shape, np.float32 if self.name == "adding"
                         else np.int64)
        return Split(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.asarray(y)))

    def check_input(self, x: np.ndarray, where: str) -> np.ndarray:
        raise NotImplementedError

    def export_spec(self, model: nn.Module, data: Split | None) -> ExportSpec:
        if data is not None and len(data):
            x = data.X[:8]
        else:
            x = self.generate(4, np.random.default_rng(0)).X
        if x.dtype == torch.int64:  # copy: the model reads one-hot tokens
            x = F.one_hot(x, self.cfg.data.num_symbols + 2).float()
        return ExportSpec(model, (x.float(),), ["x"], ["output"], {"x": {0: "batch", 1: "time"}},
                          f"x (batch, time, {x.shape[-1]}) float32 as the task feeds the model -> its output")

    def build_model(self) -> nn.Module:
        raise NotImplementedError


@register_task("adding")
class Adding(LongRange):
    metrics = ("loss", "mse")

    def generate(self, n: int, rng: np.random.Generator) -> Split:
        X, y = adding_data(n, self.cfg.data.num_steps, rng)
        return Split(torch.from_numpy(X), torch.from_numpy(y))

    def check_input(self, x: np.ndarray, where: str) -> np.ndarray:
        from rnnkit.data import DataError

        if x.ndim != 3 or x.shape[2] != 2:
            raise DataError(f"{where}: expected X of shape (N, T, 2) [value, marker], got {x.shape}")
        return x.astype(np.float32)

    def build_model(self) -> nn.Module:
        return LongRangeNet(self.cfg.model, 2, 1, per_step=False)

    def step(self, model: nn.Module, batch: Split, device: torch.device) -> StepResult:
        pred = model(batch.X.to(device, non_blocking=True))
        loss = F.mse_loss(pred.float(), batch.y.to(device), reduction="sum")
        return StepResult(loss, len(batch.y))

    @torch.no_grad()
    def _predict(self, model: nn.Module, data: Split, device: torch.device) -> torch.Tensor:
        model.eval()
        bs = self.cfg.training.eval_batch_size
        parts = [model(data.X[i : i + bs].to(device)).float().cpu() for i in range(0, len(data), bs)]
        return torch.cat(parts) if parts else torch.zeros(0)

    def evaluate(self, model: nn.Module, data: Split, device: torch.device) -> dict:
        pred = self._predict(model, data, device)
        mse = float(((pred - data.y) ** 2).mean()) if len(data) else float("nan")
        return {"loss": mse, "mse": mse, "baseline_mse": float(((1.0 - data.y) ** 2).mean()) if len(data) else
                float("nan"), "count": len(data)}

    def predict(self, model: nn.Module, data: Split, device: torch.device) -> list[dict]:
        pred = self._predict(model, data, device).tolist()
        return [{"index": i, "predicted": round(v, 6)} for i, v in enumerate(pred)]


@register_task("copy")
class Copy(LongRange):
    metrics = ("loss", "accuracy")

    @property
    def num_classes(self) -> int:
        return self.cfg.data.num_symbols + 1  # blank + symbols (the delimiter is never a target)

    def generate(self, n: int, rng: np.random.Generator) -> Split:
        d = self.cfg.data
        x, y = copy_data(n, d.num_steps, d.num_symbols, d.copy_length, rng)
        return Split(torch.from_numpy(x), torch.from_numpy(y))

    def check_input(self, x: np.ndarray, where: str) -> np.ndarray:
        from rnnkit.data import DataError

        top = self.cfg.data.num_symbols + 1
        if x.ndim != 2 or not np.issubdtype(x.dtype, np.integer) or (x.size and (x.min() < 0 or x.max() > top)):
            raise DataError(f"{where}: expected integer tokens of shape (N, T) in [0, {top}], got {x.dtype} {x.shape}")
        return x.astype(np.int64)

    def baseline_loss(self) -> float:
        d = self.cfg.data
        return d.copy_length * math.log(d.num_symbols) / (d.num_steps + 2 * d.copy_length)

    def summary(self) -> dict:
        return {**super().summary(), "baseline_loss": self.baseline_loss()}

    def build_model(self) -> nn.Module:
        return LongRangeNet(self.cfg.model, self.cfg.data.num_symbols + 2, self.num_classes, per_step=True)

    def _logits(self, model: nn.Module, tokens: torch.Tensor, device: torch.device) -> torch.Tensor:
        x = F.one_hot(tokens.to(device), self.cfg.data.num_symbols + 2).float()  # (B, T, S+2)
        return model(x).float()  # (B, T, S+1)

    def step(self, model: nn.Module, batch: Split, device: torch.device) -> StepResult:
        logits = self._logits(model, batch.X, device)
        loss = F.cross_entropy(logits.flatten(0, 1), batch.y.to(device).flatten(), reduction="sum")
        return StepResult(loss, batch.y.numel())

    @torch.no_grad()
    def _outputs(self, model: nn.Module, data: Split, device: torch.device) -> tuple[float, torch.Tensor]:
        model.eval()
        bs, loss, preds = self.cfg.training.eval_batch_size, 0.0, []
        for i in range(0, len(data), bs):
            logits = self._logits(model, data.X[i : i + bs], device)
            loss += F.cross_entropy(logits.flatten(0, 1), data.y[i : i + bs].to(device).flatten(), reduction="sum")
            preds.append(logits.argmax(-1).cpu())
        return float(loss), (torch.cat(preds) if preds else torch.zeros(0, data.X.shape[1], dtype=torch.int64))

    def evaluate(self, model: nn.Module, data: Split, device: torch.device) -> dict:
        loss, pred = self._outputs(model, data, device)
        k = self.cfg.data.copy_length
        acc = float((pred[:, -k:] == data.y[:, -k:]).float().mean()) if len(data) else float("nan")
        return {"loss": loss / max(data.y.numel(), 1), "accuracy": acc, "baseline_loss": self.baseline_loss(),
                "count": len(data)}

    def predict(self, model: nn.Module, data: Split, device: torch.device) -> list[dict]:
        _, pred = self._outputs(model, data, device)
        k = self.cfg.data.copy_length
        return [{"index": i, "predicted": " ".join(map(str, p))} for i, p in enumerate(pred[:, -k:].tolist())]


def steps_to_solve(run_dir: str | Path, metric: str = "val_mse", threshold: float = 0.01) -> int | None:
    """Optimiser steps until ``metric`` (a metrics.csv column, checked once per epoch) first went below
    ``threshold`` (above it for accuracy), or None if it never did."""
    import json

    from rnnkit.report import read_metrics_csv

    run_dir = Path(run_dir)
    per_epoch = json.loads((run_dir / "run.json").read_text())["steps_per_epoch"]
    for row in read_metrics_csv(run_dir / "metrics.csv"):
        v = float(row[metric])
        if (v > threshold) if "accuracy" in metric else (v < threshold):
            return int(row["epoch"]) * per_epoch
    return None


__all__ = ["Adding", "Copy", "LongRangeDataConfig", "LongRangeModelConfig", "LongRangeNet", "adding_data",
           "copy_data", "init_recurrent", "steps_to_solve"]
