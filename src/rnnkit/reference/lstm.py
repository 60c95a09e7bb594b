"""LSTM: forward pass and backpropagation through time.

Shapes: B batch, T steps, D input features, H hidden units; torch.nn's layout with the four gate blocks
stacked along the first axis in the order i, f, g, o:

    W_xh (4H, D)   W_hh (4H, H)   b_xh (4H,)   b_hh (4H,)

    a_t = W_xh x_t + b_xh + W_hh h_{t-1} + b_hh = [a_i; a_f; a_g; a_o]
    i = σ(a_i)   f = σ(a_f)   g = φ(a_g)   o = σ(a_o)
    c_t = f ⊙ c_{t-1} + i ⊙ g
    h_t = o ⊙ φ(c_t)

σ is ``recurrent_activation`` (default sigmoid) and φ is ``activation`` (default tanh).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .activations import Activation, get_activation

Array = np.ndarray


@dataclass
class LSTMCache:
    """What :func:`lstm_backward` needs.

    ``h``, ``c`` (B, T+1, H) hold the states h_0 .. h_T and c_0 .. c_T; ``gates`` (B, T, 4H) holds the gate
    values [i, f, g, o] of every step; ``m`` (B, T, H) holds φ(c_t).
    """

    params: dict[str, Array]
    x: Array
    h: Array
    c: Array
    gates: Array
    m: Array
    act: Activation
    ract: Activation
    cell: str = "lstm"


def lstm_forward(
    x: Array,
    params: dict[str, Array],
    h0: Array,
    c0: Array,
    activation: str = "tanh",
    recurrent_activation: str = "sigmoid",
) -> tuple[Array, tuple[Array, Array], LSTMCache]:
    """Run the LSTM over a sequence.

    x (B, T, D), h0 (B, H), c0 (B, H) -> h_seq (B, T, H), (h_T, c_T) each (B, H), and an :class:`LSTMCache`.
    """
    W_xh, W_hh, b_xh, b_hh = params["W_xh"], params["W_hh"], params["b_xh"], params["b_hh"]
    act, ract = get_activation(activation), get_activation(recurrent_activation)
    B, T, _ = x.shape
    H = W_hh.shape[1]
    h, c = np.zeros((B, T + 1, H)), np.zeros((B, T + 1, H))
    h[:, 0], c[:, 0] = h0, c0
    gates, m = np.zeros((B, T, 4 * H)), np.zeros((B, T, H))
    for t in range(T):
        a = x[:, t] @ W_xh.T + b_xh + h[:, t] @ W_hh.T + b_hh  # a_t (B, 4H)
        i, f, o = ract.f(a[:, :H]), ract.f(a[:, H : 2 * H]), ract.f(a[:, 3 * H :])
        g = act.f(a[:, 2 * H : 3 * H])
        c[:, t + 1] = f * c[:, t] + i * g  # c_t = f ⊙ c_{t-1} + i ⊙ g
        m[:, t] = act.f(c[:, t + 1])
        h[:, t + 1] = o * m[:, t]  # h_t = o ⊙ φ(c_t)
        gates[:, t] = np.concatenate([i, f, g, o], axis=1)
    state_T = (h[:, T].copy(), c[:, T].copy())
    return h[:, 1:].copy(), state_T, LSTMCache(params, x, h, c, gates, m, act, ract)


def lstm_backward(cache: LSTMCache, dh_seq: Array, dh_T: Array, dc_T: Array) -> dict[str, Array]:
    """BPTT for the LSTM.

    dh_seq (B, T, H) is dL/dh_t from the outputs; dh_T, dc_T (B, H) are dL/dh_T, dL/dc_T from the final state.
    Returns gradients W_xh, W_hh, b_xh, b_hh, x (B, T, D), h0 (B, H), c0 (B, H).
    """
    p, x, h, c, act, ract = cache.params, cache.x, cache.h, cache.c, cache.act, cache.ract
    W_xh, W_hh = p["W_xh"], p["W_hh"]
    T, H = x.shape[1], W_hh.shape[1]
    grads = {k: np.zeros_like(p[k]) for k in ("W_xh", "W_hh", "b_xh", "b_hh")}
    dx = np.zeros_like(x)
    dh_next, dc_next = dh_T.copy(), dc_T.copy()
    for t in reversed(range(T)):
        gt = cache.gates[:, t]
        i, f, g, o = gt[:, :H], gt[:, H : 2 * H], gt[:, 2 * H : 3 * H], gt[:, 3 * H :]
        m = cache.m[:, t]  # φ(c_t)
        dh = dh_seq[:, t] + dh_next  # delta_t = dL/dh_t
        do = dh * m  # h_t = o ⊙ φ(c_t)
        dc = dc_next + dh * o * act.df(m)  # dL/dc_t: through c_{t+1} (dc_next) and through h_t
        di = dc * g  # c_t = f ⊙ c_{t-1} + i ⊙ g
        dg = dc * i
        df = dc * c[:, t]
        dc_next = dc * f  # dL/dc_{t-1} = dc_t ⊙ f  (the additive cell path)
        # da_t (B, 4H): through σ for i, f, o and φ for g, in torch's block order
        da = np.concatenate([di * ract.df(i), df * ract.df(f), dg * act.df(g), do * ract.df(o)], axis=1)
        grads["W_xh"] += da.T @ x[:, t]
        grads["W_hh"] += da.T @ h[:, t]
        grads["b_xh"] += da.sum(0)
        grads["b_hh"] += da.sum(0)
        dx[:, t] = da @ W_xh
        dh_next = da @ W_hh  # dL/dh_{t-1} through the gates
    return {**grads, "x": dx, "h0": dh_next, "c0": dc_next}
