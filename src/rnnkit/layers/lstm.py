"""LSTM (Hochreiter & Schmidhuber 1997, with forget gate): gate blocks i, f, g, o in torch's order.

    a_t = W_xh x_t + b_xh + W_hh h_{t-1} + b_hh            split into a_i, a_f, a_g, a_o
    i = σ(a_i)   f = σ(a_f)   g = φ(a_g)   o = σ(a_o)       σ = recurrent_activation, φ = activation
    c_t = f ⊙ c_{t-1} + i ⊙ g
    h_t = o ⊙ φ(c_t)
"""

from __future__ import annotations

import torch
from torch import nn

from rnnkit.layers.activations import Activation
from rnnkit.layers.cell import Cell
from rnnkit.layers.recurrent import Recurrent


class LSTMCell(Cell):
    """One LSTM step on state ``(h, c)``."""

    num_gates = 4
    num_states = 2
    keras_gate_order = (0, 1, 2, 3)  # Keras: i, f, c, o — the same order
    torch_class = nn.LSTM

    def fused_mode(self) -> str | None:
        default = self.activation_name == "tanh" and self.recurrent_activation_name == "sigmoid"
        return "LSTM" if default else None

    def step(self, gx, h_rec, state, w_hh_t, b_hh, ln_hh):  # noqa: D102 - see Cell.step
        a = gx + self.recurrent(h_rec, w_hh_t, b_hh, ln_hh)
        a_i, a_f, a_g, a_o = a.chunk(4, 1)
        i, f, o = self.rec_act(a_i), self.rec_act(a_f), self.rec_act(a_o)
        c = f * state[1] + i * self.act(a_g)
        return o * self.act(c), c


class LSTM(Recurrent):
    """LSTM layer with torch.nn.LSTM's weights and rnnkit's interface.

    With the default activations, no layer norm and no recurrent dropout (while training), it runs
    torch's fused kernel (oneDNN on CPU, cuDNN on GPU); otherwise rnnkit's own loop.
    """

    cell_class = LSTMCell

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
        bias: bool = True,
        batch_first: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            LSTMCell(hidden_size, activation, recurrent_activation),
            input_size, hidden_size, num_layers,
            bidirectional=bidirectional, dropout=dropout, recurrent_dropout=recurrent_dropout,
            layer_norm=layer_norm, bias=bias, batch_first=batch_first, device=device, dtype=dtype,
        )

    @classmethod
    def _torch_options(cls, module: nn.Module) -> dict[str, object]:
        if module.proj_size:
            raise ValueError("nn.LSTM with proj_size > 0 has no rnnkit equivalent: use proj_size=0")
        return {}
