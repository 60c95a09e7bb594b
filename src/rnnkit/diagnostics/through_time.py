"""Look inside the recurrence: dL/dh_t at every step, gate saturation and hidden states.

:func:`trace` runs a model once with every rnnkit recurrent layer (``rnnkit.RNN/LSTM/GRU``, anywhere in
the module tree) switched to a step-by-step forward that keeps each ``h_t`` and the gate activations;
the loss ``loss_fn(model)`` is then differentiated with respect to every ``h_t``. The gradient is the
*total* derivative - through the outputs at step t and through all later steps - computed with
``torch.autograd.grad``, so the parameters' ``.grad`` are left untouched (a training callback may call
it between backward and the optimiser step). The stepping reuses the layer's own cell (``cell.step``), so
the traced function is the layer's function; gates are recomputed from the same weights.

    from rnnkit.diagnostics import gradient_through_time
    g = gradient_through_time(model, lambda m: F.mse_loss(m(x), y, reduction="sum"))
    print(g.verdict)      # "vanishing: layer 0 (lstm): |dL/dh| at the first step is 2.1e-09 of the last ..."
    g.layers[0].norms     # (T,) mean over the batch of ||dL/dh_t||, in time order

A :class:`Trace` per layer and direction: ``hidden`` (B, T, H), ``grad`` (B, T, H), ``gates`` name ->
(B, T, H) (LSTM: input, forget, output; GRU: reset, update), ``active`` (B, T) for variable lengths.
The model runs in eval mode (no dropout) and is returned to its mode afterwards.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from rnnkit.layers.recurrent import Recurrent

VANISHING, EXPLODING = 1e-3, 1e3  # first/last ratio thresholds of the verdict


@dataclass
class Trace:
    """One layer and direction of one traced batch."""

    name: str  # "layer 0", "layer 1 reverse", or "<module path> layer 0" when the model has several stacks
    cell: str  # the cell's registered name: "rnn", "lstm", "gru", ...
    reverse: bool
    hidden: torch.Tensor  # (B, T, H) h_t in time order (detached)
    gates: dict[str, torch.Tensor] = field(default_factory=dict)  # gate name -> (B, T, H) activations
    active: torch.Tensor | None = None  # (B, T) bool, None when every sequence is full length
    grad: torch.Tensor | None = None  # (B, T, H) dL/dh_t, filled by gradient_through_time
    _steps: list = field(default_factory=list, repr=False)  # the live h_t tensors of the traced graph

    @property
    def norms(self) -> np.ndarray:
        """(T,) mean over the batch (sequences active at t) of ||dL/dh_t||_2, in time order."""
        n = self.grad.norm(dim=2)  # (B, T)
        if self.active is None:
            return n.mean(0).numpy()
        a = self.active.float()
        return (n * a).sum(0).div(a.sum(0).clamp(min=1)).numpy()

    @property
    def ratio(self) -> float:
        """|dL/dh| at the first step read over |dL/dh| at the last (in reading order: reversed for a
        reverse direction); nan when no gradient reaches the last step."""
        n = self.norms[::-1] if self.reverse else self.norms
        return float(n[0] / n[-1]) if n[-1] > 0 else float("nan")

    @property
    def zero_lead(self) -> int:
        """Leading steps (in reading order) where |dL/dh| is exactly 0 while later steps have some: steps with no
        path to the loss at all (relu units switched off before an input arrives), not a gradient that decayed."""
        n = self.norms[::-1] if self.reverse else self.norms
        nonzero = np.flatnonzero(n > 0)
        return int(nonzero[0]) if len(nonzero) and n[0] == 0 else 0

    @property
    def tail_ratio(self) -> float:
        """:attr:`ratio` from the first step with any gradient (see :attr:`zero_lead`)."""
        n = self.norms[::-1] if self.reverse else self.norms
        k = self.zero_lead
        return float(n[k] / n[-1]) if n[-1] > 0 else float("nan")

    @property
    def per_step(self) -> float:
        """The geometric mean factor by which |dL/dh| changes per step back in time: ratio ** (1/(T-1))."""
        steps = len(self.norms) - 1
        r = self.ratio
        return float(r ** (1.0 / steps)) if steps > 0 and r > 0 and math.isfinite(r) else r

    @property
    def status(self) -> str:
        r = self.tail_ratio if self.zero_lead else self.ratio
        if math.isnan(r):
            return "no gradient"
        return "vanishing" if r < VANISHING else "exploding" if r > EXPLODING else "healthy"


@dataclass
class GradientReport:
    """The result of :func:`gradient_through_time`: one :class:`Trace` per layer and direction."""

    layers: list[Trace]
    loss: float

    @property
    def status(self) -> str:
        """The worst status over the layers: exploding > vanishing > healthy."""
        found = {t.status for t in self.layers}
        for s in ("exploding", "vanishing", "no gradient", "healthy"):
            if s in found:
                return s
        return "no recurrent layer"

    @property
    def verdict(self) -> str:
        """One line: the status and, per layer, the first/last ratio and the per-step factor."""
        parts = []
        for t in self.layers:
            if math.isnan(t.ratio):
                ratio = "no gradient reaches the last step"
            elif t.ratio == 0 and t.zero_lead:
                ratio = (f"|dL/dh| is exactly 0 over the first {t.zero_lead} of {len(t.norms)} steps (no path from "
                         f"there to the loss: units switched off, e.g. relu before an input arrives), then "
                         f"{t.tail_ratio:.2g} x the last")
            elif t.ratio == 0:
                ratio = f"|dL/dh| at the first step underflows to 0 ({len(t.norms)} steps)"
            else:
                ratio = f"|dL/dh| at the first step is {t.ratio:.2g} x the last (x{t.per_step:.3f} per step " \
                        f"over {len(t.norms)} steps)"
            parts.append(f"{t.name} ({t.cell}): {ratio}")
        return f"{self.status}: " + "; ".join(parts)

    def to_dict(self) -> dict:
        return {"status": self.status, "verdict": self.verdict, "loss": self.loss,
                "layers": [{"name": t.name, "cell": t.cell, "reverse": t.reverse, "ratio": t.ratio,
                            "per_step": t.per_step, "status": t.status, "norms": t.norms.tolist()}
                           for t in self.layers]}


# ---- the traced forward ----------------------------------------------------------------------------------


def _traced_forward(layer: Recurrent, traces: list[Trace], prefix: str):
    """A replacement for ``layer.forward`` that steps the cell and appends one Trace per layer/direction; the
    gates recorded are the ones the cell names (``cell.sigmoid_gates``, values from ``cell.gates``), and for a
    diagonal recurrence its ``retention`` ∂h_t/∂h_{t-1} per unit (what keeps its gradient alive at long T)."""
    cell = layer.cell

    def trace(k, d, gx, s, p, active, to_time):
        """The layer's time loop by plain autograd, keeping every h_t (for dL/dh_t) and the gates."""
        hs, gates = [], []
        for t, g in enumerate(gx.unbind(1)):
            with torch.no_grad():
                gates.append(cell.gates(g, s[0], p))
                kept = cell.retention(g, s[0], p)
                if kept is not None:
                    gates[-1]["retention"] = kept
            new = cell.step(g, s[0], s, p)
            if active is not None:  # finished sequences keep their state
                m = active[:, t, None]
                new = tuple(torch.where(m, n, o) for n, o in zip(new, s, strict=True))
            s = new
            hs.append(s[0])
        out = torch.stack(hs, 1)
        if active is not None:  # a reversed sequence stays left-aligned, so one mask serves both directions
            out = out * active[:, :, None]
        names = (*cell.sigmoid_gates, *(["retention"] if gates and "retention" in gates[0] else []))
        gate_t = {n: torch.stack([gt[n] for gt in gates], 1) for n in names}
        name = f"{prefix}layer {k}" + (" reverse" if d else "")
        calls = sum(t.name == name or t.name.startswith(f"{name} (call ") for t in traces)
        if calls:  # the layer runs again in one forward (a language model's segments between document resets)
            name += f" (call {calls + 1})"
        traces.append(Trace(name, cell.name, bool(d), to_time(out.detach()),
                            {n: to_time(v) for n, v in gate_t.items()}, active, _steps=hs))
        return out, s

    def forward(input, hx=None, *, lengths=None):
        return layer._forward(input, hx, lengths, trace)

    return forward


@contextmanager
def tracing(model: nn.Module):
    """Inside the block every rnnkit recurrent layer of ``model`` runs the traced forward; yields the list
    the traces are appended to (one per layer and direction, in call order)."""
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, Recurrent)]
    traces: list[Trace] = []
    for name, layer in layers:
        layer.forward = _traced_forward(layer, traces, f"{name} " if len(layers) > 1 else "")
    try:
        yield traces
    finally:
        for _, layer in layers:
            del layer.forward  # back to the class's forward


def _float64(model: nn.Module) -> nn.Module:
    """A float64 copy of ``model`` that casts its floating inputs to float64 (so 1e-60 is not 0)."""
    m = copy.deepcopy(model).double()

    def to64(v):
        if isinstance(v, tuple | list):
            return type(v)(map(to64, v))
        return v.double() if isinstance(v, torch.Tensor) and v.is_floating_point() else v

    def cast(_module, args, kwargs):
        return to64(args), {k: to64(v) for k, v in kwargs.items()}

    m.register_forward_pre_hook(cast, with_kwargs=True)
    return m


def trace(model: nn.Module, loss_fn: Callable[[nn.Module], torch.Tensor], grad: bool = True,
          float64: bool = True) -> GradientReport:
    """Run ``loss_fn(model)`` traced (eval mode) and, with ``grad``, fill every trace's dL/dh_t.

    ``float64``: trace a float64 copy of the model, so gradients far below float32's range (1e-45) stay
    measurable; a model that cannot run in float64 falls back to its own precision.
    """
    if float64:
        try:
            return _trace(_float64(model), loss_fn, grad)
        except (RuntimeError, TypeError):  # e.g. a custom module that insists on float32
            pass
    return _trace(model, loss_fn, grad)


def _trace(model: nn.Module, loss_fn: Callable[[nn.Module], torch.Tensor], grad: bool) -> GradientReport:
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad(), tracing(model) as traces:
            loss = loss_fn(model)
        if grad and traces:
            steps = [h for t in traces for h in t._steps]
            if not loss.requires_grad:
                raise ValueError("the loss does not depend on any parameter; cannot take dL/dh_t")
            grads = torch.autograd.grad(loss, steps, allow_unused=True)
            i = 0
            for t in traces:
                n = len(t._steps)
                g = [torch.zeros_like(h) if gh is None else gh for h, gh in zip(t._steps, grads[i : i + n],
                                                                                   strict=True)]
                i += n
                full = torch.stack(g, 1).detach().double().cpu()
                t.grad = _to_time_order(full, t) if t.reverse else full
        for t in traces:
            t._steps = []
            t.hidden, t.gates = t.hidden.float().cpu(), {k: v.float().cpu() for k, v in t.gates.items()}
            t.active = None if t.active is None else t.active.cpu()
        return GradientReport(traces, float(loss.detach()))
    finally:
        model.train(was_training)


def _to_time_order(reading_order: torch.Tensor, t: Trace) -> torch.Tensor:
    """A reverse direction's per-step tensor (B, T, H) from reading order to time order."""
    if t.active is None:
        return reading_order.flip(1)
    lengths = t.active.sum(1).cpu()
    steps = torch.arange(reading_order.shape[1])
    idx = torch.where(steps[None, :] < lengths[:, None], lengths[:, None] - 1 - steps[None, :], steps[None, :])
    return reading_order.gather(1, idx[:, :, None].expand_as(reading_order))


def gradient_through_time(model: nn.Module, loss_fn: Callable[[nn.Module], torch.Tensor]) -> GradientReport:
    """||dL/dh_t|| at every step of every rnnkit recurrent layer in ``model`` for the loss ``loss_fn(model)``
    (use a *summed* loss so the numbers do not depend on the batch size); see the module docstring."""
    return trace(model, loss_fn, grad=True)


# ---- gate statistics -------------------------------------------------------------------------------------


def gate_statistics(traces: list[Trace], low: float = 0.1, high: float = 0.9) -> list[dict]:
    """Per layer and gate: the fraction of activations below ``low``, above ``high``, saturated (either),
    and the mean, over the active steps of the batch."""
    rows = []
    for t in traces:
        for name, v in t.gates.items():
            vals = v[t.active] if t.active is not None else v.reshape(-1, v.shape[-1])
            vals = vals.reshape(-1)
            lo, hi = float((vals < low).float().mean()), float((vals > high).float().mean())
            rows.append({"layer": t.name, "gate": name, "below": lo, "above": hi, "saturated": lo + hi,
                         "mean": float(vals.mean()), "kept_99": float((vals > 0.99).float().mean())})
    return rows


__all__ = ["GradientReport", "Trace", "gate_statistics", "gradient_through_time", "trace", "tracing"]
