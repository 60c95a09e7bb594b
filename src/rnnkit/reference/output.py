"""Output projection ``y_t = W_hy h_t + b_y`` applied at every step, and its backward pass.

Shapes: h_seq (B, T, H), W_hy (O, H), b_y (O,), y (B, T, O).
"""

from __future__ import annotations

import numpy as np

Array = np.ndarray


def output_forward(h_seq: Array, W_hy: Array, b_y: Array) -> tuple[Array, tuple[Array, Array]]:
    """h_seq (B, T, H) -> y (B, T, O) and the cache ``(h_seq, W_hy)`` for :func:`output_backward`."""
    h_seq = np.asarray(h_seq, dtype=np.float64)
    W_hy = np.asarray(W_hy, dtype=np.float64)
    y = h_seq @ W_hy.T + np.asarray(b_y, dtype=np.float64)
    return y, (h_seq, W_hy)


def output_backward(ycache: tuple[Array, Array], dy: Array) -> tuple[Array, Array, Array]:
    """dy (B, T, O) -> (dh_seq (B, T, H), dW_hy (O, H), db_y (O,)).

    The same W_hy is used at every step, so its gradient is a sum over batch and time:
    dW_hy = sum_{b,t} dy_t h_t^T and db_y = sum_{b,t} dy_t; each h_t receives W_hy^T dy_t.
    """
    h_seq, W_hy = ycache
    dy = np.asarray(dy, dtype=np.float64)
    dh_seq = dy @ W_hy
    dW_hy = np.einsum("bto,bth->oh", dy, h_seq)
    db_y = dy.sum(axis=(0, 1))
    return dh_seq, dW_hy, db_y
