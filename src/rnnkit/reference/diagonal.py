"""The diagonal recurrences: IndRNN, minGRU and minLSTM, forward pass and backpropagation through time.

No matrix multiplies h_{t-1}: each unit recurs on itself alone. Shapes: B batch, T steps, D inputs, H units;
row-vector convention (``W x_t`` is ``x_t @ W.T``), parameters in the rnnkit layers' layout.

IndRNN (Li et al. 2018), W_xh (H, D), u = W_hh (H,), b_xh (H,), b_hh (H,):

    a_t = W_xh x_t + b_xh + ū ⊙ h_{t-1} + b_hh,   ū = clip(u, -max_abs, max_abs)
    h_t = f(a_t)
    δ_t = dl_t/dh_t + ū ⊙ f'(a_{t+1}) ⊙ δ_{t+1}   dL/du = Σ_t f'(a_t) δ_t h_{t-1} (0 where |u| > max_abs)

minGRU (Feng et al. 2024), W_xh (2H, D) = [W_z; W_h], b_xh (2H,):

    z_t = σ(W_z x_t + b_z)    h̃_t = g(W_h x_t + b_h)    h_t = (1 - z_t) ⊙ h_{t-1} + z_t ⊙ h̃_t
    g(v) = v + 1/2 (v >= 0), σ(v) (v < 0)

minLSTM, W_xh (3H, D) = [W_f; W_i; W_h], b_xh (3H,):

    f_t, i_t = σ(·), σ(·)    s_t = f_t + i_t    h_t = (f_t ⊙ h_{t-1} + i_t ⊙ h̃_t) / s_t

For the minimal cells h_t = a_t h_{t-1} + b_t with a, b functions of x_t alone, so δ_{t-1} gets a_t δ_t and the
gate pre-activations get the chain rule through a_t and b_t only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .activations import Activation, get_activation

Array = np.ndarray


def _sigmoid(v: Array) -> Array:
    return 0.5 * (1.0 + np.tanh(0.5 * v))  # overflow-free σ


def g(v: Array) -> Array:
    """minGRU/minLSTM's positive candidate activation."""
    return np.where(v >= 0, v + 0.5, _sigmoid(v))


def dg(v: Array) -> Array:
    """g'(v)."""
    s = _sigmoid(v)
    return np.where(v >= 0, 1.0, s * (1.0 - s))


@dataclass
class DiagonalCache:
    """What :func:`diagonal_backward` needs; ``h`` (B, T+1, H) holds h_0 .. h_T, ``pre`` (B, T, G*H) the input
    projections W_xh x_t + b_xh."""

    params: dict[str, Array]
    x: Array
    h: Array
    pre: Array
    cell: str
    act: Activation | None = None
    max_abs: float | None = None


def _bounded(u: Array, max_abs: float | None) -> Array:
    return u if max_abs is None else np.clip(u, -max_abs, max_abs)


def diagonal_forward(cell: str, x: Array, params: dict[str, Array], h0: Array, activation: str = "relu",
                     max_abs: float | None = None) -> tuple[Array, tuple[Array], DiagonalCache]:
    """Run ``cell`` ("indrnn", "mingru", "minlstm") over x (B, T, D) from h0 (B, H).

    ``activation`` and ``max_abs`` are IndRNN's f and bound on |u|. Returns h_seq (B, T, H), (h_T,) and a cache.
    """
    pre = x @ params["W_xh"].T + params["b_xh"]  # (B, T, G*H)
    B, T, GH = pre.shape
    H = h0.shape[1]
    h = np.zeros((B, T + 1, H))
    h[:, 0] = h0
    act = get_activation(activation) if cell == "indrnn" else None
    if cell == "indrnn":
        u = _bounded(params["W_hh"], max_abs)
        for t in range(T):
            h[:, t + 1] = act.f(pre[:, t] + u * h[:, t] + params["b_hh"])
    elif cell == "mingru":
        z, cand = _sigmoid(pre[..., :H]), g(pre[..., H:])
        for t in range(T):
            h[:, t + 1] = (1.0 - z[:, t]) * h[:, t] + z[:, t] * cand[:, t]
    elif cell == "minlstm":
        f, i, cand = _sigmoid(pre[..., :H]), _sigmoid(pre[..., H: 2 * H]), g(pre[..., 2 * H:])
        for t in range(T):
            h[:, t + 1] = (f[:, t] * h[:, t] + i[:, t] * cand[:, t]) / (f[:, t] + i[:, t])
    else:
        raise ValueError(f"unknown diagonal cell {cell!r}")
    return h[:, 1:].copy(), (h[:, T].copy(),), DiagonalCache(params, x, h, pre, cell, act, max_abs)


def diagonal_backward(cache: DiagonalCache, dh_seq: Array, dh_T: Array) -> dict[str, Array]:
    """BPTT for :func:`diagonal_forward`: dh_seq (B, T, H) dL/dh_t from the outputs, dh_T (B, H) from the final
    state. Returns gradients of W_xh, b_xh (and W_hh, b_hh for IndRNN), x (B, T, D) and h0 (B, H)."""
    p, x, h, pre = cache.params, cache.x, cache.h, cache.pre
    B, T, GH = pre.shape
    H = h.shape[2]
    dpre = np.zeros_like(pre)  # dL/d(W_xh x_t + b_xh)
    delta = dh_T.copy()  # dL/dh_t through the later steps
    out: dict[str, Array] = {}
    if cache.cell == "indrnn":
        u = _bounded(p["W_hh"], cache.max_abs)
        du = np.zeros(H)
        for t in reversed(range(T)):
            da = (dh_seq[:, t] + delta) * cache.act.df(h[:, t + 1])  # dL/da_t
            dpre[:, t] = da
            du += (da * h[:, t]).sum(0)
            delta = da * u
        inside = np.ones(H) if cache.max_abs is None else (np.abs(p["W_hh"]) <= cache.max_abs)
        out |= {"W_hh": du * inside, "b_hh": dpre.sum((0, 1))}
    elif cache.cell == "mingru":
        k, v = pre[..., :H], pre[..., H:]
        z, cand = _sigmoid(k), g(v)
        for t in reversed(range(T)):
            d = dh_seq[:, t] + delta
            dpre[:, t, :H] = d * (cand[:, t] - h[:, t]) * z[:, t] * (1.0 - z[:, t])  # ∂h_t/∂z_t σ'
            dpre[:, t, H:] = d * z[:, t] * dg(v[:, t])
            delta = d * (1.0 - z[:, t])
    else:
        f, i, v = _sigmoid(pre[..., :H]), _sigmoid(pre[..., H: 2 * H]), pre[..., 2 * H:]
        cand = g(v)
        for t in reversed(range(T)):
            d = dh_seq[:, t] + delta
            s = f[:, t] + i[:, t]
            gap = (cand[:, t] - h[:, t]) / s**2  # ∂h_t/∂i_t = f gap, ∂h_t/∂f_t = -i gap
            dpre[:, t, :H] = -d * i[:, t] * gap * f[:, t] * (1.0 - f[:, t])
            dpre[:, t, H: 2 * H] = d * f[:, t] * gap * i[:, t] * (1.0 - i[:, t])
            dpre[:, t, 2 * H:] = d * i[:, t] / s * dg(v[:, t])
            delta = d * f[:, t] / s
    flat = dpre.reshape(B * T, GH)
    out |= {"W_xh": flat.T @ x.reshape(B * T, -1), "b_xh": flat.sum(0), "x": dpre @ p["W_xh"], "h0": delta}
    return out
