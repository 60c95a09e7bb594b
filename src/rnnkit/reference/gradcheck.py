"""Gradient checking: compare :func:`backward` with central differences of a scalar loss, in float64.

The loss is a fixed random linear functional of everything the forward pass returns,

    L = sum(P_h ⊙ h_seq) + sum_k sum(P_k ⊙ state_T[k]) (+ sum(P_y ⊙ y) with the output projection),

so its upstream gradients are the projections themselves: dh_seq = P_h (+ W_hy^T P_y), dstate_T = P, dy = P_y.
Each entry θ_j of every parameter and input is then checked against

    (L(θ + ε e_j) - L(θ - ε e_j)) / (2ε),

whose truncation error is O(ε²) and whose round-off error is O(u |L| / ε) with u ≈ 1.1e-16 in float64.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .core import backward, forward, init_params
from .output import output_backward, output_forward

Array = np.ndarray
TINY = 1e-300


def relative_error(a: Array, n: Array) -> float:
    """``||a - n|| / max(||a|| + ||n||, tiny)`` with Frobenius norms over the whole array."""
    return float(np.linalg.norm(a - n) / max(np.linalg.norm(a) + np.linalg.norm(n), TINY))


@dataclass
class GradCheckReport:
    """Relative error of the analytic gradient for every parameter and input, and the ``worst`` of them."""

    errors: dict[str, float]
    analytic: dict[str, Array] = field(repr=False)
    numeric: dict[str, Array] = field(repr=False)

    @property
    def worst(self) -> float:
        return max(self.errors.values())

    def __str__(self) -> str:
        rows = "\n".join(f"  {k:5s} {v:.2e}" for k, v in self.errors.items())
        return f"gradient check, worst relative error {self.worst:.2e}\n{rows}"


def numeric_gradient(loss, arr: Array, eps: float) -> Array:
    """Central differences of the scalar ``loss()`` wrt every entry of ``arr`` (perturbed in place)."""
    grad = np.zeros_like(arr)
    for j in np.ndindex(arr.shape):
        old = arr[j]
        arr[j] = old + eps
        lp = loss()
        arr[j] = old - eps
        lm = loss()
        arr[j] = old
        grad[j] = (lp - lm) / (2.0 * eps)
    return grad


def gradient_check(
    cell: str,
    *,
    batch: int = 2,
    steps: int = 5,
    input_size: int = 3,
    hidden_size: int = 4,
    output_size: int | None = None,
    seed: int = 0,
    eps: float = 1e-6,
    **cell_options,
) -> GradCheckReport:
    """Check :func:`backward` (and :func:`output_backward` when ``output_size`` is given) numerically.

    ``cell_options`` go to :func:`forward` (activation, recurrent_activation, reset_after). Parameters, inputs
    x (batch, steps, input_size) and a nonzero initial state are drawn from ``seed``.
    """
    rng = np.random.default_rng(seed)
    B, T, H = batch, steps, hidden_size
    params = init_params(cell, input_size, H, rng, output_size)
    x = rng.standard_normal((B, T, input_size))
    state0 = tuple(0.5 * rng.standard_normal((B, H)) for _ in range(2 if cell == "lstm" else 1))
    P_h = rng.standard_normal((B, T, H))
    P_s = tuple(rng.standard_normal((B, H)) for _ in state0)
    P_y = rng.standard_normal((B, T, output_size)) if output_size else None

    def loss() -> float:
        h_seq, state_T, _ = forward(cell, x, params, state0, **cell_options)
        L = np.sum(P_h * h_seq) + sum(np.sum(p * s) for p, s in zip(P_s, state_T, strict=True))
        if output_size:
            y, _ = output_forward(h_seq, params["W_hy"], params["b_y"])
            L += np.sum(P_y * y)
        return float(L)

    h_seq, _, cache = forward(cell, x, params, state0, **cell_options)
    dh_seq = P_h.copy()
    analytic = {}
    if output_size:
        _, ycache = output_forward(h_seq, params["W_hy"], params["b_y"])
        dh_y, analytic["W_hy"], analytic["b_y"] = output_backward(ycache, P_y)
        dh_seq += dh_y
    analytic |= backward(cache, dh_seq, P_s)

    inputs = {**params, "x": x, "h0": state0[0]} | ({"c0": state0[1]} if cell == "lstm" else {})
    numeric = {name: numeric_gradient(loss, arr, eps) for name, arr in inputs.items()}
    errors = {name: relative_error(analytic[name], numeric[name]) for name in numeric}
    return GradCheckReport(errors, analytic, numeric)
