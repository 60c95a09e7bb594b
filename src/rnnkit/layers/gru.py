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
from rnnkit.layers.cell import Cell, Params
from rnnkit.layers.recurrent import Recurrent
from rnnkit.layers.registry import register_cell


class GRUCell(Cell):
    """One GRU step; ``reset_after`` picks where the reset gate acts (see the module docstring)."""

    name = "gru"
    num_gates = 3
    gate_names = ("reset", "update", "new")
    sigmoid_gates = ("reset", "update")
    num_states = 1
    keras_gate_order = (1, 0, 2)  # Keras stores z, r, h; torch r, z, n
    torch_class = nn.GRU
    native_on_cpu = True  # torch's CPU GRU steps through ATen ops; rnnkit's kernel is 1.4-3x faster
    reference = True

    def __init__(
        self,
        hidden_size: int,
        activation: str | Activation = "tanh",
        recurrent_activation: str | Activation = "sigmoid",
        reset_after: bool = True,
    ) -> None:
        super().__init__(hidden_size, activation, recurrent_activation)
        self.reset_after = bool(reset_after)

    def fused_mode(self) -> str | None:
        default = self.activation_name == "tanh" and self.recurrent_activation_name == "sigmoid"
        return "GRU" if default and self.reset_after else None

    def scan_kind(self) -> str | None:
        return "gru" if self.reset_after else "gru_rb"

    def reference_options(self) -> dict[str, object]:
        return {**super().reference_options(), "reset_after": self.reset_after}

    def options(self) -> dict[str, object]:
        return {**super().options(), "reset_after": self.reset_after}

    def keras_bias_rows(self) -> int:
        """Keras stores the GRU bias as (2, 3H) (input and recurrent rows) with ``reset_after=True``."""
        return 2 if self.reset_after else 1

    def step(self, gx, h_rec, state, p: Params):  # noqa: D102 - see Cell.step
        h, H = state[0], self.hidden_size
        x_r, x_z, x_n = gx.chunk(3, 1)
        if self.reset_after:
            a_r, a_z, a_n = self.recurrent(h_rec, p).chunk(3, 1)
            r, z = self.rec_act(x_r + a_r), self.rec_act(x_z + a_z)
            n = self.act(x_n + r * a_n)
        else:
            a_r, a_z = self.recurrent(h_rec, p, slice(0, 2 * H)).chunk(2, 1)
            r, z = self.rec_act(x_r + a_r), self.rec_act(x_z + a_z)
            n = self.act(x_n + self.recurrent(r * h_rec, p, slice(2 * H, 3 * H)))
        return (n + z * (h - n),)

    def gates(self, gx, h, p: Params) -> dict[str, torch.Tensor]:
        H = self.hidden_size
        a = self.recurrent(h, p, slice(0, 2 * H)) if not self.reset_after else self.recurrent(h, p)[:, : 2 * H]
        a_r, a_z = (gx[:, : 2 * H] + a).chunk(2, 1)
        return {"reset": self.rec_act(a_r), "update": self.rec_act(a_z)}


@register_cell
class GRU(Recurrent):
    """GRU layer with torch.nn.GRU's weights and call (``out, h = gru(x, h0)``).

    ``reset_after=True`` with default activations can run torch's fused kernel; ``reset_after=False``
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
        merge_mode: str | None = "concat",
        engine: str = "auto",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            GRUCell(hidden_size, activation, recurrent_activation, reset_after),
            input_size, hidden_size, num_layers,
            bidirectional=bidirectional, dropout=dropout, recurrent_dropout=recurrent_dropout,
            layer_norm=layer_norm, bias=bias, batch_first=batch_first, merge_mode=merge_mode, engine=engine,
            device=device, dtype=dtype,
        )
