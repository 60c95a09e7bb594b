"""IndRNN (Li et al. 2018, "Independently Recurrent Neural Network"): each unit recurs only on itself.

    h_t = f(W_xh x_t + b_xh + u ⊙ h_{t-1} + b_hh)          u: a vector (H,), not a matrix

With |u| bounded, the gradient through time of unit j is a product of u_j f'(·) terms alone, so it neither
vanishes nor explodes faster than |u_j|^T: the paper bounds |u| by ``max_abs`` (for example 2^(1/T) for a
sequence of T steps) and reports the adding problem solved to T = 5000. Here ``weight_hh_l{k}`` holds u; the
bound is applied in the step (a clamp), so the weights a user loads or an optimiser moves past it act as the
bound. The default bound is 1: a relu state then grows at most linearly in T (unbounded, a u_j > 1 makes it
grow as u_j^T, and training on long sequences diverges); ``max_abs=None`` lifts it. rnnkit's native kernel runs
it on the CPU (one fused pass forward and one backward); the autograd engine elsewhere, and for export.
"""

from __future__ import annotations

import math

import torch

from rnnkit.layers import native
from rnnkit.layers.activations import Activation
from rnnkit.layers.cell import Cell, Params, ParamSpec
from rnnkit.layers.recurrent import Recurrent
from rnnkit.layers.registry import register_cell


class IndRNNCell(Cell):
    """One IndRNN step; ``activation`` is f (relu in the paper), ``max_abs`` the bound on |u|."""

    name = "indrnn"
    num_gates = 1
    gate_names = ("candidate",)
    num_states = 1
    reference = True

    def __init__(self, hidden_size: int, activation: str | Activation = "relu", max_abs: float | None = 1.0) -> None:
        super().__init__(hidden_size, activation)
        if max_abs is not None and not (isinstance(max_abs, int | float) and math.isfinite(max_abs) and max_abs > 0):
            raise ValueError(f"max_abs must be a positive number or None, got {max_abs!r}")
        self.max_abs = None if max_abs is None else float(max_abs)

    def param_specs(self, input_size: int, bias: bool, layer_norm: bool) -> list[ParamSpec]:
        H = self.hidden_size
        specs = [ParamSpec("weight_ih", (H, input_size)), ParamSpec("weight_hh", (H,), "indrnn")]
        if bias:
            specs += [ParamSpec("bias_ih", (H,)), ParamSpec("bias_hh", (H,), "zeros")]
        if layer_norm:
            specs += [ParamSpec("ln_ih_weight", (H,), "ones"), ParamSpec("ln_ih_bias", (H,), "zeros")]
        return specs

    def init_value(self, spec: ParamSpec, p: torch.Tensor) -> None:
        """u ~ U(0, 1), within the bound (the paper's initialisation for long sequences); the rest as any cell."""
        if spec.init != "indrnn":
            return super().init_value(spec, p)
        hi = 1.0 if self.max_abs is None else min(1.0, self.max_abs)
        p.uniform_(0.0, hi)

    def options(self) -> dict[str, object]:
        return {"activation": self.activation_name, "max_abs": self.max_abs}

    def reference_options(self) -> dict[str, object]:  # noqa: D102 - see Cell.reference_options
        return self.options()

    def bounded(self, p: Params) -> torch.Tensor:
        """u (H,) within ``max_abs``."""
        return p["weight_hh"] if self.max_abs is None else p["weight_hh"].clamp(-self.max_abs, self.max_abs)

    def native_supported(self) -> bool:  # noqa: D102 - see Cell.native_supported
        return self.activation_name in native.ACT_CODES

    def native(self, gx, state, p: Params, active, drop):  # noqa: D102 - see Cell.native
        hs, last = native.indrnn_scan(self.activation_name, gx, self.bounded(p), p["bias_hh"], drop, active,
                                      state[0])
        return (hs if active is None else hs * active.unsqueeze(2)), (last,)

    def retention(self, gx, h, p: Params) -> torch.Tensor:  # noqa: D102 - see Cell.retention
        u = self.bounded(p).detach()
        pre = torch.addcmul(gx.detach(), u, h.detach())
        if p["bias_hh"] is not None:
            pre = pre + p["bias_hh"].detach()
        with torch.enable_grad():  # f'(a_t) of any activation, elementwise, on a graph of this step alone
            a = pre.requires_grad_()
            (slope,) = torch.autograd.grad(self.act(a).sum(), a)
        return u.abs() * slope

    def step(self, gx, h_rec, state, p: Params):  # noqa: D102 - see Cell.step
        a = torch.addcmul(gx, self.bounded(p), h_rec)
        if p["bias_hh"] is not None:
            a = a + p["bias_hh"]
        return (self.act(a),)


@register_cell
class IndRNN(Recurrent):
    """IndRNN layer: ``out, h = IndRNN(8, 64, activation="relu", max_abs=2 ** (1 / 1000))(x, lengths=...)``.

    Stacked, bidirectional, lengths and state as every rnnkit layer; ``layer_norm`` normalises the input
    projection (the recurrent term is elementwise).
    """

    cell_class = IndRNNCell

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        *,
        activation: str | Activation = "relu",
        max_abs: float | None = 1.0,
        bidirectional: bool = False,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        layer_norm: bool = False,
        bias: bool = True,
        batch_first: bool = True,
        merge_mode: str | None = "concat",
        engine: str = "auto",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            IndRNNCell(hidden_size, activation, max_abs),
            input_size, hidden_size, num_layers,
            bidirectional=bidirectional, dropout=dropout, recurrent_dropout=recurrent_dropout,
            layer_norm=layer_norm, bias=bias, batch_first=batch_first, merge_mode=merge_mode, engine=engine,
            device=device, dtype=dtype,
        )
