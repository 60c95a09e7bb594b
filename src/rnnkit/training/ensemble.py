"""Ensembles (``training.ensemble: K``): K members trained with seeds ``seed .. seed + K - 1`` on the same data
splits, their outputs combined into one prediction and reported as one run with the spread across members.

    runs/NAME/config.yaml                 the config (ensemble: K)
    runs/NAME/members/k/                  member k: a whole run folder of its own (checkpoints, metrics.json)
    runs/NAME/checkpoints/best/           the ensemble: every member's best weights (members.k.*) and the task state
    runs/NAME/metrics.json, report.html   the ensemble's metrics, "members" (each member's), "spread"

How members combine is the task's :meth:`~rnnkit.training.core.Objective.combine`: class probabilities are
averaged (the logits returned are their logs), point forecasts and quantiles averaged. ``--resume`` continues the
member that was interrupted and trains the ones not started; finished members are kept as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn


class Ensemble(nn.Module):
    """``forward(*args)``: every member's forward on the same inputs, combined by ``combine(outputs)``."""

    def __init__(self, members: Sequence[nn.Module], combine: Callable[[list], torch.Tensor]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.combine = combine

    def forward(self, *args, **kwargs):
        return self.combine([m(*args, **kwargs) for m in self.members])


def mean_probabilities(outputs: list[torch.Tensor]) -> torch.Tensor:
    """Logits (..., K) of each member -> the log of their mean class probabilities (a valid logit vector)."""
    p = torch.stack([o.float().softmax(-1) for o in outputs]).mean(0)
    return p.clamp_min(1e-30).log()


def mean_sigmoid(outputs: list[torch.Tensor]) -> torch.Tensor:
    """One binary logit per item from each member -> the logit of their mean probability."""
    p = torch.stack([o.float().sigmoid() for o in outputs]).mean(0).clamp(1e-7, 1 - 1e-7)
    return torch.log(p) - torch.log1p(-p)


def mean(outputs: list[torch.Tensor]) -> torch.Tensor:
    """Point forecasts or quantiles: their mean (quantile averaging)."""
    return torch.stack(outputs).mean(0)


def spread(members: list[dict], keys: Sequence[str]) -> dict:
    """Mean, std, min and max across members of each test metric in ``keys`` that they all have."""
    out = {}
    for k in keys:
        vals = [m["test"][k] for m in members if isinstance(m.get("test", {}).get(k), int | float)]
        if len(vals) == len(members) and vals:
            v = np.asarray(vals, np.float64)
            out[k] = {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
                      "min": float(v.min()), "max": float(v.max())}
    return out


__all__ = ["Ensemble", "mean", "mean_probabilities", "mean_sigmoid", "spread"]
