"""The contract every recurrent cell follows: one time step, weights passed in.

A cell is the math of one step (Keras' *cell*); :class:`rnnkit.layers.recurrent.Recurrent` owns the
weights, in torch.nn's layout, and runs the cell over time, layers and directions. Cells hold no
parameters, so one cell object serves every layer and direction of a layer.

Shapes, for batch size B, hidden size H and G gate blocks:

* ``gx``     (B, G*H)  input projection of this step, ``W_xh x_t + b_xh`` (computed for all steps at once)
* ``h_rec``  (B, H)    ``h_{t-1}`` as the recurrent matrix sees it (variational dropout already applied)
* ``state``  tuple of (B, H) tensors, ``state[0]`` is ``h_{t-1}``
* ``w_hh_t`` (H, G*H)  the recurrent matrix ``W_hh`` transposed, ready for ``addmm``
* ``b_hh``   (G*H,) or None
* ``ln_hh``  ``(gain, shift)`` of shape (G*H,) each when layer norm is on, else None

To add a cell type, write one file: a :class:`Cell` subclass with ``step`` and a thin layer class
that hands it to :class:`~rnnkit.layers.recurrent.Recurrent`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rnnkit.layers.activations import Activation, resolve

LN_EPS = 1e-5


def gate_norm(a: torch.Tensor, gain: torch.Tensor, shift: torch.Tensor, gates: int) -> torch.Tensor:
    """Layer-normalise each gate block of ``a`` (..., gates*H) separately, then scale and shift.

    Each gate's H pre-activations get mean 0 and variance 1 (Ba et al., 2016), so no gate can drift
    into saturation as a whole; ``gain`` and ``shift`` have shape (gates*H,).
    """
    shape = a.shape
    h = shape[-1] // gates
    out = F.layer_norm(a.reshape(-1, gates, h), (h,), eps=LN_EPS)  # as F.group_norm, but ~2x faster on CPU
    return torch.addcmul(shift, out.view(shape), gain)


class Cell:
    """Base class: one step of a recurrent cell.

    Class attributes a subclass sets:
        num_gates: G, the number of H-sized blocks stacked in ``W_xh``/``W_hh`` (torch order).
        num_states: 1 for ``(h,)``, 2 for ``(h, c)``.
        keras_gate_order: for each torch block, the index of the matching Keras block.
        torch_class: the ``torch.nn`` module with the same weight layout, for ``from_torch``/``to_torch``.
        native_on_cpu: on CPU, run rnnkit's native kernel (:mod:`rnnkit.layers.native`) even where torch's
            fused kernel could: True for the GRU and RNN, whose torch CPU kernels step through ATen ops and are
            1.3-3x slower than rnnkit's; False for the LSTM, whose oneDNN kernel is as fast.
    """

    num_gates: int = 1
    num_states: int = 1
    keras_gate_order: tuple[int, ...] = (0,)
    torch_class: type[torch.nn.Module] | None = None
    native_on_cpu: bool = False

    def __init__(
        self,
        hidden_size: int,
        activation: str | Activation = "tanh",
        recurrent_activation: str | Activation = "sigmoid",
    ) -> None:
        self.hidden_size = hidden_size
        self.activation_name, self.act = resolve(activation)
        self.recurrent_activation_name, self.rec_act = resolve(recurrent_activation)

    def fused_mode(self) -> str | None:
        """The torch fused-kernel mode (``"LSTM"``, ``"GRU"``, ``"RNN_TANH"``, ``"RNN_RELU"``) that computes
        exactly this cell, or None when only rnnkit's own loop can."""
        return None

    def step(
        self,
        gx: torch.Tensor,
        h_rec: torch.Tensor,
        state: tuple[torch.Tensor, ...],
        w_hh_t: torch.Tensor,
        b_hh: torch.Tensor | None,
        ln_hh: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> tuple[torch.Tensor, ...]:
        """Advance one step; return the new state tuple, whose first entry is ``h_t`` (B, H)."""
        raise NotImplementedError

    def recurrent(
        self,
        h: torch.Tensor,
        w_hh_t: torch.Tensor,
        b_hh: torch.Tensor | None,
        ln_hh: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> torch.Tensor:
        """``W_hh h + b_hh`` (B, G*H), layer-normalised per gate when ``ln_hh`` is given."""
        a = h @ w_hh_t if b_hh is None else torch.addmm(b_hh, h, w_hh_t)
        if ln_hh is not None:
            a = gate_norm(a, ln_hh[0], ln_hh[1], w_hh_t.shape[1] // self.hidden_size)
        return a

    def options(self) -> dict[str, object]:
        """The cell's constructor options, for ``repr`` and config files."""
        return {"activation": self.activation_name, "recurrent_activation": self.recurrent_activation_name}
