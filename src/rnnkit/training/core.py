"""The two sides the trainer drives: a :class:`Data` and an :class:`Objective`.

    metrics = Trainer(training_config).fit(objective, data, run_dir=None)

* **Data** — the sources, the splits, what is fitted on the training part (scalers, vocabularies; saved as JSON
  with :meth:`Data.state` so a run predicts without its data), the batches of an epoch from any position (exact
  resume), and the conversion of new inputs (:meth:`Data.as_input`).
* **Objective** — the model, the loss of a batch (:meth:`Objective.step`, a *summed* loss and its item count so
  the trainer can normalise across processes), the metrics of a split, predictions, and report sections, which
  get the trained model and the final metrics from the trainer.

The trainer (:class:`rnnkit.training.engine.Trainer`) knows only these two contracts, never a task: YAML configs,
the CLI, ``rnnkit.train`` and the estimators are builders that make a Data and an Objective and hand them over.
A built-in task (:mod:`rnnkit.tasks`) is one class that implements both sides for its job.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn


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


class Data:
    """The data side. ``splits`` maps ``"train"``, ``"val"``, ``"test"`` to what the objective evaluates."""

    splits: dict[str, Any]
    batch_size: int = 32
    seed: int = 0

    def setup(self) -> None:
        """Load and split the data into ``self.splits``; fit scalers/vocabularies on the training part."""
        raise NotImplementedError

    def state(self) -> dict:
        """JSON-able state needed to rebuild the model and predict without the training data."""
        return {}

    def load_state(self, state: dict) -> None:
        """Restore :meth:`state`."""

    def summary(self) -> dict:
        """Data summary for ``run.json`` and the report (sizes, shapes, classes)."""
        return {}

    def as_input(self, data: Any, where: str = "input", labels: bool = True) -> Any:
        """A user's file path, array or data object -> what the objective evaluates and predicts on."""
        raise NotImplementedError

    def num_train_items(self) -> int:
        return len(self.splits["train"])

    def num_train_batches(self, world: int = 1) -> int:
        """Optimiser steps per epoch (for the schedule and the progress bar)."""
        full, rest = divmod(self.num_train_items(), self.batch_size)
        return full + (1 if rest and rest >= world else 0)

    def train_batches(self, epoch: int, start: int, rank: int, world: int) -> Iterator[Any]:
        """Batches of one epoch from batch number ``start`` on (resume), this process's shard."""
        for idx in batch_indices(self.num_train_items(), self.batch_size, self.seed, epoch, rank, world)[start:]:
            yield self.make_batch(self.splits["train"], idx)

    def make_batch(self, data: Any, idx: torch.Tensor) -> Any:
        raise NotImplementedError


class Objective:
    """The objective side: model, loss, metrics, prediction and report sections."""

    metrics: ClassVar[tuple[str, ...]] = ("loss",)  # evaluation metrics; the monitor may be val_<metric>
    running_metric: ClassVar[str | None] = None  # key of StepResult.sums shown as sums[key] / count
    verbs: ClassVar[tuple[str, ...]] = ()  # what else it offers the CLI: "forecast", "generate", "explain", ...

    def build_model(self) -> nn.Module:
        raise NotImplementedError

    def initialize(self, model: nn.Module) -> None:
        """Starting weights fitted on the data (pretrained vectors, training-split statistics) for a model trained
        from scratch: the Trainer calls it after :meth:`build_model` and ``data.setup()``, and never where the
        weights are then loaded (a resume, a warm start, a saved run)."""

    def step(self, model: nn.Module, batch: Any, device: torch.device) -> StepResult:
        """The summed loss of one training batch."""
        raise NotImplementedError

    def carry_tensors(self) -> dict[str, torch.Tensor]:
        """Tensors a stateful objective carries between batches (saved in every checkpoint)."""
        return {}

    def load_carry(self, tensors: dict[str, torch.Tensor]) -> None:
        pass

    def evaluate(self, model: nn.Module, data: Any, device: torch.device) -> dict:
        """Metrics on ``data`` (a split): ``{"loss": ..., <metric>: ..., ...}``, JSON-able."""
        raise NotImplementedError

    def predict(self, model: nn.Module, data: Any, device: torch.device) -> list[dict]:
        raise NotImplementedError

    def combine(self, outputs: list) -> Any:
        """An ensemble's output from its members' (each the model's forward result on the same inputs): e.g. the
        log of the mean class probabilities (:mod:`rnnkit.training.ensemble`). Objectives that cannot be
        ensembled leave this unimplemented, and ``training.ensemble`` is refused for them."""
        raise NotImplementedError

    def ensemble(self, members: list[nn.Module]) -> nn.Module:
        """The module that runs ``members`` as one model: by default each member's forward on the same inputs,
        combined by :meth:`combine`; an objective whose prediction is not one forward (a decoder run step by step)
        returns its own."""
        from rnnkit.training.ensemble import Ensemble

        return Ensemble(members, self.combine)

    def finalize_metrics(self, metrics: dict) -> dict:
        """The final ``metrics.json`` mapping before it is written (e.g. lift out baselines); default: as is."""
        return metrics

    def report_sections(self, run_dir: Path, metrics: dict, model: nn.Module | None = None) -> list:
        """Extra :class:`rnnkit.report.Section` objects for the HTML report; ``model`` is the trained model the
        trainer holds (None when a report is rebuilt from a run folder)."""
        return []


__all__ = ["Data", "Objective", "StepResult", "batch_indices"]
