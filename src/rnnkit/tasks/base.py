"""The contract between the training engine and a task.

The engine (:mod:`rnnkit.training.engine`) runs epochs, optimiser steps, clipping, schedules, checkpoints,
resume, DDP and logging. A task supplies everything problem-specific:

* data: :meth:`Task.setup` loads and splits it; :meth:`Task.state` / :meth:`Task.load_state` round-trip
  what prediction needs without the data (classes, scalers, vocabularies) as JSON;
* the model: :meth:`Task.build_model`;
* batches: :meth:`Task.train_batches` yields one epoch's batches from any position (the default draws a
  seeded permutation per epoch, a pure function of ``(seed, epoch)``, so a resume only needs the
  position). A stateful task (truncated BPTT) overrides it and keeps its carried state in
  :meth:`Task.carry_tensors` so a mid-epoch checkpoint restores it exactly;
* the loss: :meth:`Task.step` returns a *summed* loss and its item count, so the engine can normalise by
  the global count across processes;
* evaluation, prediction and report sections.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from rnnkit.config import Config, DataConfig, ModelConfig


@dataclass
class ExportSpec:
    """What ``rnnkit export`` exports of a trained model: ``module`` called as ``module(*inputs)``, with example
    ``inputs`` (real ones from the run's data where it is at hand), their ``names``, the ``outputs``' names, each
    input's dynamic axes (``{"x": {0: "batch", 1: "time"}}``) and one line on what the inputs are."""

    module: nn.Module
    inputs: tuple[torch.Tensor, ...]
    names: list[str]
    outputs: list[str]
    dynamic: dict[str, dict[int, str]]
    doc: str


@dataclass
class StepResult:
    """One training batch: ``loss_sum`` (scalar tensor with grad) summed over ``count`` items."""

    loss_sum: torch.Tensor
    count: int
    sums: dict[str, float] = field(default_factory=dict)  # additive statistics, e.g. {"correct": 12.0}


def batch_indices(n: int, batch_size: int, seed: int, epoch: int, rank: int = 0, world: int = 1) -> list[torch.Tensor]:
    """One epoch's batches of indices into ``n`` items: a permutation seeded by ``(seed, epoch)``.

    With ``world`` processes each global batch is split ``rank::world`` (a batch smaller than ``world`` is
    dropped so every process steps together).
    """
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(n, generator=g)
    batches = [perm[i : i + batch_size] for i in range(0, n, batch_size)]
    if world > 1:
        batches = [b[rank::world] for b in batches if len(b) >= world]
    return batches


class Task:
    name: ClassVar[str] = ""
    model_config: ClassVar[type] = ModelConfig
    data_config: ClassVar[type] = DataConfig
    metrics: ClassVar[tuple[str, ...]] = ("loss",)  # evaluation metrics; monitor may be val_<metric>
    running_metric: ClassVar[str | None] = None  # key of StepResult.sums shown as sums[key] / count

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.splits: dict[str, Any] = {}  # "train" / "val" / "test" -> task-specific data

    @classmethod
    def check_config(cls, cfg: Config) -> None:
        """Cross-key checks beyond the dataclass types; raise ConfigError."""

    # ---- data ------------------------------------------------------------------------------------------
    def setup(self) -> None:
        """Load and split the data into ``self.splits`` and fit scalers/vocabularies on the train split."""
        raise NotImplementedError

    def state(self) -> dict:
        """JSON-able state needed to rebuild the model and predict without the training data."""
        return {}

    def load_state(self, state: dict) -> None:
        pass

    def summary(self) -> dict:
        """Data summary for ``run.json`` and the report (sizes, shapes, classes)."""
        return {}

    def as_input(self, data: Any, where: str = "input", labels: bool = True) -> Any:
        """A user file path, array or data object -> what :meth:`evaluate` / :meth:`predict` take
        (``labels=False``: for prediction, labels may be absent)."""
        raise NotImplementedError

    # ---- model and training ----------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        raise NotImplementedError

    def num_train_items(self) -> int:
        return len(self.splits["train"])

    def train_batches(self, epoch: int, start: int, rank: int, world: int) -> Iterator[Any]:
        """Batches of one epoch from batch number ``start`` on (resume), this process's shard."""
        t = self.cfg.training
        for idx in batch_indices(self.num_train_items(), t.batch_size, t.seed, epoch, rank, world)[start:]:
            yield self.make_batch(self.splits["train"], idx)

    def num_train_batches(self, world: int = 1) -> int:
        t = self.cfg.training
        n = self.num_train_items()
        full, rest = divmod(n, t.batch_size)
        return full + (1 if rest and rest >= world else 0)

    def make_batch(self, data: Any, idx: torch.Tensor) -> Any:
        raise NotImplementedError

    def step(self, model: nn.Module, batch: Any, device: torch.device) -> StepResult:
        raise NotImplementedError

    def carry_tensors(self) -> dict[str, torch.Tensor]:
        """Tensors a stateful task carries between batches (saved in every checkpoint)."""
        return {}

    def load_carry(self, tensors: dict[str, torch.Tensor]) -> None:
        pass

    # ---- evaluation, prediction, report ----------------------------------------------------------------
    def evaluate(self, model: nn.Module, data: Any, device: torch.device) -> dict:
        """Metrics on ``data`` (a split): ``{"loss": ..., <metric>: ..., ...}``, JSON-able."""
        raise NotImplementedError

    def predict(self, model: nn.Module, data: Any, device: torch.device) -> list[dict]:
        raise NotImplementedError

    def finalize_metrics(self, metrics: dict) -> dict:
        """The final ``metrics.json`` mapping before it is written (e.g. lift out baselines); default: as is."""
        return metrics

    def export_spec(self, model: nn.Module, data: Any | None) -> ExportSpec:
        """What to export of ``model`` (see :class:`ExportSpec`); ``data`` is a split of the run's data, or None
        when the data is not at hand (then the example inputs are made up)."""
        raise ValueError(f"task {self.name} runs cannot be exported yet")

    def report_sections(self, run_dir: Path, metrics: dict) -> list:
        """Extra :class:`rnnkit.report.Section` objects for the HTML report."""
        return []
