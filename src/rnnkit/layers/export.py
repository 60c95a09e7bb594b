"""The time loop in a form graph exporters keep symbolic: ``torch._higher_order_ops.scan`` over the time axis.

Under ``torch.export``, ``torch.onnx.export(..., dynamo=True)`` and ``torch.compile`` a Python loop over time
would be unrolled into a graph for one fixed T. :func:`time_scan` instead steps the cell inside torch's scan
operator, which ``torch.export`` keeps as one node with a symbolic time axis and the ONNX exporter writes as
an ONNX ``Scan``, so an exported model takes any batch size and length. It computes exactly what the autograd
engine's loop computes (``Recurrent._scan_autograd``), masks and recurrent-dropout mask included.
"""

from __future__ import annotations

import torch
from torch._higher_order_ops.scan import scan as _scan

from rnnkit.layers.cell import Cell, Params


def time_scan(cell: Cell, gx: torch.Tensor, state: tuple[torch.Tensor, ...], p: Params,
              active: torch.Tensor | None, mask: torch.Tensor | None) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """Step ``cell`` over gx (B, T, G*H) from ``state`` with torch's scan operator; return outputs (B, T, P) and the
    final state. ``active`` (B, T) bool marks live steps; ``mask`` (B, P) is the recurrent-dropout mask or None."""
    names = sorted(k for k, v in p.items() if v is not None)
    weights = tuple(p[k] for k in names)
    n = len(state)
    live = active.to(gx.dtype).unsqueeze(2) if active is not None else None  # (B, T, 1)

    def step(carry, xs):
        s = tuple(carry[:n])
        w = dict.fromkeys(p)
        w.update(zip(names, carry[n:n + len(names)], strict=True))
        m = carry[n + len(names)] if mask is not None else None
        g = xs[0]
        new = cell.step(g, s[0] if m is None else s[0] * m, s, w)
        if live is not None:
            keep = xs[1]  # (B, 1), 1 at live steps
            new = tuple(keep * a + (1 - keep) * b for a, b in zip(new, s, strict=True))
            y = new[0] * keep
        else:
            y = new[0]
        extra = (m,) if m is not None else ()
        return (*new, *weights_out(carry), *extra), y.clone()

    def weights_out(carry):
        return tuple(carry[n:n + len(names)])

    init = (*state, *weights, *((mask,) if mask is not None else ()))
    xs = (gx, live) if live is not None else (gx,)
    final, ys = _scan(step, init, xs, dim=1)
    return ys.transpose(0, 1) if ys.shape[0] != gx.shape[0] else ys, tuple(final[:n])
