"""Elman RNN: forward pass and backpropagation through time.

Shapes: B batch, T steps, D input features, H hidden units. Row-vector convention, so the textbook
``W_xh x_t`` is ``x_t @ W_xh.T`` here, with parameters in torch.nn's layout:

    W_xh (H, D)   W_hh (H, H)   b_xh (H,)   b_hh (H,)

    a_t = W_xh x_t + b_xh + W_hh h_{t-1} + b_hh
    h_t = f(a_t)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .activations import Activation, get_activation

Array = np.ndarray


@dataclass
class RNNCache:
    """What :func:`rnn_backward` needs; ``h`` (B, T+1, H) holds h_0 .. h_T, so ``h[:, t]`` is h_{t-1}."""

    params: dict[str, Array]
    x: Array  # (B, T, D)
    h: Array  # (B, T+1, H)
    act: Activation
    cell: str = "rnn"


def rnn_forward(
    x: Array, params: dict[str, Array], h0: Array, activation: str = "tanh"
) -> tuple[Array, tuple[Array], RNNCache]:
    """Run the Elman RNN over a sequence.

    x (B, T, D), h0 (B, H) -> h_seq (B, T, H), (h_T,) with h_T (B, H), and an :class:`RNNCache`.
    """
    W_xh, W_hh, b_xh, b_hh = params["W_xh"], params["W_hh"], params["b_xh"], params["b_hh"]
    act = get_activation(activation)
    B, T, _ = x.shape
    h = np.zeros((B, T + 1, W_hh.shape[1]))
    h[:, 0] = h0
    for t in range(T):
        a = x[:, t] @ W_xh.T + b_xh + h[:, t] @ W_hh.T + b_hh  # a_t (B, H)
        h[:, t + 1] = act.f(a)  # h_t = f(a_t)
    return h[:, 1:].copy(), (h[:, T].copy(),), RNNCache(params, x, h, act)


def rnn_backward(cache: RNNCache, dh_seq: Array, dh_T: Array) -> dict[str, Array]:
    """BPTT for the Elman RNN.

    dh_seq (B, T, H) is dL/dh_t from the outputs at every step, dh_T (B, H) is dL/dh_T from the final state.
    Returns gradients with the shapes of the inputs: W_xh, W_hh, b_xh, b_hh, x (B, T, D), h0 (B, H).
    """
    p, x, h, act = cache.params, cache.x, cache.h, cache.act
    W_xh, W_hh = p["W_xh"], p["W_hh"]
    T = x.shape[1]
    g = {k: np.zeros_like(p[k]) for k in ("W_xh", "W_hh", "b_xh", "b_hh")}
    dx = np.zeros_like(x)
    dh_next = dh_T.copy()  # holds (dh_{t+1}/dh_t)^T delta_{t+1}; before the loop: the final-state gradient
    for t in reversed(range(T)):
        dh = dh_seq[:, t] + dh_next  # delta_t = dl_t/dh_t + (dh_{t+1}/dh_t)^T delta_{t+1}
        da = dh * act.df(h[:, t + 1])  # da_t = delta_t * f'(a_t)
        g["W_xh"] += da.T @ x[:, t]  # dL/dW_xh += da_t x_t^T
        g["W_hh"] += da.T @ h[:, t]  # dL/dW_hh += da_t h_{t-1}^T
        g["b_xh"] += da.sum(0)
        g["b_hh"] += da.sum(0)
        dx[:, t] = da @ W_xh  # dL/dx_t = W_xh^T da_t
        dh_next = da @ W_hh  # (dh_t/dh_{t-1})^T delta_t = W_hh^T da_t
    return {**g, "x": dx, "h0": dh_next}
