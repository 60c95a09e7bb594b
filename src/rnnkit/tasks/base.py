"""A built-in task: one class that is both the trainer's :class:`~rnnkit.training.core.Data` and its
:class:`~rnnkit.training.core.Objective` for one job, plus the config sections it reads.

The trainer (:mod:`rnnkit.training.engine`) runs epochs, optimiser steps, clipping, schedules, checkpoints,
resume, DDP and logging against those two contracts; a task supplies everything problem-specific:

* data: :meth:`Task.setup` loads and splits it; :meth:`Task.state` / :meth:`Task.load_state` round-trip
  what prediction needs without the data (classes, scalers, vocabularies) as JSON;
* the model: :meth:`Task.build_model`;
* batches: :meth:`Task.train_batches` yields one epoch's batches from any position (the default draws a
  seeded permutation per epoch, a pure function of ``(seed, epoch)``, so a resume only needs the
  position). A stateful task (truncated BPTT) overrides it and keeps its carried state in
  :meth:`Task.carry_tensors` so a mid-epoch checkpoint restores it exactly;
* the loss: :meth:`Task.step` returns a *summed* loss and its item count, so the engine can normalise by
  the global count across processes;
* evaluation, prediction, export and report sections.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from rnnkit.config import Config, DataConfig, ModelConfig
from rnnkit.errors import ExportError
from rnnkit.training.core import Data, Objective, StepResult, batch_indices

__all__ = ["ExportSpec", "StepResult", "Task", "batch_indices"]


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


class Task(Data, Objective):
    name: ClassVar[str] = ""
    model_config: ClassVar[type] = ModelConfig
    data_config: ClassVar[type] = DataConfig

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.splits: dict[str, Any] = {}  # "train" / "val" / "test" -> task-specific data
        self.batch_size, self.seed = cfg.training.batch_size, cfg.training.seed

    @classmethod
    def check_config(cls, cfg: Config) -> None:
        """Cross-key checks beyond the dataclass types; raise ConfigError."""

    def export_spec(self, model: nn.Module, data: Any | None) -> ExportSpec:
        """What to export of ``model`` (see :class:`ExportSpec`); ``data`` is a split of the run's data, or None
        when the data is not at hand (then the example inputs are made up)."""
        raise ExportError(f"task {self.name} runs cannot be exported yet")
