"""GRU (Cho et al. 2014): gate blocks r, z, n in torch's order.

    r = σ(W_xr x_t + b_xr + W_hr h_{t-1} + b_hr)
    z = σ(W_xz x_t + b_xz + W_hz h_{t-1} + b_hz)
    reset_after=True  (torch, cuDNN, Keras 2.3+):  n = φ(W_xn x_t + b_xn + r ⊙ (W_hn h_{t-1} + b_hn))
    reset_after=False (Cho et al. 2014):           n = φ(W_xn x_t + b_xn + W_hn (r ⊙ h_{t-1}) + b_hn)
    h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}
"""

from __future__ import annotations

import torch
from torch import nn

from rnnkit.layers.activations import Activation
from rnnkit.layers.cell import Cell, gate_norm
from rnnkit.layers.recurrent import Recurrent


class GRUCell(Cell):
    """One GRU step; ``reset_after`` picks where the reset gate acts (see the module docstring)."""

    num_gates = 3
    num_states = 1
    keras_gate_order = (1, 0, 2)  # Keras stores z, r, h; torch r, z, n
    torch_class = nn.GRU
    native_on_cpu = True  # torch's CPU GRU steps through ATen ops; rnnkit's kernel is 1.4-3x faster

    def __init__(
        self,
        hidden_size: int,
        activation: str | Activation = "tanh",
        recurrent_activation: str | Activation = "sigmoid",
        reset_after: bool = True,
    ) -> None:
        super().__init__(hidden_size, activation, recurrent_activation)
        self.reset_after = reset_after

    def fused_mode(self) -> str | None:
        default = self.activation_name == "tanh" and self.recurrent_activation_name == "sigmoid"
        return "GRU" if default and self.reset_after else None

    def step(self, gx, h_rec, state, w_hh_t, b_hh, ln_hh):  # noqa: D102 - see Cell.step
        h, H = state[0], self.hidden_size
        x_r, x_z, x_n = gx.chunk(3, 1)
        if self.reset_after:
            a_r, a_z, a_n = self.recurrent(h_rec, w_hh_t, b_hh, ln_hh).chunk(3, 1)
            r, z = self.rec_act(x_r + a_r), self.rec_act(x_z + a_z)
            n = self.act(x_n + r * a_n)
        else:
            b_rz, b_n = (None, None) if b_hh is None else (b_hh[: 2 * H], b_hh[2 * H :])
            ln_rz = None if ln_hh is None else (ln_hh[0][: 2 * H], ln_hh[1][: 2 * H])
            a_r, a_z = self.recurrent(h_rec, w_hh_t[:, : 2 * H], b_rz, ln_rz).chunk(2, 1)
            r, z = self.rec_act(x_r + a_r), self.rec_act(x_z + a_z)
            a_n = (r * h_rec) @ w_hh_t[:, 2 * H :]
            if b_n is not None:
                a_n = a_n + b_n
            if ln_hh is not None:
                a_n = gate_norm(a_n, ln_hh[0][2 * H :], ln_hh[1][2 * H :], 1)
            n = self.act(x_n + a_n)
        return (n + z * (h - n),)

    def options(self) -> dict[str, object]:
        return {**super().options(), "reset_after": self.reset_after}


class GRU(Recurrent):
    """GRU layer with torch.nn.GRU's weights and rnnkit's interface.

    ``reset_after=True`` with default activations runs torch's fused kernel; ``reset_after=False``
    (the original formulation, Keras' option of the same name) runs rnnkit's own loop.
    """

    cell_class = GRUCell

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        *,
        bidirectional: bool = False,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        activation: str | Activation = "tanh",
        recurrent_activation: str | Activation = "sigmoid",
        layer_norm: bool = False,
        reset_after: bool = True,
        bias: bool = True,
        batch_first: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            GRUCell(hidden_size, activation, recurrent_activation, reset_after),
            input_size, hidden_size, num_layers,
            bidirectional=bidirectional, dropout=dropout, recurrent_dropout=recurrent_dropout,
            layer_norm=layer_norm, bias=bias, batch_first=batch_first, device=device, dtype=dtype,
        )
