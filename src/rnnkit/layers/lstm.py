"""LSTM (Hochreiter & Schmidhuber 1997, with forget gate): gate blocks i, f, g, o in torch's order.

    a_t = W_xh x_t + b_xh + W_hh h_{t-1} + b_hh            split into a_i, a_f, a_g, a_o
    i = σ(a_i)   f = σ(a_f)   g = φ(a_g)   o = σ(a_o)       σ = recurrent_activation, φ = activation
    c_t = f ⊙ c_{t-1} + i ⊙ g
    h_t = o ⊙ φ(c_t)                                         with proj_size P > 0: h_t = W_hr (o ⊙ φ(c_t))

With ``proj_size`` (Sak et al. 2014, torch.nn's option) h_t has P < H entries, W_hh is (4H, P) and the extra
``weight_hr_l{k}`` is (P, H); the cell state c_t keeps H.
"""

from __future__ import annotations

import torch
from torch import nn

from rnnkit.layers.activations import Activation
from rnnkit.layers.cell import Cell, Params, ParamSpec
from rnnkit.layers.recurrent import Recurrent
from rnnkit.layers.registry import register_cell


class LSTMCell(Cell):
    """One LSTM step on state ``(h, c)``."""

    name = "lstm"
    num_gates = 4
    gate_names = ("input", "forget", "cell", "output")
    sigmoid_gates = ("input", "forget", "output")
    num_states = 2
    keras_gate_order = (0, 1, 2, 3)  # Keras: i, f, c, o — the same order
    torch_class = nn.LSTM
    reference = True

    def __init__(self, hidden_size: int, activation: str | Activation = "tanh",
                 recurrent_activation: str | Activation = "sigmoid", proj_size: int = 0) -> None:
        super().__init__(hidden_size, activation, recurrent_activation)
        if not isinstance(proj_size, int) or isinstance(proj_size, bool) or not 0 <= proj_size < hidden_size:
            raise ValueError(f"proj_size must be an integer in [0, hidden_size={hidden_size}), got {proj_size!r}")
        self.proj_size = proj_size

    @property
    def output_size(self) -> int:
        return self.proj_size or self.hidden_size

    def state_sizes(self) -> tuple[int, ...]:
        return (self.output_size, self.hidden_size)

    def param_specs(self, input_size: int, bias: bool, layer_norm: bool) -> list[ParamSpec]:
        specs = super().param_specs(input_size, bias, layer_norm)
        if self.proj_size:  # torch.nn's flat order puts w_hr after the biases, before rnnkit's layer norm
            specs.insert(4 if bias else 2, ParamSpec("weight_hr", (self.proj_size, self.hidden_size)))
        return specs

    def fused_mode(self) -> str | None:
        default = self.activation_name == "tanh" and self.recurrent_activation_name == "sigmoid"
        return "LSTM" if default else None

    def scan_kind(self) -> str | None:
        return None if self.proj_size else "lstm"

    def options(self) -> dict[str, object]:
        return {**super().options(), "proj_size": self.proj_size}

    def step(self, gx, h_rec, state, p: Params):  # noqa: D102 - see Cell.step
        a = gx + self.recurrent(h_rec, p)
        a_i, a_f, a_g, a_o = a.chunk(4, 1)
        i, f, o = self.rec_act(a_i), self.rec_act(a_f), self.rec_act(a_o)
        c = f * state[1] + i * self.act(a_g)
        h = o * self.act(c)
        return (h if p.get("weight_hr") is None else h @ p["weight_hr"].t()), c

    def gates(self, gx, h, p: Params) -> dict[str, torch.Tensor]:
        a_i, a_f, _, a_o = (gx + self.recurrent(h, p)).chunk(4, 1)
        return {"input": self.rec_act(a_i), "forget": self.rec_act(a_f), "output": self.rec_act(a_o)}


@register_cell
class LSTM(Recurrent):
    """LSTM layer with torch.nn.LSTM's weights and call (``out, (h, c) = lstm(x, (h0, c0))``).

    With the default activations, no layer norm and no recurrent dropout (while training), it runs
    torch's fused kernel (oneDNN on CPU, cuDNN on GPU); otherwise rnnkit's own loop (see ``engine``).
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
        proj_size: int = 0,
        bias: bool = True,
        batch_first: bool = True,
        merge_mode: str | None = "concat",
        engine: str = "auto",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            LSTMCell(hidden_size, activation, recurrent_activation, proj_size),
            input_size, hidden_size, num_layers,
            bidirectional=bidirectional, dropout=dropout, recurrent_dropout=recurrent_dropout,
            layer_norm=layer_norm, bias=bias, batch_first=batch_first, merge_mode=merge_mode, engine=engine,
            device=device, dtype=dtype,
        )

    @property
    def proj_size(self) -> int:
        return self.cell.proj_size

    @classmethod
    def _torch_options(cls, module: nn.Module) -> dict[str, object]:
        return {"proj_size": module.proj_size}

    def _to_torch_options(self) -> dict[str, object]:
        return {"proj_size": self.cell.proj_size}
