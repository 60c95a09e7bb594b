"""The time loop in a form graph exporters keep symbolic: ``torch._higher_order_ops.scan`` over the time axis.

Under ``torch.export``, ``torch.onnx.export(..., dynamo=True)`` and ``torch.compile`` a Python loop over time
would be unrolled into a graph for one fixed T. :func:`time_scan` instead steps the cell inside torch's scan
operator, which ``torch.export`` keeps as one node with a symbolic time axis and the ONNX exporter writes as
an ONNX ``Scan``, so an exported model takes any batch size and length. It computes exactly what the autograd
engine's loop computes (``Recurrent._scan_autograd``), masks and recurrent-dropout mask included.

Two rules of torch's scan shape the step: the parameters are closed over (tracing lifts them into the
operator's inputs), and no carry may alias an output or another carry, so the new state is cloned.
"""

from __future__ import annotations

import torch
from torch._higher_order_ops.scan import scan as _scan

from rnnkit.layers.cell import Cell, Params


def time_scan(cell: Cell, gx: torch.Tensor, state: tuple[torch.Tensor, ...], p: Params,
              active: torch.Tensor | None, mask: torch.Tensor | None) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """Step ``cell`` over gx (B, T, G*H) from ``state`` with torch's scan operator; return outputs (B, T, P) and the
    final state. ``active`` (B, T) bool marks live steps; ``mask`` (B, P) is the recurrent-dropout mask or None."""

    def step(carry, xs):
        s = tuple(carry)
        g = xs[0]
        new = cell.step(g, s[0] if mask is None else s[0] * mask, s, p)
        if active is not None:
            live = xs[1].unsqueeze(1)  # (B, 1) bool
            new = tuple(torch.where(live, a, b) for a, b in zip(new, s, strict=True))
            y = torch.where(live, new[0], torch.zeros_like(new[0]))
        else:
            y = new[0].clone()
        return tuple(n.clone() for n in new), y

    xs = (gx, active) if active is not None else (gx,)
    final, ys = _scan(step, tuple(state), xs, dim=1)
    return ys, tuple(final)
