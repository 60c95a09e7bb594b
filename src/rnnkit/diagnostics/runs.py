"""Diagnostics of a run folder, during training and in its report.

* :func:`diagnose_run` - load a run's best checkpoint, draw a batch of its validation data and trace it
  (gradient through time, gates, hidden states); ``rnnkit diagnose RUN`` prints the verdict.
* the ``grad_through_time`` training callback - ``callbacks: {grad_through_time: {every: 100}}`` records
  ||dL/dh_t|| on the current training batch every N optimiser steps (and at step 0) into
  ``<run>/diagnostics/grad_through_time.jsonl`` without touching the parameter gradients.
* report sections, added to every run's report by :func:`report_sections` (registered with
  :func:`rnnkit.report.register_section`): "Gradient through time" (final model on a validation batch,
  log scale, the verdict, and the recorded history when the callback ran), "Gate statistics" (LSTM/GRU:
  saturation table and histograms) and "Hidden states" (heat map over one sequence). The final model's
  numbers are also written to ``<run>/diagnostics/final.json``.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rnnkit.config import ConfigError
from rnnkit.diagnostics.through_time import GradientReport, Trace, gate_statistics, trace
from rnnkit.report import Section, integer_x, register_section
from rnnkit.training.callbacks import Callback, Context, register_callback

HISTORY = "grad_through_time.jsonl"


def task_loss(task: Any, batch: Any, device: torch.device):
    """``loss_fn`` for :func:`trace`: the task's summed training loss on ``batch``."""
    return lambda model: task.step(model, batch, device).loss_sum


def diagnose_run(run: Any, split: str | None = None, batch_size: int = 16, checkpoint: str = "best"
                 ) -> tuple[GradientReport, str]:
    """Trace the first ``batch_size`` sequences of ``split`` (default: val, else test, else train) of a run
    (a folder or :class:`rnnkit.Run`) with its ``checkpoint`` weights; returns (report, split used)."""
    from rnnkit.api import Run
    from rnnkit.data import DataError

    if not isinstance(run, Run):
        run = Run.load(run, checkpoint=checkpoint)
    task = run.task
    state = task.state()
    task.setup()  # regenerates / reloads the configured data with the run's seed
    task.load_state(state)
    split = split or next((s for s in ("val", "test", "train") if s in task.splits), None)
    if split not in task.splits:
        raise DataError(f"this run's data has no '{split}' split (it has {', '.join(task.splits) or 'none'})")
    data = task.splits[split]
    n = min(len(data), batch_size)
    if n == 0:
        raise DataError(f"the '{split}' split of this run is empty; pick another with --split")
    batch = task.make_batch(data, torch.arange(n))
    return trace(run.model, task_loss(task, batch, run.device)), split


# ---- the training callback --------------------------------------------------------------------------------


@dataclass
class GradThroughTimeOptions:
    every: int = 100  # record every N optimiser steps (and before the first)

    def check(self) -> None:
        if self.every < 1:
            raise ConfigError(f"callbacks.grad_through_time.every must be >= 1, got {self.every}")


@register_callback("grad_through_time")
class GradThroughTime(Callback):
    """Records ||dL/dh_t|| per layer on the training batch every ``every`` steps (see the module docstring)."""

    options = GradThroughTimeOptions

    def __init__(self, options: GradThroughTimeOptions) -> None:
        super().__init__(options)
        self.last_step = -1

    def after_backward(self, ctx: Context, batch: Any) -> None:
        step = ctx.global_step  # optimiser steps already taken
        if step % self.opts.every:
            return
        carried = ctx.task.carry_tensors()  # a stateful task's step moves its carried state: put it back
        try:
            g = trace(ctx.model, task_loss(ctx.task, batch, ctx.device))
        finally:
            ctx.task.load_carry(carried)
        rec = {"step": step, "epoch": ctx.epoch, "status": g.status,
               "layers": {t.name: {"ratio": t.ratio, "norms": [float(f"{v:.4g}") for v in t.norms]}
                          for t in g.layers}}
        folder = ctx.run_dir / "diagnostics"
        folder.mkdir(exist_ok=True)
        with open(folder / HISTORY, "a") as f:
            f.write(json.dumps(rec) + "\n")
        self.last_step = step

    def state(self) -> dict:
        return {"last_step": self.last_step}

    def load_state(self, state: dict) -> None:
        """On resume, drop what was recorded after the checkpoint (it will be recorded again)."""
        self.last_step = state.get("last_step", -1)

    def on_train_start(self, ctx: Context) -> None:
        path = ctx.run_dir / "diagnostics" / HISTORY
        if path.is_file():
            keep = [line for line in path.read_text().splitlines() if json.loads(line)["step"] <= self.last_step]
            path.write_text("".join(line + "\n" for line in keep))


def read_history(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "diagnostics" / HISTORY
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


# ---- plots -----------------------------------------------------------------------------------------------


def plot_gradients(ax, reports: list[tuple[str, GradientReport]]) -> None:
    """||dL/dh_t|| against t on a log scale, one line per (label, layer)."""
    for label, g in reports:
        for t in g.layers:
            n = np.where(t.norms > 0, t.norms, np.nan)  # underflow to 0 is off the log scale
            ax.semilogy(np.arange(1, len(n) + 1), n, label=f"{label} {t.name}".strip() + f" ({t.cell})")
    integer_x(ax, "time step t")
    ax.set_ylabel("mean ||dL/dh_t||")
    ax.legend(fontsize=7)


def gradient_figure(reports: list[tuple[str, GradientReport]], title: str = ""):
    from rnnkit.report import figure

    fig = figure(6.4, 3.4, grid=(1, 1), left=1.1)
    ax = fig.add_subplot()
    plot_gradients(ax, reports)
    ax.set_title(title or "gradient through time", fontsize=9)
    return fig


def history_figure(history: list[dict]):
    """Left: the first layer's profile at each recorded step (colour = step); right: first/last ratio."""
    import matplotlib

    from rnnkit.report import figure

    fig = figure(9.0, 3.2, grid=(1, 2), left=0.9, wgap=0.9)
    ax, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    cmap, last = matplotlib.colormaps["viridis"], max(history[-1]["step"], 1)
    first_layer = next(iter(history[0]["layers"]))
    for rec in history:
        n = np.asarray(rec["layers"][first_layer]["norms"], dtype=float)
        ax.semilogy(np.arange(1, len(n) + 1), np.where(n > 0, n, np.nan), color=cmap(rec["step"] / last), lw=0.8)
    ax.set_title(f"{first_layer}: ||dL/dh_t|| during training (dark: early)", fontsize=9)
    integer_x(ax, "time step t")
    for name in history[0]["layers"]:
        ratios = [rec["layers"][name]["ratio"] for rec in history]
        ax2.semilogy([rec["step"] for rec in history], np.where(np.asarray(ratios) > 0, ratios, np.nan), marker="o",
                     ms=3, label=name)
    ax2.set_title("first-step / last-step gradient ratio", fontsize=9)
    integer_x(ax2, "optimiser step")
    ax2.legend(fontsize=7)
    return fig


def gate_figure(traces: list[Trace], bins: int = 40):
    from rnnkit.report import figure

    rows = [t for t in traces if t.gates][:4]
    cols = max(len(t.gates) for t in rows)
    fig = figure(2.6 * cols, 2.0 * len(rows) + 0.3, grid=(len(rows), cols), left=0.2, wgap=0.3)
    for i, t in enumerate(rows):
        for j, (name, v) in enumerate(t.gates.items()):
            ax = fig.add_subplot(len(rows), cols, i * cols + j + 1)
            vals = (v[t.active] if t.active is not None else v).reshape(-1).numpy()
            ax.hist(vals, bins=bins, range=(0, 1), color="tab:blue")
            ax.axvspan(0, 0.1, color="tab:red", alpha=0.12)
            ax.axvspan(0.9, 1, color="tab:red", alpha=0.12)
            ax.set_title(f"{t.name}: {name}", fontsize=8)
            ax.set_yticks([])
    return fig


def hidden_figure(traces: list[Trace], index: int = 0):
    from rnnkit.report import figure

    shown = traces[:4]
    fig = figure(7.5, 1.8 * len(shown) + 0.4, grid=(len(shown), 1), right=0.6, hgap=0.3)
    for i, t in enumerate(shown):
        h = t.hidden[index]  # (T, H)
        if t.active is not None:
            h = h[: int(t.active[index].sum())]
        ax = fig.add_subplot(len(shown), 1, i + 1)
        lim = max(float(h.abs().max()), 1e-6)
        im = ax.imshow(h.T.numpy(), aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
        ax.set_ylabel(f"{t.name}\nunit", fontsize=8)
        integer_x(ax)
        fig.colorbar(im, ax=ax, fraction=0.03)
    ax.set_xlabel(f"time step (sequence {index})")
    return fig


# ---- report sections -------------------------------------------------------------------------------------


def sections_for(g: GradientReport, split: str, history: list[dict]) -> list[Section]:
    from rnnkit.report import have_matplotlib, png, table

    plots = have_matplotlib()
    rows = [[t.name, t.cell, t.ratio, t.per_step, t.status] for t in g.layers]
    body = (f"<p><b>{html.escape(g.verdict)}</b></p><p>||dL/dh_t|| (total derivative of the summed loss, mean "
            f"over {len(g.layers[0].hidden)} {split} sequences) for the best checkpoint. Vanishing: the first "
            f"step gets less than 1e-3 of the last step's gradient; exploding: more than 1e3.</p>"
            + table(rows, ["layer", "cell", "first/last", "per step", "status"]))
    if plots:
        body += png(gradient_figure([("", g)], f"{g.status}, best checkpoint, {split} batch"))
        if history:
            body += "<p>Recorded during training by the grad_through_time callback:</p>" + png(history_figure(history))
    out = [Section("Gradient through time", body)]
    gated = [t for t in g.layers if t.gates]
    if gated:
        stats = gate_statistics(gated)
        tbl = table([[r["layer"], r["gate"], r["below"], r["above"], r["saturated"], r["mean"]] for r in stats],
                    ["layer", "gate", "< 0.1", "> 0.9", "saturated", "mean"])
        out.append(Section("Gate statistics", "<p>Fraction of gate activations saturated (< 0.1 or > 0.9) on "
                           f"the same {split} batch.</p>" + tbl + (png(gate_figure(gated)) if plots else "")))
    if plots:
        out.append(Section("Hidden states", png(hidden_figure(g.layers))))
    return out


@register_section
def report_sections(run_dir: Path, info: dict) -> list[Section]:
    """Every run's report: trace the best checkpoint on a validation batch (never fails the report)."""
    run_dir = Path(run_dir)
    if not (run_dir / "checkpoints").is_dir():
        return []
    try:
        g, split = diagnose_run(run_dir)
        if not g.layers:
            return []
        (run_dir / "diagnostics").mkdir(exist_ok=True)
        (run_dir / "diagnostics" / "final.json").write_text(json.dumps({"split": split, **g.to_dict()}) + "\n")
        return sections_for(g, split, read_history(run_dir))
    except Exception as e:  # a report must always be written; say why this part is missing
        msg = html.escape(" ".join(f"{type(e).__name__}: {e}".split()))
        return [Section("Gradient through time", f"<p>not computed: {msg}</p>")]


__all__ = ["GradThroughTime", "diagnose_run", "gradient_figure", "read_history", "report_sections", "sections_for"]
