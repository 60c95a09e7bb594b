"""One entry point for the six cells: :func:`init_params`, :func:`forward`, :func:`backward`.

Parameters live in a dict of float64 arrays in torch.nn's layout (G gate blocks stacked along the first axis,
G = 1 for "rnn", 4 for "lstm" (i, f, g, o), 3 for "gru" (r, z, n)):

    W_xh (G*H, D) = weight_ih   W_hh (G*H, H) = weight_hh   b_xh (G*H,) = bias_ih   b_hh (G*H,) = bias_hh
    W_hy (O, H), b_y (O,)       optional output projection

The diagonal cells (:mod:`.diagonal`) differ: "indrnn" has W_hh (H,), a vector; "mingru" (G = 2: z, h̃) and
"minlstm" (G = 3: f, i, h̃) have W_xh and b_xh only.
"""

from __future__ import annotations

import numpy as np

from .diagonal import DiagonalCache, diagonal_backward, diagonal_forward
from .gru import GRUCache, gru_backward, gru_forward
from .lstm import LSTMCache, lstm_backward, lstm_forward
from .rnn import RNNCache, rnn_backward, rnn_forward

Array = np.ndarray
Cache = RNNCache | LSTMCache | GRUCache | DiagonalCache
State = tuple[Array, ...]
GATES = {"rnn": 1, "lstm": 4, "gru": 3, "indrnn": 1, "mingru": 2, "minlstm": 3}
DIAGONAL = ("indrnn", "mingru", "minlstm")


def _check_cell(cell: str) -> None:
    if cell not in GATES:
        raise ValueError(f"unknown cell {cell!r}; expected one of {sorted(GATES)}")


def _states(cell: str, states: tuple[Array | None, ...] | None, B: int, H: int, what: str) -> list[Array]:
    """A state tuple (or None, or None entries, meaning zeros) as a list of float64 (B, H) arrays."""
    n = 2 if cell == "lstm" else 1
    states = (None,) * n if states is None else tuple(states)
    if len(states) != n:
        raise ValueError(f"{cell} expects {what} as a tuple of {n} (B, H) arrays, got {len(states)}")
    states = [np.zeros((B, H)) if s is None else np.asarray(s, dtype=np.float64) for s in states]
    return [np.broadcast_to(s, (B, H)) for s in states]


def init_params(
    cell: str,
    input_size: int,
    hidden_size: int,
    rng: np.random.Generator | int | None = None,
    output_size: int | None = None,
) -> dict[str, Array]:
    """Draw parameters like torch.nn does: every entry uniform in [-1/sqrt(H), 1/sqrt(H)].

    Returns W_xh (G*H, D), W_hh (G*H, H), b_xh (G*H,), b_hh (G*H,), plus W_hy (O, H) and b_y (O,) when
    ``output_size`` is given. ``rng`` is a Generator or a seed.
    """
    _check_cell(cell)
    rng = np.random.default_rng(rng)
    GH, D, H = GATES[cell] * hidden_size, input_size, hidden_size
    k = 1.0 / np.sqrt(H)
    shapes = {"W_xh": (GH, D), "W_hh": (GH, H), "b_xh": (GH,), "b_hh": (GH,)}
    if cell == "indrnn":
        shapes["W_hh"] = (H,)
    elif cell in DIAGONAL:
        del shapes["W_hh"], shapes["b_hh"]
    if output_size is not None:
        shapes |= {"W_hy": (output_size, H), "b_y": (output_size,)}
    return {name: rng.uniform(-k, k, size=shape) for name, shape in shapes.items()}


def forward(
    cell: str,
    x: Array,
    params: dict[str, Array],
    state0: State | None = None,
    *,
    activation: str = "tanh",
    recurrent_activation: str = "sigmoid",
    reset_after: bool = True,
    max_abs: float | None = None,
) -> tuple[Array, State, Cache]:
    """Run ``cell`` over the batch of sequences ``x`` (B, T, D).

    ``state0`` is ``(h0,)`` for rnn/gru and ``(h0, c0)`` for lstm, each (B, H); None means zeros.
    ``activation`` is f of the RNN, and φ (candidate and cell output) of the LSTM/GRU;
    ``recurrent_activation`` is σ of the LSTM/GRU gates (ignored by the RNN); ``reset_after`` picks the GRU
    convention; ``max_abs`` bounds IndRNN's |u|. IndRNN's ``activation`` is f (pass "relu" for the paper's);
    minGRU and minLSTM take no options.
    Everything is cast to float64.

    Returns ``h_seq`` (B, T, H), ``state_T`` (a tuple like state0) and a cache for :func:`backward`.
    """
    _check_cell(cell)
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 3:
        raise ValueError(f"x must be (B, T, D), got shape {x.shape}")
    p = {k: np.asarray(params[k], dtype=np.float64) for k in ("W_xh", "W_hh", "b_xh", "b_hh") if k in params}
    B, H = x.shape[0], p["W_xh"].shape[0] // GATES[cell]
    state0 = _states(cell, state0, B, H, "state0")
    if cell in DIAGONAL:
        return diagonal_forward(cell, x, p, state0[0], activation, max_abs)
    if cell == "rnn":
        return rnn_forward(x, p, state0[0], activation)
    if cell == "lstm":
        return lstm_forward(x, p, state0[0], state0[1], activation, recurrent_activation)
    return gru_forward(x, p, state0[0], activation, recurrent_activation, reset_after)


def backward(cache: Cache, dh_seq: Array | None, dstate_T: State | None = None) -> dict[str, Array]:
    """Backpropagation through time for the forward pass that produced ``cache``.

    ``dh_seq`` (B, T, H) is the upstream gradient dL/dh_t of every output (None means zeros); ``dstate_T`` is
    the upstream gradient of the final state, a tuple like ``state_T`` (None means zeros).
    Returns a dict with "W_xh", "W_hh", "b_xh", "b_hh" (shapes of the parameters), "x" (B, T, D), "h0" (B, H)
    and, for the LSTM, "c0" (B, H).
    """
    B, T = cache.x.shape[:2]
    H = cache.h.shape[2]
    dh_seq = np.zeros((B, T, H)) if dh_seq is None else np.asarray(dh_seq, dtype=np.float64)
    ds = _states(cache.cell, dstate_T, B, H, "dstate_T")
    if cache.cell in DIAGONAL:
        return diagonal_backward(cache, dh_seq, ds[0])
    if cache.cell == "rnn":
        return rnn_backward(cache, dh_seq, ds[0])
    if cache.cell == "lstm":
        return lstm_backward(cache, dh_seq, ds[0], ds[1])
    return gru_backward(cache, dh_seq, ds[0])
