"""The generic recurrent layer: runs a :class:`~rnnkit.layers.cell.Cell` over time, layers and directions.

Parameters carry torch.nn's names and layout, per layer ``k`` and direction (suffix ``""`` or
``"_reverse"``)::

    weight_ih_l{k}{sfx}  (G*H, D_k)     weight_hh_l{k}{sfx}  (G*H, H)
    bias_ih_l{k}{sfx}    (G*H,)         bias_hh_l{k}{sfx}    (G*H,)
    ln_ih_weight_l{k}{sfx}, ln_ih_bias_l{k}{sfx}, ln_hh_weight_l{k}{sfx}, ln_hh_bias_l{k}{sfx}  (G*H,)
                                         (only with layer_norm=True)

with D_0 = input_size and D_k = directions * H above, so ``state_dict``s move to and from torch.nn.

Two engines compute the same function:

* **fused**: when the cell is one torch.nn has a kernel for (see ``Cell.fused_mode``), without layer norm
  and without recurrent dropout while training, the layer calls torch's own kernel (oneDNN on CPU,
  cuDNN on GPU), variable lengths through a packed sequence; on the CPU only where torch's kernel is the
  faster one (the LSTM: see ``Cell.native_on_cpu``);
* **loop**: everything else. The input projection of all steps is one matmul; the recurrence runs in
  :func:`rnnkit.layers.scan.scan` (rnnkit's native C++ kernel on the CPU, the Python scan elsewhere), or,
  for cells and activations it does not know, in autograd over ``unbind``-ed time slices (indexing
  ``x[:, t]`` inside the loop would make the backward pass O(T^2)).
  Variable lengths are masks: a finished sequence keeps its state and emits zeros; the reverse
  direction reads each sequence backwards from its own last step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import _VF, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from rnnkit.layers import native
from rnnkit.layers.cell import Cell, gate_norm
from rnnkit.layers.scan import scan

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]
# scan(layer, direction, gx (B,T,G*H), state0, w_hh, b_hh, ln_hh, active (B,T) | None, to_time) -> (out (B,T,H), state)
# where to_time maps a tensor in processing order (B, T, ...) back to time order (the reverse direction reads backwards)
ScanFn = Callable[..., tuple[torch.Tensor, tuple[torch.Tensor, ...]]]

_FUSED = {"LSTM": _VF.lstm, "GRU": _VF.gru, "RNN_TANH": _VF.rnn_tanh, "RNN_RELU": _VF.rnn_relu}
_CUDNN_MODE = {"RNN_RELU": 0, "RNN_TANH": 1, "LSTM": 2, "GRU": 3}


def _shape(t: torch.Tensor | Sequence[int]) -> str:
    """A shape as Python writes a tuple: ``(2, 5)``, ``(3,)``."""
    return str(tuple(int(s) for s in (t.shape if isinstance(t, torch.Tensor) else t)))


class Recurrent(nn.Module):
    """A stack of recurrent layers built from one cell; see the module docstring.

    Args:
        cell: the step function (e.g. ``LSTMCell(hidden_size)``).
        input_size: D, features per time step.
        hidden_size: H.
        num_layers: stacked layers; layer k > 0 reads layer k-1's outputs.
        bidirectional: add a reverse direction per layer; outputs are [forward, reverse] concatenated.
        dropout: dropout on the outputs of every layer but the last (as torch.nn), while training.
        recurrent_dropout: variational dropout on ``h_{t-1}`` where it enters ``W_hh`` — one mask per
            sequence, layer and direction, the same at every step (Gal & Ghahramani 2016), while training.
        layer_norm: layer-normalise each gate block of ``W_xh x_t + b_xh`` and ``W_hh h_{t-1} + b_hh``.
        bias: learn ``b_xh`` and ``b_hh``.
        batch_first: x is (B, T, D) if True (the default), else (T, B, D).
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
        self.cell = cell
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bidirectional, self.bias, self.batch_first = bool(bidirectional), bool(bias), bool(batch_first)
        self.dropout, self.recurrent_dropout = float(dropout), float(recurrent_dropout)
        self.layer_norm = bool(layer_norm)
        self.num_directions = 2 if bidirectional else 1
        gh = cell.num_gates * hidden_size
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        self._weight_names: list[str] = []  # torch.nn's flat order: per layer, per direction: w_ih, w_hh, b_ih, b_hh
        for k in range(num_layers):
            d_in = input_size if k == 0 else hidden_size * self.num_directions
            for sfx in self._suffixes():
                names = [f"weight_ih_l{k}{sfx}", f"weight_hh_l{k}{sfx}"]
                shapes = [(gh, d_in), (gh, hidden_size)]
                if bias:
                    names += [f"bias_ih_l{k}{sfx}", f"bias_hh_l{k}{sfx}"]
                    shapes += [(gh,), (gh,)]
                if layer_norm:
                    names += [f"ln_{p}_l{k}{sfx}" for p in ("ih_weight", "ih_bias", "hh_weight", "hh_bias")]
                    shapes += [(gh,)] * 4
                for name, shape in zip(names, shapes, strict=True):
                    self.register_parameter(name, nn.Parameter(torch.empty(shape, **kw)))
                self._weight_names += [n for n in names if not n.startswith("ln_")]
        self.reset_parameters()

    def _suffixes(self) -> tuple[str, ...]:
        return ("", "_reverse")[: self.num_directions]

    def reset_parameters(self) -> None:
        """torch.nn's initialisation: every weight and bias ~ U(-1/sqrt(H), 1/sqrt(H)); layer-norm gains 1,
        shifts 0."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for name, p in self.named_parameters():
            with torch.no_grad():
                if name.startswith("ln_"):
                    p.fill_(1.0 if "_weight_" in name else 0.0)
                else:
                    p.uniform_(-bound, bound)

    # ------------------------------------------------------------------ input checks
    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        layout = "(batch, time, features)" if self.batch_first else "(time, batch, features)"
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"expected a torch.Tensor {layout}, got {type(x).__name__}")
        if x.dim() != 3:
            raise ValueError(f"expected input of shape {layout} with features={self.input_size}, got {_shape(x)}")
        if x.shape[-1] != self.input_size:
            raise ValueError(
                f"expected input of shape {layout} with features={self.input_size}, got {_shape(x)}"
            )
        if not x.is_floating_point():
            raise ValueError(f"expected a floating-point input, got dtype {x.dtype}")
        return x if self.batch_first else x.transpose(0, 1)

    @staticmethod
    def _check_lengths(lengths: Any, batch: int, steps: int) -> torch.Tensor | None:
        """Validate ``lengths`` (B,) and return it as an int64 CPU tensor, or None when every sequence is full."""
        if lengths is None:
            return None
        lengths = torch.as_tensor(np.asarray(lengths) if isinstance(lengths, list | tuple) else lengths)
        if lengths.dim() != 1 or lengths.shape[0] != batch:
            raise ValueError(f"expected lengths of shape ({batch},), got {_shape(lengths)}")
        if lengths.is_floating_point() or lengths.dtype == torch.bool:
            raise ValueError(f"lengths must hold integers, got dtype {lengths.dtype}")
        lengths = lengths.to("cpu", torch.int64)
        lo, hi = int(lengths.min()), int(lengths.max())
        if lo < 1 or hi > steps:
            raise ValueError(f"lengths must lie in [1, {steps}] (the input's time steps), got min {lo}, max {hi}")
        return None if lo == steps else lengths

    def _check_state(self, state: State | None, batch: int, like: torch.Tensor) -> tuple[torch.Tensor, ...] | None:
        if state is None:
            return None
        n = self.cell.num_states
        parts = (state,) if isinstance(state, torch.Tensor) else tuple(state)
        want = (self.num_layers * self.num_directions, batch, self.hidden_size)
        what = "(h, c)" if n == 2 else "h"
        if len(parts) != n or not all(isinstance(p, torch.Tensor) for p in parts):
            raise ValueError(f"expected state {what}, each of shape {_shape(want)}, got {len(parts)} item(s)")
        for p in parts:
            if tuple(p.shape) != want:
                raise ValueError(f"expected state {what}, each of shape {_shape(want)}, got {_shape(p)}")
        return tuple(p.to(like.dtype) for p in parts)

    # ------------------------------------------------------------------ forward
    def forward(
        self, x: torch.Tensor, lengths: torch.Tensor | Sequence[int] | None = None, state: State | None = None
    ) -> tuple[torch.Tensor, State]:
        """Run the layer.

        Args:
            x: (B, T, D) if batch_first else (T, B, D).
            lengths: (B,) true lengths in any order, 1 <= length <= T; None means all T.
            state: initial state, (layers*directions, B, H) — a tuple ``(h, c)`` for LSTM; None means zeros.

        Returns:
            outputs: (B, T, directions*H) (or (T, B, ...)), the top layer's h_t; zero at padded steps.
            state: final state in the layout of ``state``, taken at each sequence's own last step
                (for the reverse direction: its state after reading back to step 0).
        """
        return self._forward(x, lengths, state)

    def _forward(
        self, x: torch.Tensor, lengths: Any, state: State | None, scan: ScanFn | None = None
    ) -> tuple[torch.Tensor, State]:
        """:meth:`forward`, optionally with ``scan`` replacing the time loop of every layer and direction (it
        forces the loop engine; :mod:`rnnkit.diagnostics` records per-step states this way)."""
        x = self._check_input(x)
        batch, steps = x.shape[0], x.shape[1]
        lengths = self._check_lengths(lengths, batch, steps)
        state0 = self._check_state(state, batch, x)
        if scan is None and self.uses_fused_kernel():
            out, final = self._forward_fused(x, lengths, state0)
        else:
            out, final = self._forward_loop(x, lengths, state0, scan)
        if not self.batch_first:
            out = out.transpose(0, 1)
        return out, (final[0] if len(final) == 1 else final)

    def uses_fused_kernel(self) -> bool:
        """True when the next forward call runs torch's fused kernel: the configuration allows it, and it is
        not a GRU or RNN on the CPU where rnnkit's native kernel (faster there) is available."""
        rec_drop = self.recurrent_dropout > 0 and self.training
        if self.cell.fused_mode() is None or self.layer_norm or rec_drop:
            return False
        w = self.weight_hh_l0
        return not (self.cell.native_on_cpu and w.device.type == "cpu" and native.supports_dtype(w.dtype))

    def _flat_weights(self) -> list[torch.Tensor]:
        return [getattr(self, n) for n in self._weight_names]

    def _forward_fused(
        self, x: torch.Tensor, lengths: torch.Tensor | None, state0: tuple[torch.Tensor, ...] | None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        mode = self.cell.fused_mode()
        kernel = _FUSED[mode]
        if state0 is None:
            zeros = x.new_zeros(self.num_layers * self.num_directions, x.shape[0], self.hidden_size)
            state0 = (zeros,) * self.cell.num_states
        hx = state0 if mode == "LSTM" else state0[0]
        args = (self._flat_weights(), self.bias, self.num_layers, self.dropout, self.training, self.bidirectional)
        if lengths is None:
            res = kernel(x, hx, *args, True)
            return res[0], tuple(res[1:])
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        order, undo = packed.sorted_indices, packed.unsorted_indices
        hx = tuple(h.index_select(1, order) for h in state0) if mode == "LSTM" else hx.index_select(1, order)
        res = kernel(packed.data, packed.batch_sizes, hx, *args)
        out, _ = pad_packed_sequence(
            PackedSequence(res[0], packed.batch_sizes, order, undo), batch_first=True, total_length=x.shape[1]
        )
        return out, tuple(s.index_select(1, undo) for s in res[1:])

    def _forward_loop(
        self,
        x: torch.Tensor,
        lengths: torch.Tensor | None,
        state0: tuple[torch.Tensor, ...] | None,
        scan: ScanFn | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        batch, steps = x.shape[0], x.shape[1]
        active = rev_index = None
        if lengths is not None:
            lengths = lengths.to(x.device)
            t = torch.arange(steps, device=x.device)
            active = t[None, :] < lengths[:, None]  # (B, T)
            rev_index = torch.where(active, lengths[:, None] - 1 - t[None, :], t[None, :])  # (B, T)
        finals: list[list[torch.Tensor]] = [[] for _ in range(self.cell.num_states)]
        layer_in = x
        for k in range(self.num_layers):
            outs = []
            for d, sfx in enumerate(self._suffixes()):
                inp = layer_in if d == 0 else self._reverse(layer_in, rev_index)
                p = {name: getattr(self, f"{name}_l{k}{sfx}", None) for name in (
                    "weight_ih", "weight_hh", "bias_ih", "bias_hh", "ln_ih_weight", "ln_ih_bias",
                    "ln_hh_weight", "ln_hh_bias")}
                gx = F.linear(inp, p["weight_ih"], p["bias_ih"])  # (B, T, G*H): all steps in one matmul
                ln_ih = (p["ln_ih_weight"], p["ln_ih_bias"]) if self.layer_norm else None
                ln_hh = (p["ln_hh_weight"], p["ln_hh_bias"]) if self.layer_norm else None
                if ln_ih is not None and scan is not None:
                    gx = gate_norm(gx, *ln_ih, self.cell.num_gates)
                idx = k * self.num_directions + d
                s0 = tuple(s[idx] for s in state0) if state0 is not None else \
                    (x.new_zeros(batch, self.hidden_size),) * self.cell.num_states
                if scan is None:
                    out, s_t = self._scan(gx, s0, p["weight_hh"], p["bias_hh"], ln_hh, active, ln_ih)
                else:
                    def to_time(z: torch.Tensor, d: int = d) -> torch.Tensor:
                        return z if d == 0 else self._reverse(z, rev_index)

                    out, s_t = scan(k, d, gx, s0, p["weight_hh"], p["bias_hh"], ln_hh, active, to_time)
                outs.append(out if d == 0 else self._reverse(out, rev_index))
                for i, s in enumerate(s_t):
                    finals[i].append(s)
            layer_in = outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)
            if self.dropout > 0 and self.training and k < self.num_layers - 1:
                layer_in = F.dropout(layer_in, self.dropout, True)
        return layer_in, tuple(torch.stack(f, 0) for f in finals)

    @staticmethod
    def _reverse(t: torch.Tensor, rev_index: torch.Tensor | None) -> torch.Tensor:
        """Reverse each sequence of t (B, T, F) within its own length; padded steps stay in place."""
        if rev_index is None:
            return t.flip(1)
        return t.gather(1, rev_index[:, :, None].expand_as(t))

    def _scan(
        self,
        gx: torch.Tensor,
        state: tuple[torch.Tensor, ...],
        w_hh: torch.Tensor,
        b_hh: torch.Tensor | None,
        ln_hh: tuple[torch.Tensor, torch.Tensor] | None,
        active: torch.Tensor | None,
        ln_ih: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """Step the cell over gx (B, T, G*H) from ``state``; return outputs (B, T, H) and the final state.

        ``ln_ih`` (gain, shift), when given, is the input-side layer norm still to apply to gx. Runs
        :func:`rnnkit.layers.scan.scan` (no-grad forward, hand-written BPTT; the native C++ kernel for an LSTM
        on CPU) when it knows the cell and its activations, else :meth:`_scan_autograd`.
        """
        mask = None
        if self.recurrent_dropout > 0 and self.training:
            keep = 1.0 - self.recurrent_dropout
            mask = torch.bernoulli(state[0].new_full(state[0].shape, keep)) / keep  # one mask per sequence
        result = scan(self.cell, gx, state, w_hh, b_hh, ln_hh, active, mask, ln_ih)
        if result is not None:
            return result
        if ln_ih is not None:
            gx = gate_norm(gx, *ln_ih, self.cell.num_gates)
        return self._scan_autograd(gx, state, w_hh, b_hh, ln_hh, active, mask)

    def _scan_autograd(
        self,
        gx: torch.Tensor,
        state: tuple[torch.Tensor, ...],
        w_hh: torch.Tensor,
        b_hh: torch.Tensor | None,
        ln_hh: tuple[torch.Tensor, torch.Tensor] | None,
        active: torch.Tensor | None,
        mask: torch.Tensor | None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """``_scan`` by plain autograd through ``cell.step``, for any cell; ``mask`` (B, H) is the recurrent
        dropout mask or None."""
        w_hh_t = w_hh.t()
        steps = gx.unbind(1)
        keeps = active.unsqueeze(2).unbind(1) if active is not None else (None,) * len(steps)
        outputs = []
        for g, m in zip(steps, keeps, strict=True):
            h_rec = state[0] if mask is None else state[0] * mask
            new = self.cell.step(g, h_rec, state, w_hh_t, b_hh, ln_hh)
            if m is not None:  # finished sequences keep their state and emit zeros
                new = tuple(torch.where(m, n, s) for n, s in zip(new, state, strict=True))
                outputs.append(new[0] * m)
            else:
                outputs.append(new[0])
            state = new
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
        with torch.cuda.device_of(weights[0]), torch.no_grad():
            if torch._use_cudnn_rnn_flatten_weight():
                torch._cudnn_rnn_flatten_weight(
                    weights, 4 if self.bias else 2, self.input_size, _CUDNN_MODE[mode], self.hidden_size, 0,
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
        if self.cell.fused_mode() is None or self.layer_norm or self.recurrent_dropout > 0:
            raise ValueError(
                f"torch.nn cannot express this {type(self).__name__} ({self.extra_repr()}): it has no custom "
                "activations, layer norm, recurrent dropout or GRU reset_after=False"
            )
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
        lists. Keras kernels are transposed relative to torch, and Keras' GRU blocks z, r, h are reordered
        to torch's r, z, n. Returns self.
        """
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
        reset_after = getattr(self.cell, "reset_after", False)

        def torch_rows(a: np.ndarray) -> np.ndarray:  # (..., G*H) Keras blocks -> (G*H, ...) torch blocks
            a = np.asarray(a, dtype=np.float64)
            return np.concatenate([a[..., j * H:(j + 1) * H] for j in order], axis=-1).T

        new: dict[str, torch.Tensor] = {}
        for i in range(groups):
            k, d = divmod(i, self.num_directions)
            sfx = self._suffixes()[d]
            kernel, rec = (np.asarray(a) for a in flat[per * i: per * i + 2])
            d_in = self.input_size if k == 0 else H * self.num_directions
            for what, arr, want in (("kernel", kernel, (d_in, G * H)), ("recurrent_kernel", rec, (H, G * H))):
                if arr.shape != want:
                    raise ValueError(f"layer {k}{sfx}: expected Keras {what} of shape {_shape(want)}, "
                                     f"got {_shape(arr.shape)}")
            new[f"weight_ih_l{k}{sfx}"] = torch.from_numpy(torch_rows(kernel))
            new[f"weight_hh_l{k}{sfx}"] = torch.from_numpy(torch_rows(rec))
            if self.bias:
                b = np.asarray(flat[per * i + 2], dtype=np.float64)
                want_b = (2, G * H) if reset_after else (G * H,)
                if b.shape != want_b:
                    hint = " (a (2, 3H) bias means Keras reset_after=True: build GRU(..., reset_after=True))" \
                        if b.shape == (2, G * H) else ""
                    raise ValueError(f"layer {k}{sfx}: expected Keras bias of shape {_shape(want_b)}, "
                                     f"got {_shape(b.shape)}{hint}")
                b_ih, b_hh = (b[0], b[1]) if reset_after else (b, np.zeros_like(b))
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
        defaults = {"activation": "tanh", "recurrent_activation": "sigmoid", "reset_after": True}
        for key, value in self.cell.options().items():
            if defaults.get(key) != value:
                s += f", {key}={value!r}"
        return s
