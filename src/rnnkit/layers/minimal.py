"""minGRU and minLSTM (Feng et al. 2024, "Were RNNs All We Needed?"): gates that read only ``x_t``.

    minGRU:   z_t = σ(W_z x_t + b_z)   h̃_t = g(W_h x_t + b_h)   h_t = (1 - z_t) ⊙ h_{t-1} + z_t ⊙ h̃_t
    minLSTM:  f_t = σ(W_f x_t + b_f)   i_t = σ(W_i x_t + b_i)   h̃_t = g(W_h x_t + b_h)
              f'_t, i'_t = f_t / (f_t + i_t), i_t / (f_t + i_t)      h_t = f'_t ⊙ h_{t-1} + i'_t ⊙ h̃_t
    g(v) = v + 1/2 for v >= 0, σ(v) otherwise (positive, so that the scan can run in log space)

No weight multiplies h_{t-1}, so ``h_t = a_t ⊙ h_{t-1} + b_t`` is a linear recurrence with a_t, b_t computed for
all steps at once; the ``parallel`` engine solves it without stepping:

    log h_t = log A_t + logcumsumexp_s<=t (log b_s - log A_s),    log A_t = Σ_s<=t log a_s

(h_0 enters as the first term), in blocks of 128 steps with the state carried from block to block so that the
sums of logs stay short. Everything stays in log space — products of gates become sums, no division by a
vanishing A_t — which is numerically stable where the direct ``A_t Σ b_s / A_s`` underflows. Variable lengths
make a padded step the identity (a = 1, b = 0). The same cell steps one ``x_t`` at a time (``engine="autograd"``,
streaming inference ``y, h = layer(x_t, h)``, and what ONNX export traces) and agrees with the parallel scan.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rnnkit.layers import native
from rnnkit.layers.cell import Cell, Params, ParamSpec
from rnnkit.layers.recurrent import Recurrent
from rnnkit.layers.registry import register_cell

CHUNK = 128  # steps per block of the parallel scan
LINEAR_ON_CPU = True  # on the CPU, the stepping linear scan (faster there); False: the log-space scan everywhere


def g(v: torch.Tensor) -> torch.Tensor:
    """The paper's positive candidate activation: v + 1/2 for v >= 0, sigmoid(v) below."""
    return torch.where(v >= 0, v + 0.5, torch.sigmoid(v))


def log_g(v: torch.Tensor) -> torch.Tensor:
    """log g(v), computed without forming g(v) where it is tiny."""
    return torch.where(v >= 0, torch.log(F.relu(v) + 0.5), -F.softplus(-v))


def _log_scan(log_a: torch.Tensor, log_b: torch.Tensor, h0: torch.Tensor | None) -> torch.Tensor:
    """h_t (B, T, H) of ``h_t = a_t h_{t-1} + b_t`` from log a, log b (B, T, H) and h0 (B, H) >= 0 or None (0)."""
    a_star = torch.cumsum(log_a, dim=1)  # log A_t
    terms = log_b - a_star
    if h0 is not None:
        start = torch.log(h0.clamp_min(torch.finfo(h0.dtype).tiny)).unsqueeze(1)  # log h0 (0 as the tiniest)
        terms = torch.cat([start, terms], dim=1)
        return torch.exp(a_star + torch.logcumsumexp(terms, dim=1)[:, 1:])
    return torch.exp(a_star + torch.logcumsumexp(terms, dim=1))


class LinearScan(torch.autograd.Function):
    """``h_t = a_t ⊙ h_{t-1} + b_t`` for a, b (B, T, H) from h0 (B, H), stepping with one fused multiply-add per step
    and its hand-written backward (a reverse linear scan): memory-bound work that on the CPU beats the log-space
    scan's exp/log over every element. Returns h (B, T, H)."""

    @staticmethod
    def forward(ctx, a, b, h0):  # noqa: D102
        h = torch.empty_like(b)
        prev, a_s, b_s, h_s = h0, a.unbind(1), b.unbind(1), h.unbind(1)
        for t in range(len(h_s)):
            prev = torch.addcmul(b_s[t], a_s[t], prev, out=h_s[t])
        ctx.save_for_backward(a, h, h0)
        return h

    @staticmethod
    def backward(ctx, dh):  # noqa: D102
        a, h, h0 = ctx.saved_tensors
        g = torch.empty_like(dh)  # dL/dh_t through the outputs and every later step
        dh_s, a_s, g_s = dh.unbind(1), a.unbind(1), g.unbind(1)
        T = len(g_s)
        carry = dh_s[T - 1]
        g_s[T - 1].copy_(carry)
        for t in range(T - 2, -1, -1):
            carry = torch.addcmul(dh_s[t], a_s[t + 1], carry, out=g_s[t])
        prev = torch.cat([h0.unsqueeze(1), h[:, :-1]], 1)  # h_{t-1}
        return g * prev, g, g[:, 0] * a[:, 0]


class _MinimalCell(Cell):
    """Shared by minGRU and minLSTM: only input projections, no recurrent weight."""

    num_states = 1
    parallel = True  # sequence() solves the recurrence without stepping
    reference = True

    def param_specs(self, input_size: int, bias: bool, layer_norm: bool) -> list[ParamSpec]:
        gh = self.num_gates * self.hidden_size
        specs = [ParamSpec("weight_ih", (gh, input_size))]
        if bias:
            specs.append(ParamSpec("bias_ih", (gh,)))
        if layer_norm:
            specs += [ParamSpec("ln_ih_weight", (gh,), "ones"), ParamSpec("ln_ih_bias", (gh,), "zeros")]
        return specs

    def options(self) -> dict[str, object]:
        return {}

    def reference_options(self) -> dict[str, object]:  # noqa: D102 - see Cell.reference_options
        return {}

    def native_supported(self) -> bool:  # noqa: D102 - see Cell.native_supported
        return True

    def native(self, gx, state, p: Params, active, drop):  # noqa: D102 - see Cell.native
        hs, last = native.minimal_scan(self.name, gx, state[0], active)
        return (hs if active is None else hs * active.unsqueeze(2)), (last,)

    def coefficients(self, gx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """log a, log b (..., H) of the recurrence from the input projection gx (..., G*H)."""
        raise NotImplementedError

    def linear_coefficients(self, gx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """a, b (..., H) themselves (fewer elementwise ops than through the logs)."""
        log_a, log_b = self.coefficients(gx)
        return torch.exp(log_a), torch.exp(log_b)

    def step(self, gx, h_rec, state, p: Params):  # noqa: D102 - see Cell.step
        log_a, log_b = self.coefficients(gx)
        return (torch.exp(log_a) * h_rec + torch.exp(log_b),)

    def sequence(self, gx: torch.Tensor, state: tuple[torch.Tensor, ...], p: Params,
                 active: torch.Tensor | None) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]] | None:
        """The parallel scan over gx (B, T, G*H) from ``state``: outputs (B, T, H) and the final state; None when it
        cannot run (a negative h0, which the log-space scan cannot take: the step-by-step loop runs instead)."""
        h0 = state[0]
        if LINEAR_ON_CPU and gx.device.type == "cpu" and gx.shape[1]:  # a linear scan stepping in place
            a, b = self.linear_coefficients(gx)
            if active is not None:
                live = active.unsqueeze(2)
                a, b = torch.where(live, a, torch.ones_like(a)), torch.where(live, b, torch.zeros_like(b))
            h = LinearScan.apply(a, b, h0)
            return (h if active is None else h * active.unsqueeze(2)), (h[:, -1],)
        if bool((h0 < 0).any()):
            return None
        log_a, log_b = self.coefficients(gx)
        if active is not None:  # a padded step keeps the state: a = 1, b = 0
            live = active.unsqueeze(2)
            log_a = torch.where(live, log_a, torch.zeros_like(log_a))
            log_b = torch.where(live, log_b, torch.full_like(log_b, float("-inf")))
        # in blocks of CHUNK steps, each block's scan starting from the previous block's last state: log A_t then
        # spans at most CHUNK steps, so float32 keeps its precision at any T (one long cumsum would not)
        parts, h_prev = [], None if not bool(h0.any()) else h0
        for s in range(0, gx.shape[1], CHUNK):
            part = _log_scan(log_a[:, s: s + CHUNK], log_b[:, s: s + CHUNK], h_prev)
            parts.append(part)
            h_prev = part[:, -1]
        h = torch.cat(parts, 1) if len(parts) > 1 else parts[0] if parts else gx.new_zeros(gx.shape[0], 0, h0.shape[1])
        final = h[:, -1] if h.shape[1] else h0
        out = h if active is None else h * active.unsqueeze(2)
        return out, (final,)


class MinGRUCell(_MinimalCell):
    """One minGRU step (blocks z, h̃ of the input projection)."""

    name = "mingru"
    num_gates = 2
    gate_names = ("update", "candidate")
    sigmoid_gates = ("update",)

    def coefficients(self, gx):  # noqa: D102 - see _MinimalCell.coefficients
        k, v = gx.chunk(2, -1)
        log_z, log_1mz = -F.softplus(-k), -F.softplus(k)  # log σ(k), log (1 - σ(k))
        return log_1mz, log_z + log_g(v)

    def linear_coefficients(self, gx):  # noqa: D102 - see _MinimalCell.linear_coefficients
        k, v = gx.chunk(2, -1)
        z = torch.sigmoid(k)
        return 1.0 - z, z * g(v)

    def gates(self, gx, h, p: Params) -> dict[str, torch.Tensor]:
        return {"update": torch.sigmoid(gx.chunk(2, -1)[0])}

    def retention(self, gx, h, p: Params) -> torch.Tensor:  # noqa: D102 - see Cell.retention
        return torch.sigmoid(-gx.chunk(2, -1)[0])  # 1 - z_t


class MinLSTMCell(_MinimalCell):
    """One minLSTM step (blocks f, i, h̃ of the input projection)."""

    name = "minlstm"
    num_gates = 3
    gate_names = ("forget", "input", "candidate")
    sigmoid_gates = ("forget", "input")

    def coefficients(self, gx):  # noqa: D102 - see _MinimalCell.coefficients
        f, i, v = gx.chunk(3, -1)
        log_f, log_i = -F.softplus(-f), -F.softplus(-i)
        norm = torch.logaddexp(log_f, log_i)  # log (f + i)
        return log_f - norm, log_i - norm + log_g(v)

    def linear_coefficients(self, gx):  # noqa: D102 - see _MinimalCell.linear_coefficients
        f, i, v = gx.chunk(3, -1)
        f, i = torch.sigmoid(f), torch.sigmoid(i)
        s = f + i
        return f / s, (i / s) * g(v)

    def gates(self, gx, h, p: Params) -> dict[str, torch.Tensor]:
        f, i, _ = gx.chunk(3, -1)
        return {"forget": torch.sigmoid(f), "input": torch.sigmoid(i)}

    def retention(self, gx, h, p: Params) -> torch.Tensor:  # noqa: D102 - see Cell.retention
        f, i, _ = gx.chunk(3, -1)
        f, i = torch.sigmoid(f), torch.sigmoid(i)
        return f / (f + i)


def _layer(cell_cls):
    class Layer(Recurrent):
        cell_class = cell_cls

        def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, *, bidirectional: bool = False,
                     dropout: float = 0.0, recurrent_dropout: float = 0.0, layer_norm: bool = False,
                     bias: bool = True, batch_first: bool = True, merge_mode: str | None = "concat",
                     engine: str = "auto", device: torch.device | str | None = None,
                     dtype: torch.dtype | None = None) -> None:
            super().__init__(
                cell_cls(hidden_size), input_size, hidden_size, num_layers, bidirectional=bidirectional,
                dropout=dropout, recurrent_dropout=recurrent_dropout, layer_norm=layer_norm, bias=bias,
                batch_first=batch_first, merge_mode=merge_mode, engine=engine, device=device, dtype=dtype,
            )

    return Layer


@register_cell
class MinGRU(_layer(MinGRUCell)):
    """minGRU layer: ``out, h = MinGRU(64, 256, num_layers=2)(x, lengths=...)``; trains with the parallel scan."""


@register_cell
class MinLSTM(_layer(MinLSTMCell)):
    """minLSTM layer: ``out, h = MinLSTM(64, 256)(x)``; trains with the parallel scan."""
