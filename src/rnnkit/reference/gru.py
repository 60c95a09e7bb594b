"""GRU, both conventions: forward pass and backpropagation through time.

Shapes: B batch, T steps, D input features, H hidden units; torch.nn's layout with the three gate blocks
stacked along the first axis in the order r, z, n:

    W_xh (3H, D) = [W_xr; W_xz; W_xn]   W_hh (3H, H) = [W_hr; W_hz; W_hn]   b_xh, b_hh (3H,)

    r = σ(W_xr x_t + b_xr + W_hr h_{t-1} + b_hr)
    z = σ(W_xz x_t + b_xz + W_hz h_{t-1} + b_hz)
    n = φ(W_xn x_t + b_xn + r ⊙ (W_hn h_{t-1} + b_hn))      reset_after=True  (torch, cuDNN, Keras default)
    n = φ(W_xn x_t + b_xn + W_hn (r ⊙ h_{t-1}) + b_hn)      reset_after=False (Cho et al. 2014)
    h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}

σ is ``recurrent_activation`` (default sigmoid) and φ is ``activation`` (default tanh).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .activations import Activation, get_activation

Array = np.ndarray


@dataclass
class GRUCache:
    """What :func:`gru_backward` needs.

    ``h`` (B, T+1, H) holds h_0 .. h_T; ``gates`` (B, T, 3H) holds [r, z, n] of every step; ``hn`` (B, T, H)
    holds W_hn h_{t-1} + b_hn (used only when ``reset_after``).
    """

    params: dict[str, Array]
    x: Array
    h: Array
    gates: Array
    hn: Array
    act: Activation
    ract: Activation
    reset_after: bool
    cell: str = "gru"


def gru_forward(
    x: Array,
    params: dict[str, Array],
    h0: Array,
    activation: str = "tanh",
    recurrent_activation: str = "sigmoid",
    reset_after: bool = True,
) -> tuple[Array, tuple[Array], GRUCache]:
    """Run the GRU over a sequence.

    x (B, T, D), h0 (B, H) -> h_seq (B, T, H), (h_T,) with h_T (B, H), and a :class:`GRUCache`.
    """
    W_xh, W_hh, b_xh, b_hh = params["W_xh"], params["W_hh"], params["b_xh"], params["b_hh"]
    act, ract = get_activation(activation), get_activation(recurrent_activation)
    B, T, _ = x.shape
    H = W_hh.shape[1]
    W_hn, b_hn = W_hh[2 * H :], b_hh[2 * H :]
    h = np.zeros((B, T + 1, H))
    h[:, 0] = h0
    gates, hn = np.zeros((B, T, 3 * H)), np.zeros((B, T, H))
    for t in range(T):
        hp = h[:, t]  # h_{t-1}
        ax = x[:, t] @ W_xh.T + b_xh  # W_x* x_t + b_x* (B, 3H)
        ah = hp @ W_hh[: 2 * H].T + b_hh[: 2 * H]  # W_h{r,z} h_{t-1} + b_h{r,z} (B, 2H)
        r, z = ract.f(ax[:, :H] + ah[:, :H]), ract.f(ax[:, H : 2 * H] + ah[:, H:])
        if reset_after:
            hn[:, t] = hp @ W_hn.T + b_hn
            n = act.f(ax[:, 2 * H :] + r * hn[:, t])
        else:
            n = act.f(ax[:, 2 * H :] + (r * hp) @ W_hn.T + b_hn)
        h[:, t + 1] = (1.0 - z) * n + z * hp  # h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}
        gates[:, t] = np.concatenate([r, z, n], axis=1)
    cache = GRUCache(params, x, h, gates, hn, act, ract, reset_after)
    return h[:, 1:].copy(), (h[:, T].copy(),), cache


def gru_backward(cache: GRUCache, dh_seq: Array, dh_T: Array) -> dict[str, Array]:
    """BPTT for the GRU (either convention, as recorded in the cache).

    dh_seq (B, T, H) is dL/dh_t from the outputs, dh_T (B, H) is dL/dh_T from the final state.
    Returns gradients W_xh, W_hh, b_xh, b_hh, x (B, T, D), h0 (B, H).
    """
    p, x, h, act, ract, reset_after = cache.params, cache.x, cache.h, cache.act, cache.ract, cache.reset_after
    W_xh, W_hh = p["W_xh"], p["W_hh"]
    T, H = x.shape[1], W_hh.shape[1]
    W_hn = W_hh[2 * H :]
    grads = {k: np.zeros_like(p[k]) for k in ("W_xh", "W_hh", "b_xh", "b_hh")}
    dx = np.zeros_like(x)
    dh_next = dh_T.copy()
    for t in reversed(range(T)):
        gt, hp = cache.gates[:, t], h[:, t]
        r, z, n = gt[:, :H], gt[:, H : 2 * H], gt[:, 2 * H :]
        dh = dh_seq[:, t] + dh_next  # delta_t = dL/dh_t
        dn = dh * (1.0 - z)  # h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}
        dz = dh * (hp - n)
        dhp = dh * z  # direct path h_{t-1} -> h_t
        dan = dn * act.df(n)  # gradient of the pre-activation of n
        if reset_after:  # n = φ(ax_n + r ⊙ hn), hn = W_hn h_{t-1} + b_hn
            dr = dan * cache.hn[:, t]
            dhn = dan * r  # gradient wrt hn, the n block of W_hh h_{t-1} + b_hh
        else:  # n = φ(ax_n + W_hn (r ⊙ h_{t-1}) + b_hn)
            drh = dan @ W_hn  # gradient wrt r ⊙ h_{t-1}
            dr = drh * hp
            dhp = dhp + drh * r
            dhn = dan
        dar, daz = dr * ract.df(r), dz * ract.df(z)
        dax = np.concatenate([dar, daz, dan], axis=1)  # gradient of W_xh x_t + b_xh (B, 3H)
        dah = np.concatenate([dar, daz, dhn], axis=1)  # gradient of the W_hh rows' outputs (+ b_hh) (B, 3H)
        grads["W_xh"] += dax.T @ x[:, t]
        grads["b_xh"] += dax.sum(0)
        grads["b_hh"] += dah.sum(0)
        if reset_after:
            grads["W_hh"] += dah.T @ hp
            dhp = dhp + dah @ W_hh
        else:  # the r, z rows multiply h_{t-1}, the n rows multiply r ⊙ h_{t-1}
            grads["W_hh"][: 2 * H] += dah[:, : 2 * H].T @ hp
            grads["W_hh"][2 * H :] += dan.T @ (r * hp)
            dhp = dhp + dah[:, : 2 * H] @ W_hh[: 2 * H]
        dx[:, t] = dax @ W_xh
        dh_next = dhp
    return {**grads, "x": dx, "h0": dh_next}
