"""The generic recurrent layer: runs a :class:`~rnnkit.layers.cell.Cell` over time, layers and directions.

The call is torch.nn's: ``outputs, h_n = layer(input, hx=None, *, lengths=None)``, with ``input`` a (B, T, D)
tensor (``batch_first``, the default) or (T, B, D), an unbatched (T, D) tensor, or a ``PackedSequence``;
``hx`` the initial state, (layers*directions, B, H) — ``(h0, c0)`` for the LSTM — and ``lengths`` the true
length of each sequence, keyword-only. A packed input gives a packed output, an unbatched one unbatched
outputs and state.

Parameters are what the cell declares (:meth:`Cell.param_specs`), with torch.nn's names and layout per layer
``k`` and direction (suffix ``""`` or ``"_reverse"``)::

    weight_ih_l{k}{sfx}  (G*H, D_k)     weight_hh_l{k}{sfx}  (G*H, P)
    bias_ih_l{k}{sfx}    (G*H,)         bias_hh_l{k}{sfx}    (G*H,)
    weight_hr_l{k}{sfx}  (P, H)         (LSTM with proj_size = P > 0)
    ln_ih_weight_l{k}{sfx}, ln_ih_bias_l{k}{sfx}, ln_hh_weight_l{k}{sfx}, ln_hh_bias_l{k}{sfx}  (G*H,)
                                         (only with layer_norm=True)

with D_0 = input_size and D_k the merged size of layer k-1's outputs, so ``state_dict``s move to and from
torch.nn.

Five engines compute the same function (``engine=``; ``"auto"`` picks the fastest that can run):

* **fused**: torch's own kernel (oneDNN on CPU, cuDNN on GPU), for the cells torch.nn has
  (``Cell.fused_mode``) without layer norm and without recurrent dropout while training; lengths through a
  packed sequence.
* **native**: rnnkit's C++ kernel on the CPU (:mod:`rnnkit.layers.native`), for cells with a hand-written BPTT
  (``Cell.scan_kind``) and named activations; preferred over fused on the CPU where the cell says so
  (``Cell.native_on_cpu``: the GRU and RNN, whose torch CPU kernels are slower) and for every cell under CPU bf16
  autocast (the kernel's mixed mode: bf16 GEMMs, float32 states). minGRU, minLSTM and IndRNN
  have kernels of their own there (``Cell.native``: one fused pass over the sequence each way).
* **scan**: the same BPTT written with torch ops (:mod:`rnnkit.layers.scan`), on any device.
* **parallel**: for cells whose recurrence is linear in h (``Cell.parallel``: minGRU, minLSTM), the whole
  sequence at once (``Cell.sequence``): a log-space scan in blocks of steps (GPU), a linear scan in torch ops (CPU).
* **autograd**: plain autograd through ``cell.step`` over time, for any cell and activation; the engine that
  ONNX export and compiled graphs with unknown lengths trace.

The input projection of all steps is one matmul in every own-loop engine. Variable lengths are masks: a
finished sequence keeps its state and emits zeros; the reverse direction reads each sequence backwards from
its own last step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import _VF, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from rnnkit.layers import native
from rnnkit.layers.cell import Cell, Params, ParamSpec, gate_norm
from rnnkit.layers.scan import cell_spec, scan

State = torch.Tensor | tuple[torch.Tensor, ...]
Output = torch.Tensor | PackedSequence | tuple[torch.Tensor, torch.Tensor]
# trace(layer, direction, gx (B,T,G*H), state0, params, active (B,T) | None, to_time) -> (out (B,T,P), state)
# where to_time maps a tensor in processing order (B, T, ...) back to time order (the reverse direction reads backwards)
TraceFn = Callable[..., tuple[torch.Tensor, tuple[torch.Tensor, ...]]]

ENGINES = ("fused", "native", "scan", "parallel", "autograd")
MERGE_MODES = ("concat", "sum", "mul", "ave", None)
_FUSED = {"LSTM": _VF.lstm, "GRU": _VF.gru, "RNN_TANH": _VF.rnn_tanh, "RNN_RELU": _VF.rnn_relu}
_CUDNN_MODE = {"RNN_RELU": 0, "RNN_TANH": 1, "LSTM": 2, "GRU": 3}
_STANDARD = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "ln_ih_weight", "ln_ih_bias", "ln_hh_weight",
             "ln_hh_bias")


def _shape(t: torch.Tensor | Sequence[int]) -> str:
    """A shape as Python writes a tuple: ``(2, 5)``, ``(3,)``."""
    return str(tuple(int(s) for s in (t.shape if isinstance(t, torch.Tensor) else t)))


class Recurrent(nn.Module):
    """A stack of recurrent layers built from one cell; see the module docstring.

    Args:
        cell: the step function and its identity (e.g. ``LSTMCell(hidden_size)``).
        input_size: D, features per time step.
        hidden_size: H.
        num_layers: stacked layers; layer k > 0 reads layer k-1's (merged) outputs.
        bidirectional: add a reverse direction per layer.
        dropout: dropout on the outputs of every layer but the last (as torch.nn), while training.
        recurrent_dropout: variational dropout on ``h_{t-1}`` where it enters ``W_hh`` — one mask per
            sequence, layer and direction, the same at every step (Gal & Ghahramani 2016), while training.
        layer_norm: layer-normalise each gate block of ``W_xh x_t + b_xh`` and ``W_hh h_{t-1} + b_hh``.
        bias: learn ``b_xh`` and ``b_hh``.
        batch_first: x is (B, T, D) if True (the default), else (T, B, D).
        merge_mode: how a bidirectional layer combines its directions, as Keras' ``Bidirectional``:
            ``"concat"`` (torch.nn's, the default), ``"sum"``, ``"mul"``, ``"ave"``, or None — the top layer
            returns the two directions as a tuple ``(forward, reverse)`` (layers below concatenate).
        engine: ``"auto"`` (default), ``"fused"``, ``"native"``, ``"scan"`` or ``"autograd"``; see :attr:`engine`.
    """

    cell_class: type[Cell] = Cell  # the cell a subclass runs; from_torch reads its torch_class

    def __init__(
        self,
        cell: Cell,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        *,
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
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name, value in (("dropout", dropout), ("recurrent_dropout", recurrent_dropout)):
            if not 0.0 <= float(value) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value!r}")
        if merge_mode not in MERGE_MODES:
            raise ValueError(f"merge_mode must be one of 'concat', 'sum', 'mul', 'ave' or None, got {merge_mode!r}")
        self.cell = cell
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bidirectional, self.bias, self.batch_first = bool(bidirectional), bool(bias), bool(batch_first)
        self.dropout, self.recurrent_dropout = float(dropout), float(recurrent_dropout)
        self.layer_norm = bool(layer_norm)
        self.merge_mode = merge_mode
        self.num_directions = 2 if bidirectional else 1
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        self._specs: dict[str, ParamSpec] = {}
        self._names: dict[tuple[int, str], list[tuple[str, str]]] = {}  # (k, sfx) -> [(base name, full name)]
        self._weight_names: list[str] = []  # torch.nn's flat order: per layer, per direction: w_ih, w_hh, b_*, w_hr
        for k in range(num_layers):
            for sfx in self._suffixes():
                for spec in cell.param_specs(self._layer_input_size(k), self.bias, self.layer_norm):
                    name = f"{spec.name}_l{k}{sfx}"
                    self.register_parameter(name, nn.Parameter(torch.empty(spec.shape, **kw)))
                    self._specs[name] = spec
                    self._names.setdefault((k, sfx), []).append((spec.name, name))
                    if not spec.name.startswith("ln_"):
                        self._weight_names.append(name)
        self.reset_parameters()
        self._engine = "auto"
        self.engine = engine

    def _suffixes(self) -> tuple[str, ...]:
        return ("", "_reverse")[: self.num_directions]

    def _layer_input_size(self, k: int) -> int:
        """D_k: the input size of layer k (layer k-1's outputs, merged)."""
        if k == 0:
            return self.input_size
        merged = self.merge_mode in ("sum", "mul", "ave")
        return self.cell.output_size * (1 if merged else self.num_directions)

    @property
    def output_size(self) -> int:
        """Features per step of the outputs (per direction with ``merge_mode=None``)."""
        concat = self.merge_mode == "concat"
        return self.cell.output_size * (self.num_directions if concat else 1)

    def reset_parameters(self) -> None:
        """Each parameter as its cell declares: torch.nn's U(-1/sqrt(H), 1/sqrt(H)) for weights and biases,
        layer-norm gains 1 and shifts 0."""
        with torch.no_grad():
            for name, p in self.named_parameters():
                self.cell.init_value(self._specs[name], p)

    def _params(self, k: int, sfx: str) -> Params:
        """Layer k / direction ``sfx``'s parameters by their un-suffixed names (None for those it lacks)."""
        p: Params = dict.fromkeys(_STANDARD)
        for base, name in self._names[(k, sfx)]:
            p[base] = getattr(self, name)
        return p

    # ------------------------------------------------------------------ engines
    def _describe(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"

    def _why_not(self, engine: str) -> str | None:
        """Why ``engine`` cannot run this configuration whatever the device and mode, or None when it can."""
        if engine == "fused":
            if self.cell.fused_mode() is None:
                return "torch has no fused kernel for this cell and these activations"
            if self.layer_norm:
                return "torch's fused kernels have no layer norm"
            if self.recurrent_dropout > 0:
                return "torch's fused kernels have no recurrent dropout"
            if self.bidirectional and self.merge_mode != "concat" and self.num_layers > 1:
                return "torch's fused kernels concatenate the directions between stacked layers"
        elif engine == "native" and cell_spec(self.cell) is None and self.cell.native_supported():
            if self.cell.parallel and self.recurrent_dropout > 0:
                return "a recurrence linear in h has no recurrent weight for recurrent dropout to act on"
            why = native.why_unavailable()
            if why is not None:
                return f"rnnkit's native kernel is unavailable: {why}"
        elif engine in ("native", "scan"):
            if cell_spec(self.cell) is None:
                known = ", ".join(native.ACT_CODES)
                extra = ", and minGRU, minLSTM and IndRNN" if engine == "native" else ""
                return (f"the {engine} engine knows the LSTM (without proj_size), GRU and RNN cells with the "
                        f"activations {known}{extra}")
            if engine == "native":
                why = native.why_unavailable()
                if why is not None:
                    return f"rnnkit's native kernel is unavailable: {why}"
        elif engine == "parallel":
            if not self.cell.parallel:
                return "the parallel engine needs a cell whose recurrence is linear in h (minGRU, minLSTM)"
            if self.recurrent_dropout > 0:
                return "the parallel scan has no recurrent dropout"
        elif engine != "autograd":
            raise ValueError(f"engine must be one of 'auto', {', '.join(repr(e) for e in ENGINES)}, got {engine!r}")
        return None

    @property
    def engine(self) -> str:
        """The engine the next forward call runs on this layer's device and dtype, in its current mode.

        Set it to ``"auto"`` (the fastest that can run: torch's fused kernel where it computes this cell, rnnkit's
        native kernel on the CPU where it is faster, else the scan, else autograd) or to one engine; an engine
        that cannot run the configuration is a ValueError that says why. Asking never compiles anything.
        """
        w = self.weight_ih_l0  # every cell has an input projection
        return self._resolve(w.device, w.dtype, lengths=False)

    @engine.setter
    def engine(self, value: str) -> None:
        if value != "auto":
            why = self._why_not(value)
            if why is not None:
                raise ValueError(f"engine={value!r} cannot run {self._describe()}: {why}")
        self._engine = value

    @property
    def requested_engine(self) -> str:
        """What was asked for: ``"auto"`` or one engine."""
        return self._engine

    def _resolve(self, device: torch.device, dtype: torch.dtype, lengths: bool) -> str:
        if torch.onnx.is_in_onnx_export():
            return "autograd"  # the one engine onnxruntime can run: plain ops, the time loop as an ONNX Scan
        cpu = device.type == "cpu"
        if self._engine != "auto":
            if self._engine == "native" and not (cpu and native.supports_dtype(dtype)):
                raise ValueError(f"engine='native' runs float32/float64 on the CPU; this {type(self).__name__} is "
                                 f"{dtype} on {device} (use engine='auto')")
            return self._engine
        compiling = native.tracing()
        native_ok = (cpu and native.supports_dtype(dtype) and self._why_not("native") is None
                     and not (compiling and cell_spec(self.cell) is None))  # own kernels: eager mode only
        fused_ok = (self.cell.fused_mode() is not None and not self.layer_norm
                    and not (self.recurrent_dropout > 0 and self.training)
                    and not (self.bidirectional and self.merge_mode != "concat" and self.num_layers > 1))
        if compiling and (lengths or cpu or torch.compiler.is_exporting()):
            # packing is data-dependent, torch's CPU kernel does not compile (aten.mkldnn_rnn_layer), and
            # torch.export fixes the fused kernel's time steps to the example's
            fused_ok = False
        # under CPU bf16 autocast the kernel's mixed mode is as fast as torch's and keeps states in float32
        native_first = self.cell.native_on_cpu or (cpu and native.bf16_autocast())
        if fused_ok and not (native_first and native_ok):
            return "fused"
        if native_ok:
            return "native"
        if cell_spec(self.cell) is not None and not compiling:
            return "scan"
        if self.cell.parallel and not compiling and not (self.recurrent_dropout > 0 and self.training):
            return "parallel"
        return "autograd"

    def uses_fused_kernel(self) -> bool:
        """True when the next forward call runs torch's fused kernel (``self.engine == "fused"``)."""
        return self.engine == "fused"

    # ------------------------------------------------------------------ input checks
    def _check_input(self, x: Any) -> torch.Tensor:
        layout = "(batch, time, features)" if self.batch_first else "(time, batch, features)"
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"expected a torch.Tensor {layout}, (time, features) or a PackedSequence, "
                             f"got {type(x).__name__}")
        if x.dim() not in (2, 3) or x.shape[-1] != self.input_size:
            raise ValueError(f"expected input of shape {layout} or unbatched (time, features) with "
                             f"features={self.input_size}, got {_shape(x)}")
        if not x.is_floating_point():
            raise ValueError(f"expected a floating-point input, got dtype {x.dtype}")
        return x

    @staticmethod
    def _check_lengths(lengths: Any, batch: int, steps: int) -> torch.Tensor | None:
        """Validate ``lengths`` (B,) and return it as an int64 tensor, or None when every sequence is full."""
        if lengths is None:
            return None
        lengths = torch.as_tensor(np.asarray(lengths) if isinstance(lengths, list | tuple) else lengths)
        if lengths.dim() != 1 or lengths.shape[0] != batch:
            raise ValueError(f"expected lengths of shape ({batch},), got {_shape(lengths)}")
        if lengths.is_floating_point() or lengths.dtype == torch.bool:
            raise ValueError(f"lengths must hold integers, got dtype {lengths.dtype}")
        if native.tracing():  # symbolic values: no data-dependent checks, always masks
            return lengths.to(torch.int64)
        lengths = lengths.to("cpu", torch.int64)
        lo, hi = int(lengths.min()), int(lengths.max())
        if lo < 1 or hi > steps:
            raise ValueError(f"lengths must lie in [1, {steps}] (the input's time steps), got min {lo}, max {hi}")
        return None if lo == steps else lengths

    def _check_hx(self, hx: Any, batch: int, like: torch.Tensor, unbatched: bool) -> tuple[torch.Tensor, ...] | None:
        if hx is None:
            return None
        n, sizes = self.cell.num_states, self.cell.state_sizes()
        parts = (hx,) if isinstance(hx, torch.Tensor) else tuple(hx) if isinstance(hx, list | tuple) else (hx,)
        what = "(h0, c0)" if n == 2 else "h0"
        lead = self.num_layers * self.num_directions
        wants = [(lead, s) if unbatched else (lead, batch, s) for s in sizes]

        def expect() -> str:  # only for messages: int() of a traced (symbolic) size would fix it
            return ", ".join(_shape(w) for w in wants)

        if parts and isinstance(parts[0], torch.Tensor) and parts[0].dim() == 1 and not unbatched or (
                isinstance(hx, list | tuple) and hx and all(isinstance(v, int) for v in hx)):
            raise ValueError(f"the second positional argument is hx, the initial state {what} of shape {expect()} "
                             "(torch.nn's convention); pass sequence lengths as lengths=...")
        if len(parts) != n or not all(isinstance(p, torch.Tensor) for p in parts):
            raise ValueError(f"expected hx {what} of shape {expect()}, got {len(parts)} item(s)")
        for p, want in zip(parts, wants, strict=True):
            if tuple(p.shape) != want:
                raise ValueError(f"expected hx {what} of shape {expect()}, got {_shape(p)}")
        return tuple((p.unsqueeze(1) if unbatched else p).to(like.dtype) for p in parts)

    # ------------------------------------------------------------------ forward
    def forward(self, input: Any, hx: State | None = None, *, lengths: Any = None) -> tuple[Output, State]:
        """Run the layer, as torch.nn's ``forward(input, hx)`` plus ``lengths``.

        Args:
            input: (B, T, D) if batch_first else (T, B, D); an unbatched (T, D); or a ``PackedSequence``.
            hx: initial state, (layers*directions, B, H) — a tuple ``(h0, c0)`` for the LSTM, with h0's last
                size P = proj_size when set; (layers*directions, H) for an unbatched input. None means zeros.
            lengths: (B,) true lengths in any order, 1 <= length <= T; None means all T (a packed input brings
                its own).

        Returns:
            output: (B, T, F) (or (T, B, F), or (T, F) unbatched, or a ``PackedSequence`` for a packed input),
                the top layer's h_t, zero at padded steps; F = directions*P with ``merge_mode="concat"``, else P.
                With ``merge_mode=None`` a tuple (forward, reverse).
            h_n: the final state, like ``hx``, taken at each sequence's own last step (for the reverse direction:
                its state after reading back to step 0).
        """
        return self._forward(input, hx, lengths)

    def _forward(self, input: Any, hx: Any, lengths: Any, trace: TraceFn | None = None) -> tuple[Output, State]:
        """:meth:`forward`, optionally with ``trace`` replacing the time loop of every layer and direction (it
        forces an own loop; :mod:`rnnkit.diagnostics` records per-step states this way)."""
        packed = isinstance(input, PackedSequence)
        unbatched = False
        if packed:
            if lengths is not None:
                raise ValueError("a PackedSequence carries its own lengths: do not pass lengths= too")
            sorted_idx, unsorted_idx = input.sorted_indices, input.unsorted_indices
            x, lengths = pad_packed_sequence(input, batch_first=True)
            self._check_input(x)
        else:
            x = self._check_input(input)
            unbatched = x.dim() == 2
            if unbatched:
                if lengths is not None:
                    raise ValueError("lengths= needs a batched input (batch, time, features)")
                x = x.unsqueeze(0)
            elif not self.batch_first:
                x = x.transpose(0, 1)
        batch, steps = x.shape[0], x.shape[1]
        lengths = self._check_lengths(lengths, batch, steps)
        state0 = self._check_hx(hx, batch, x, unbatched)
        engine = "autograd" if trace is not None else self._resolve(x.device, x.dtype, lengths is not None)
        if engine == "native" and not native.tracing() and not native.enabled():  # the build failed (it warned once)
            if self._engine == "native":
                raise RuntimeError(f"engine='native' cannot run: {native.why_unavailable()}")
            engine = ("scan" if cell_spec(self.cell) is not None
                      else "parallel" if self.cell.parallel and self._why_not("parallel") is None else "autograd")
        if engine == "fused":
            out, final = self._forward_fused(x, lengths, state0)
        else:
            out, final = self._forward_loop(x, lengths, state0, engine, trace)

        def shape_out(o: torch.Tensor) -> Any:
            if packed:
                return self._pack(o, lengths, sorted_idx, unsorted_idx)
            if unbatched:
                return o.squeeze(0)
            return o if self.batch_first else o.transpose(0, 1)

        output = tuple(shape_out(o) for o in out) if isinstance(out, tuple) else shape_out(out)
        if unbatched:
            final = tuple(s.squeeze(1) for s in final)
        return output, (final[0] if len(final) == 1 else final)

    @staticmethod
    def _pack(out: torch.Tensor, lengths: torch.Tensor | None, sorted_idx: torch.Tensor | None,
              unsorted_idx: torch.Tensor | None) -> PackedSequence:
        """Pack out (B, T, F) (original batch order) with the input's ordering, as torch.nn returns it."""
        if lengths is None:
            lengths = torch.full((out.shape[0],), out.shape[1], dtype=torch.int64)
        if sorted_idx is not None:
            out, lengths = out.index_select(0, sorted_idx), lengths.index_select(0, sorted_idx.cpu())
        p = pack_padded_sequence(out, lengths.cpu(), batch_first=True, enforce_sorted=True)
        return PackedSequence(p.data, p.batch_sizes, sorted_idx, unsorted_idx)

    def _merge(self, outs: list[torch.Tensor], top: bool) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Combine the directions' outputs (B, T, P) each by ``merge_mode``."""
        if len(outs) == 1:
            return outs[0]
        mode = self.merge_mode
        if mode is None:
            return (outs[0], outs[1]) if top else torch.cat(outs, dim=2)
        if mode == "concat":
            return torch.cat(outs, dim=2)
        if mode == "sum":
            return outs[0] + outs[1]
        if mode == "mul":
            return outs[0] * outs[1]
        return (outs[0] + outs[1]) * 0.5

    def _flat_weights(self) -> list[torch.Tensor]:
        return [getattr(self, n) for n in self._weight_names]

    def _zeros(self, batch: int, like: torch.Tensor, layers: int | None = None) -> tuple[torch.Tensor, ...]:
        shape = (batch,) if layers is None else (layers, batch)
        return tuple(like.new_zeros(*shape, s) for s in self.cell.state_sizes())

    def _forward_fused(self, x: torch.Tensor, lengths: torch.Tensor | None, state0: tuple[torch.Tensor, ...] | None):
        mode = self.cell.fused_mode()
        kernel = _FUSED[mode]
        if state0 is None:
            state0 = self._zeros(x.shape[0], x, self.num_layers * self.num_directions)
        args = (self._flat_weights(), self.bias, self.num_layers, self.dropout, self.training, self.bidirectional)
        if lengths is None:
            hx = state0 if mode == "LSTM" else state0[0]
            res = kernel(x, hx, *args, True)
            out, final = res[0], tuple(res[1:])
        else:
            packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            order, undo = packed.sorted_indices, packed.unsorted_indices
            hs = tuple(h.index_select(1, order) for h in state0)
            res = kernel(packed.data, packed.batch_sizes, hs if mode == "LSTM" else hs[0], *args)
            out, _ = pad_packed_sequence(
                PackedSequence(res[0], packed.batch_sizes, order, undo), batch_first=True, total_length=x.shape[1]
            )
            final = tuple(s.index_select(1, undo) for s in res[1:])
        if self.bidirectional and self.merge_mode != "concat":
            out = self._merge(list(out.chunk(2, dim=2)), top=True)
        return out, final

    def _forward_loop(self, x: torch.Tensor, lengths: torch.Tensor | None, state0: tuple[torch.Tensor, ...] | None,
                      engine: str, trace: TraceFn | None = None):
        batch, steps = x.shape[0], x.shape[1]
        active = rev_index = None
        if lengths is not None:
            lengths = lengths.to(x.device)
            t = torch.arange(steps, device=x.device)
            active = t[None, :] < lengths[:, None]  # (B, T)
            rev_index = torch.where(active, lengths[:, None] - 1 - t[None, :], t[None, :])  # (B, T)
        finals: list[list[torch.Tensor]] = [[] for _ in range(self.cell.num_states)]
        layer_in: Any = x
        for k in range(self.num_layers):
            outs = []
            for d, sfx in enumerate(self._suffixes()):
                inp = layer_in if d == 0 else self._reverse(layer_in, rev_index)
                p = self._params(k, sfx)
                gx = self.cell.input_projection(inp, p)  # (B, T, G*H): all steps in one matmul
                idx = k * self.num_directions + d
                s0 = tuple(s[idx] for s in state0) if state0 is not None else self._zeros(batch, x)
                if trace is not None:
                    if p["ln_ih_weight"] is not None:
                        gx = gate_norm(gx, p["ln_ih_weight"], p["ln_ih_bias"], self.cell.num_gates)

                    def to_time(z: torch.Tensor, d: int = d) -> torch.Tensor:
                        return z if d == 0 else self._reverse(z, rev_index)

                    out, s_t = trace(k, d, gx, s0, p, active, to_time)
                else:
                    out, s_t = self._run(engine, gx, s0, p, active)
                outs.append(out if d == 0 else self._reverse(out, rev_index))
                for i, s in enumerate(s_t):
                    finals[i].append(s)
            layer_in = self._merge(outs, top=k == self.num_layers - 1)
            if self.dropout > 0 and self.training and k < self.num_layers - 1:
                layer_in = native.dropout(layer_in, self.dropout, True)
        return layer_in, tuple(torch.stack(f, 0) for f in finals)

    @staticmethod
    def _reverse(t: torch.Tensor, rev_index: torch.Tensor | None) -> torch.Tensor:
        """Reverse each sequence of t (B, T, F) within its own length; padded steps stay in place."""
        if rev_index is None:
            return t.flip(1)
        return t.gather(1, rev_index[:, :, None].expand_as(t))

    def _run(self, engine: str, gx: torch.Tensor, state: tuple[torch.Tensor, ...], p: Params,
             active: torch.Tensor | None) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """Step the cell over gx (B, T, G*H) (before the input-side layer norm) from ``state`` on an own-loop
        engine; return outputs (B, T, P) and the final state."""
        gx = gx.to(state[0].dtype)  # bf16 under CPU autocast: the recurrences run on float32 gates and states
        mask = None
        if self.recurrent_dropout > 0 and self.training:
            keep = 1.0 - self.recurrent_dropout
            mask = torch.bernoulli(state[0].new_full(state[0].shape, keep)) / keep  # one mask per sequence
        own = cell_spec(self.cell) is None  # the cell's own native kernel, if any
        if engine in ("native", "scan") and gx.shape[1] > 0 and not own:
            return scan(self.cell, gx, state, p, active, mask, use_native=engine == "native")
        if p["ln_ih_weight"] is not None:
            gx = gate_norm(gx, p["ln_ih_weight"], p["ln_ih_bias"], self.cell.num_gates)
        if engine == "native" and own and gx.shape[1] > 0 and not native.tracing():
            return self.cell.native(gx, state, p, active, mask)
        if engine == "parallel" and mask is None and not native.tracing():
            res = self.cell.sequence(gx, state, p, active)
            if res is not None:
                return res
        return self._scan_autograd(gx, state, p, active, mask)

    def _scan_autograd(self, gx: torch.Tensor, state: tuple[torch.Tensor, ...], p: Params,
                       active: torch.Tensor | None, mask: torch.Tensor | None):
        """The time loop by plain autograd through ``cell.step``, for any cell; ``mask`` (B, P) is the recurrent
        dropout mask or None. Eager: a Python loop over ``unbind``-ed steps (indexing ``x[:, t]`` would make the
        backward pass O(T^2)); traced for export: :func:`rnnkit.layers.export.time_scan`, whose time axis stays
        symbolic (an ONNX Scan)."""
        if native.tracing():
            from rnnkit.layers.export import time_scan

            return time_scan(self.cell, gx, state, p, active, mask)
        steps = gx.unbind(1)
        keeps = active.unsqueeze(2).unbind(1) if active is not None else (None,) * len(steps)
        outputs = []
        for g, m in zip(steps, keeps, strict=True):
            h_rec = state[0] if mask is None else state[0] * mask
            new = self.cell.step(g, h_rec, state, p)
            if m is not None:  # finished sequences keep their state and emit zeros
                new = tuple(torch.where(m, n, s) for n, s in zip(new, state, strict=True))
                outputs.append(new[0] * m)
            else:
                outputs.append(new[0])
            state = new
        if not outputs:
            return gx.new_zeros(gx.shape[0], 0, self.cell.output_size), state
        return torch.stack(outputs, 1), state

    # ------------------------------------------------------------------ cuDNN weight layout
    def flatten_parameters(self) -> None:
        """On CUDA with cuDNN, lay the fused weights out in one contiguous buffer (as torch.nn does), so
        cuDNN need not copy them at every call. A no-op elsewhere."""
        mode = self.cell.fused_mode()
        weights = self._flat_weights()
        if mode is None or not weights[0].is_cuda or not torch.backends.cudnn.is_acceptable(weights[0]):
            return
        if len({w.dtype for w in weights}) != 1 or len({w.data_ptr() for w in weights}) != len(weights):
            return
        stride = len(weights) // (self.num_layers * self.num_directions)
        proj = self.cell.output_size if self.cell.output_size != self.hidden_size else 0
        with torch.cuda.device_of(weights[0]), torch.no_grad():
            if torch._use_cudnn_rnn_flatten_weight():
                torch._cudnn_rnn_flatten_weight(
                    weights, stride, self.input_size, _CUDNN_MODE[mode], self.hidden_size, proj,
                    self.num_layers, True, self.bidirectional,
                )

    def _apply(self, fn, recurse=True):  # type: ignore[override]
        result = super()._apply(fn, recurse)
        self.flatten_parameters()
        return result

    # ------------------------------------------------------------------ torch.nn and Keras interop
    @classmethod
    def _torch_options(cls, module: nn.Module) -> dict[str, object]:
        return {}

    def _to_torch_options(self) -> dict[str, object]:
        return {}

    @classmethod
    def from_torch(cls, module: nn.Module) -> Recurrent:
        """Build an equal layer from a ``torch.nn.LSTM``/``GRU``/``RNN`` (weights copied, same device and dtype)."""
        cell_torch = cls.cell_class.torch_class
        if cell_torch is None or not isinstance(module, cell_torch):
            raise ValueError(f"{cls.__name__}.from_torch expects a torch.nn.{getattr(cell_torch, '__name__', '?')}, "
                             f"got {type(module).__name__}")
        w = next(module.parameters())
        layer = cls(
            module.input_size, module.hidden_size, module.num_layers, bidirectional=module.bidirectional,
            dropout=module.dropout, bias=module.bias, batch_first=module.batch_first,
            device=w.device, dtype=w.dtype, **cls._torch_options(module),
        )
        layer.load_state_dict(module.state_dict())
        return layer

    def to_torch(self) -> nn.Module:
        """The equal ``torch.nn`` module, weights copied; ValueError when torch.nn cannot express this layer."""
        why = self._why_not("fused")
        if why is None and self.bidirectional and self.merge_mode != "concat":
            why = "torch.nn concatenates the two directions"
        if why is not None or self.cell.torch_class is None:
            raise ValueError(f"torch.nn cannot express this {self._describe()}: {why}")
        w = self._flat_weights()[0]
        module = self.cell.torch_class(
            self.input_size, self.hidden_size, self.num_layers, bias=self.bias, batch_first=self.batch_first,
            dropout=self.dropout, bidirectional=self.bidirectional, device=w.device, dtype=w.dtype,
            **self._to_torch_options(),
        )
        module.load_state_dict({n: getattr(self, n).detach() for n in self._weight_names})
        return module.train(self.training)

    def load_keras_weights(self, weights: Sequence[Any]) -> Recurrent:
        """Load the arrays Keras' ``layer.get_weights()`` returns for SimpleRNN / LSTM / GRU.

        Per layer and direction Keras gives ``kernel`` (D, G*H), ``recurrent_kernel`` (H, G*H) and, with a
        bias, ``bias``: (G*H,) — or (2, G*H) for GRU with ``reset_after=True`` (input and recurrent rows).
        Pass them in order — layer 0 forward, layer 0 backward (a ``Bidirectional`` wrapper's
        ``get_weights()`` already gives forward then backward), layer 1, … — as one flat list or a list of
        lists. Stacked ``Bidirectional`` layers with ``merge_mode="sum"`` (or mul, ave) read H features, not 2H:
        build this layer with the same ``merge_mode``. Keras kernels are transposed relative to torch, and Keras'
        GRU blocks z, r, h are reordered to torch's r, z, n. Returns self.
        """
        if any(s.name not in _STANDARD for s in self._specs.values()):
            raise ValueError(f"Keras has no equivalent of {self._describe()} (parameters beyond kernel, "
                             "recurrent_kernel and bias)")
        flat: list[Any] = []
        for w in weights:
            flat.extend(w if isinstance(w, list | tuple) else [w])
        per = 3 if self.bias else 2
        groups = self.num_layers * self.num_directions
        if len(flat) != per * groups:
            raise ValueError(
                f"expected {per * groups} Keras arrays ({per} per layer and direction: kernel, recurrent_kernel"
                f"{', bias' if self.bias else ''}), got {len(flat)}"
            )
        H, G = self.hidden_size, self.cell.num_gates
        order = self.cell.keras_gate_order
        two_rows = self.cell.keras_bias_rows() == 2

        def torch_rows(a: np.ndarray) -> np.ndarray:  # (..., G*H) Keras blocks -> (G*H, ...) torch blocks
            a = np.asarray(a, dtype=np.float64)
            return np.concatenate([a[..., j * H:(j + 1) * H] for j in order], axis=-1).T

        new: dict[str, torch.Tensor] = {}
        for i in range(groups):
            k, d = divmod(i, self.num_directions)
            sfx = self._suffixes()[d]
            kernel, rec = (np.asarray(a) for a in flat[per * i: per * i + 2])
            d_in = self._layer_input_size(k)
            for what, arr, want in (("kernel", kernel, (d_in, G * H)), ("recurrent_kernel", rec, (H, G * H))):
                if arr.shape != want:
                    hint = ""
                    if what == "kernel" and k > 0 and arr.shape[0] != d_in:
                        hint = " (does the Keras model merge the directions another way? set merge_mode)"
                    raise ValueError(f"layer {k}{sfx}: expected Keras {what} of shape {_shape(want)}, "
                                     f"got {_shape(arr.shape)}{hint}")
            new[f"weight_ih_l{k}{sfx}"] = torch.from_numpy(torch_rows(kernel))
            new[f"weight_hh_l{k}{sfx}"] = torch.from_numpy(torch_rows(rec))
            if self.bias:
                b = np.asarray(flat[per * i + 2], dtype=np.float64)
                want_b = (2, G * H) if two_rows else (G * H,)
                if b.shape != want_b:
                    hint = " (a (2, 3H) bias means Keras reset_after=True: build GRU(..., reset_after=True))" \
                        if b.shape == (2, G * H) else ""
                    raise ValueError(f"layer {k}{sfx}: expected Keras bias of shape {_shape(want_b)}, "
                                     f"got {_shape(b.shape)}{hint}")
                b_ih, b_hh = (b[0], b[1]) if two_rows else (b, np.zeros_like(b))
                new[f"bias_ih_l{k}{sfx}"] = torch.from_numpy(torch_rows(b_ih))
                new[f"bias_hh_l{k}{sfx}"] = torch.from_numpy(torch_rows(b_hh))
        with torch.no_grad():
            for name, value in new.items():
                getattr(self, name).copy_(value)
        return self

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        for name in ("bidirectional", "dropout", "recurrent_dropout", "layer_norm"):
            if getattr(self, name):
                s += f", {name}={getattr(self, name)}"
        if not self.bias:
            s += ", bias=False"
        if not self.batch_first:
            s += ", batch_first=False"
        if self.bidirectional and self.merge_mode != "concat":
            s += f", merge_mode={self.merge_mode!r}"
        if getattr(self, "_engine", "auto") != "auto":
            s += f", engine={self._engine!r}"
        defaults = {"activation": "tanh", "recurrent_activation": "sigmoid", "reset_after": True, "proj_size": 0}
        for key, value in self.cell.options().items():
            if defaults.get(key) != value:
                s += f", {key}={value!r}"
        return s
