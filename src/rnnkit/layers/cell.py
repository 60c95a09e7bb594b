"""The contract every recurrent cell follows: one time step, and everything the layer needs to know of it.

A cell is the math of one step (Keras' *cell*) plus its identity: the parameters it needs per layer and
direction (names, shapes, initialisation), its gate names, the NumPy reference equations it matches, and
which engines can run it. :class:`rnnkit.layers.recurrent.Recurrent` creates the parameters the cell
declares, in torch.nn's layout, and runs the cell over time, layers and directions; it never tests a cell's
type. A cell object holds options (hidden size, activations), no weights, so one serves every layer and
direction.

Shapes, for batch size B, hidden size H, G gate blocks and output size P (= H unless the cell projects):

* ``gx``     (B, G*H)  input projection of this step, ``W_xh x_t + b_xh`` (computed for all steps at once)
* ``h_rec``  (B, P)    ``h_{t-1}`` as the recurrent matrix sees it (variational dropout already applied)
* ``state``  tuple of (B, size) tensors, sizes :meth:`Cell.state_sizes`; ``state[0]`` is ``h_{t-1}``
* ``p``      this layer and direction's parameters by their un-suffixed names (``"weight_hh"``, ``"bias_hh"``,
             ``"ln_hh_weight"``, ...), ``None`` for those the configuration does not have

To add a cell type, write one file: a :class:`Cell` subclass with ``name``, ``step`` and (when it has more
parameters than W_xh, W_hh and the biases) ``param_specs``, a thin layer class that hands it to
:class:`~rnnkit.layers.recurrent.Recurrent`, and ``@register_cell`` on that class (``rnnkit.layers.CELLS``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from rnnkit.layers.activations import Activation, resolve

LN_EPS = 1e-5
Params = dict[str, torch.Tensor | None]


def gate_norm(a: torch.Tensor, gain: torch.Tensor, shift: torch.Tensor, gates: int) -> torch.Tensor:
    """Layer-normalise each gate block of ``a`` (..., gates*H) separately, then scale and shift.

    Each gate's H pre-activations get mean 0 and variance 1 (Ba et al., 2016), so no gate can drift
    into saturation as a whole; ``gain`` and ``shift`` have shape (gates*H,).
    """
    h = a.shape[-1] // gates
    if torch.compiler.is_exporting():  # no reshape: its symbolic batch size would break an exported Scan body
        out = torch.cat([F.layer_norm(block, (h,), eps=LN_EPS) for block in a.chunk(gates, -1)], -1)
    else:
        out = F.layer_norm(a.unflatten(-1, (gates, h)), (h,), eps=LN_EPS).flatten(-2)  # ~2x faster than group_norm
    return torch.addcmul(shift, out, gain)


@dataclass(frozen=True)
class ParamSpec:
    """One parameter a cell needs per layer and direction: ``name`` without the ``_l{k}{sfx}`` suffix (torch.nn's
    ``weight_ih``, ...), its shape, and its initialisation: ``"uniform"`` (torch.nn's U(-1/sqrt(H), 1/sqrt(H))),
    ``"ones"``, ``"zeros"``, or a name the cell's :meth:`Cell.init_value` knows."""

    name: str
    shape: tuple[int, ...]
    init: str = "uniform"


class Cell:
    """Base class: one step of a recurrent cell and its identity.

    Class attributes a subclass sets:
        name: the registry key (``"lstm"``), also the NumPy reference's cell name when ``reference`` is True.
        num_gates: G, the number of H-sized blocks stacked in ``W_xh``/``W_hh`` (torch order).
        gate_names: a name for each block (``("reset", "update", "new")``).
        sigmoid_gates: the blocks that are gates in (0, 1) (for diagnostics' saturation statistics).
        num_states: 1 for ``(h,)``, 2 for ``(h, c)``.
        keras_gate_order: for each torch block, the index of the matching Keras block.
        torch_class: the ``torch.nn`` module with the same weight layout, for ``from_torch``/``to_torch``.
        native_on_cpu: on CPU, prefer rnnkit's native kernel over torch's fused one even where both can run:
            True for the GRU and RNN, whose torch CPU kernels step through ATen ops and are 1.3-3x slower than
            rnnkit's; False for the LSTM, whose oneDNN kernel is as fast.
        reference: whether ``rnnkit.reference`` has this cell (``reference_options`` gives its options).
        parallel: whether :meth:`sequence` (a whole sequence at once, for a recurrence linear in h) exists.
    """

    name: ClassVar[str] = "cell"
    num_gates: ClassVar[int] = 1
    gate_names: ClassVar[tuple[str, ...]] = ("candidate",)
    sigmoid_gates: ClassVar[tuple[str, ...]] = ()
    num_states: ClassVar[int] = 1
    keras_gate_order: ClassVar[tuple[int, ...]] = (0,)
    torch_class: ClassVar[type[torch.nn.Module] | None] = None
    native_on_cpu: ClassVar[bool] = False
    reference: ClassVar[bool] = False
    parallel: ClassVar[bool] = False  # True: ``sequence`` solves a linear recurrence at once (the parallel engine)

    def __init__(
        self,
        hidden_size: int,
        activation: str | Activation = "tanh",
        recurrent_activation: str | Activation = "sigmoid",
    ) -> None:
        self.hidden_size = hidden_size
        self.activation_name, self.act = resolve(activation)
        self.recurrent_activation_name, self.rec_act = resolve(recurrent_activation)

    # ------------------------------------------------------------------ identity
    @property
    def output_size(self) -> int:
        """P, the size of ``h_t`` (what the layer outputs per direction)."""
        return self.hidden_size

    def state_sizes(self) -> tuple[int, ...]:
        """The size of each state tensor, ``(P,)`` or ``(P, H)`` for ``(h, c)``."""
        return (self.output_size,) * self.num_states

    def param_specs(self, input_size: int, bias: bool, layer_norm: bool) -> list[ParamSpec]:
        """The parameters of one layer and direction reading ``input_size`` features, in torch.nn's order (what
        ``_VF`` kernels expect first: w_ih, w_hh, b_ih, b_hh), then rnnkit's extras (layer norm)."""
        gh = self.num_gates * self.hidden_size
        specs = [ParamSpec("weight_ih", (gh, input_size)), ParamSpec("weight_hh", (gh, self.output_size))]
        if bias:
            specs += [ParamSpec("bias_ih", (gh,)), ParamSpec("bias_hh", (gh,))]
        if layer_norm:
            specs += [ParamSpec(f"ln_{side}_{what}", (gh,), "ones" if what == "weight" else "zeros")
                      for side in ("ih", "hh") for what in ("weight", "bias")]
        return specs

    def init_bound(self) -> float:
        """The bound of the ``"uniform"`` initialisation: torch.nn's 1/sqrt(H)."""
        return 1.0 / math.sqrt(self.hidden_size)

    def init_value(self, spec: ParamSpec, p: torch.Tensor) -> None:
        """Initialise parameter ``p`` as ``spec.init`` says (in place, without grad); a cell with an init of its own
        (IndRNN's recurrent vector) overrides this."""
        if spec.init == "uniform":
            bound = self.init_bound()
            p.uniform_(-bound, bound)
        elif spec.init in ("ones", "zeros"):
            p.fill_(1.0 if spec.init == "ones" else 0.0)
        else:
            raise ValueError(f"{type(self).__name__} declares init {spec.init!r} for {spec.name} but does not "
                             "implement it (override Cell.init_value)")

    def fused_mode(self) -> str | None:
        """The torch fused-kernel mode (``"LSTM"``, ``"GRU"``, ``"RNN_TANH"``, ``"RNN_RELU"``) that computes
        exactly this cell, or None when torch has no kernel for it."""
        return None

    def scan_kind(self) -> str | None:
        """The recurrence the hand-written BPTT engines (the Python scan and the native kernel) know this cell as
        (``"lstm"``, ``"gru"``, ``"gru_rb"``, ``"rnn"``), or None: then only autograd runs it."""
        return None

    def native_supported(self) -> bool:
        """Whether :meth:`native` runs this cell: a kernel of its own in rnnkit's native library (the diagonal
        recurrences minGRU, minLSTM, IndRNN), apart from the LSTM/GRU/RNN scan that ``scan_kind`` selects."""
        return False

    def native(self, gx: torch.Tensor, state: tuple[torch.Tensor, ...], p: Params, active: torch.Tensor | None,
               drop: torch.Tensor | None) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """The whole sequence through the cell's own native kernel (see :meth:`native_supported`): gx (B, T, G*H)
        after the input-side layer norm, ``active`` (B, T) bool or None, ``drop`` (B, P) the recurrent-dropout
        mask or None; returns outputs (B, T, P) and the final state."""
        raise NotImplementedError(f"{type(self).__name__} has no native kernel of its own")

    def keras_bias_rows(self) -> int:
        """Rows of the Keras bias array: 1, or 2 where Keras keeps separate input and recurrent biases."""
        return 1

    def reference_options(self) -> dict[str, object]:
        """Keyword options of ``rnnkit.reference.forward`` for this cell."""
        return {"activation": self.activation_name, "recurrent_activation": self.recurrent_activation_name}

    def options(self) -> dict[str, object]:
        """The cell's constructor options, for ``repr`` and config files."""
        return {"activation": self.activation_name, "recurrent_activation": self.recurrent_activation_name}

    # ------------------------------------------------------------------ math
    def input_projection(self, x: torch.Tensor, p: Params) -> torch.Tensor:
        """``W_xh x + b_xh`` for all steps at once: x (B, T, D) -> (B, T, G*H)."""
        return F.linear(x, p["weight_ih"], p["bias_ih"])

    def recurrent(self, h: torch.Tensor, p: Params, rows: slice | None = None) -> torch.Tensor:
        """``W_hh h + b_hh`` (B, G*H), layer-normalised per gate when the layer has layer norm; ``rows`` limits it
        to some gate blocks (a slice of the G*H rows)."""
        w, b, g, s = p["weight_hh"], p["bias_hh"], p.get("ln_hh_weight"), p.get("ln_hh_bias")
        if rows is not None:
            w, b = w[rows], (None if b is None else b[rows])
            g, s = (None, None) if g is None else (g[rows], s[rows])
        a = h @ w.t() if b is None else torch.addmm(b, h, w.t())
        if g is not None:
            a = gate_norm(a, g, s, w.shape[0] // self.hidden_size)
        return a

    def step(self, gx: torch.Tensor, h_rec: torch.Tensor, state: tuple[torch.Tensor, ...],
             p: Params) -> tuple[torch.Tensor, ...]:
        """Advance one step; return the new state tuple, whose first entry is ``h_t`` (B, P)."""
        raise NotImplementedError

    def retention(self, gx: torch.Tensor, h: torch.Tensor, p: Params) -> torch.Tensor | None:
        """For a diagonal recurrence (each unit recurs on itself alone: minGRU, minLSTM, IndRNN), ∂h_t/∂h_{t-1}
        per unit at one step (B, H): how much of its state (and of the gradient through it) a unit keeps. None
        for cells with a recurrent matrix, where that derivative is a matrix."""
        return None

    def gates(self, gx: torch.Tensor, h: torch.Tensor, p: Params) -> dict[str, torch.Tensor]:
        """The values of :attr:`sigmoid_gates` at one step (B, H) each, for diagnostics; ``{}`` for none."""
        return {}
