"""Elman RNN: ``h_t = f(W_xh x_t + b_xh + W_hh h_{t-1} + b_hh)``."""

from __future__ import annotations

import torch
from torch import nn

from rnnkit.layers.activations import Activation
from rnnkit.layers.cell import Cell, Params
from rnnkit.layers.recurrent import Recurrent
from rnnkit.layers.registry import register_cell


class RNNCell(Cell):
    """One Elman step; ``activation`` is f (tanh, relu, sigmoid, identity or any callable)."""

    name = "rnn"
    num_gates = 1
    gate_names = ("candidate",)
    num_states = 1
    keras_gate_order = (0,)
    torch_class = nn.RNN
    native_on_cpu = True  # torch's CPU RNN steps through ATen ops; rnnkit's kernel is 1.3-1.8x faster
    reference = True

    def fused_mode(self) -> str | None:
        return {"tanh": "RNN_TANH", "relu": "RNN_RELU"}.get(self.activation_name)

    def scan_kind(self) -> str | None:
        return "rnn"

    def reference_options(self) -> dict[str, object]:
        return {"activation": self.activation_name}

    def options(self) -> dict[str, object]:
        return {"activation": self.activation_name}

    def step(self, gx, h_rec, state, p: Params):  # noqa: D102 - see Cell.step
        return (self.act(gx + self.recurrent(h_rec, p)),)


@register_cell
class RNN(Recurrent):
    """Elman RNN layer with torch.nn.RNN's weights and call (``out, h = rnn(x, h0)``).

    ``RNN(8, 16, activation="relu")`` equals ``torch.nn.RNN(8, 16, nonlinearity="relu", batch_first=True)``;
    ``nonlinearity=`` is accepted as torch.nn's spelling of ``activation``.
    """

    cell_class = RNNCell

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        *,
        activation: str | Activation = "tanh",
        bidirectional: bool = False,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        layer_norm: bool = False,
        bias: bool = True,
        batch_first: bool = True,
        merge_mode: str | None = "concat",
        engine: str = "auto",
        nonlinearity: str | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if nonlinearity is not None:
            if activation != "tanh" and activation != nonlinearity:
                raise ValueError(f"give activation or nonlinearity, not both ({activation!r}, {nonlinearity!r})")
            activation = nonlinearity
        super().__init__(
            RNNCell(hidden_size, activation),
            input_size, hidden_size, num_layers,
            bidirectional=bidirectional, dropout=dropout, recurrent_dropout=recurrent_dropout,
            layer_norm=layer_norm, bias=bias, batch_first=batch_first, merge_mode=merge_mode, engine=engine,
            device=device, dtype=dtype,
        )

    @classmethod
    def _torch_options(cls, module: nn.Module) -> dict[str, object]:
        return {"activation": module.nonlinearity}

    def _to_torch_options(self) -> dict[str, object]:
        return {"nonlinearity": self.cell.activation_name}
