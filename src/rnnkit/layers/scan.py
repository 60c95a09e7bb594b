"""Fast time loop: LSTM, GRU and Elman recurrences as one autograd Function with explicit BPTT.

:meth:`rnnkit.layers.recurrent.Recurrent._scan` calls :func:`scan` first, which hands the work to the native
C++ kernel (:mod:`rnnkit.layers.native`, the same computation) on the CPU when it is available; what follows
is the Python version, the fallback and the GPU path, and the kernel's test oracle. The forward pass steps the cell
with autograd off, writing every step into preallocated time-major buffers (gate activations, states,
raw recurrent projections). The backward pass is hand-written backpropagation through time: the
factors that do not depend on the incoming gradient (activation derivatives, gate products) are formed
for all steps at once, so each step costs a few elementwise ops plus one matmul ``dZ_t @ W_hh`` (two for
GRU ``reset_after=False``, whose n-gate reads ``r ⊙ h``). The gradients of the recurrent weights,
biases and layer-norm gain/shift are single matmuls/sums over the (T*B, G*H) gradient buffer after the
loop, and the gradient of ``gx`` comes back whole, so the caller's ``F.linear`` yields W_ih's gradient
in one matmul too.

Shapes: B batch, T steps, H hidden size, G gate blocks; buffers are time-major (T, B, ...).
Activation derivatives are taken from the activation's output (as torch does for tanh, sigmoid, relu);
for ``hard_sigmoid_keras2`` this differs from autograd's clamp only at the two kink points.
:func:`scan` returns None for cells or activations it does not know; the caller then runs autograd.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from rnnkit.layers import native
from rnnkit.layers.activations import ACTIVATIONS
from rnnkit.layers.cell import LN_EPS, Cell, gate_norm

Tensor = torch.Tensor
# torch's hardsigmoid backward multiplies by 1/6 rounded to float32, also for float64; so do we, so that both
# engines agree
_SIXTH = float(torch.tensor(1 / 6, dtype=torch.float32))
_KNOWN = tuple(native.ACT_CODES)  # the activations both engines have derivatives for


def _act_name(fn: object) -> str | None:
    """The name of a named activation function with a known derivative, else None."""
    return next((n for n in _KNOWN if ACTIVATIONS[n] is fn), None)


def _apply_(x: Tensor, act: str) -> Tensor:
    """Apply ``act`` to x in place."""
    if act == "tanh":
        return x.tanh_()
    if act == "sigmoid":
        return x.sigmoid_()
    if act == "relu":
        return x.relu_()
    if act == "hard_sigmoid":
        return F.hardsigmoid(x, inplace=True)
    if act == "hard_sigmoid_keras2":
        return x.mul_(0.2).add_(0.5).clamp_(0.0, 1.0)
    return x


def _apply_out(x: Tensor, out: Tensor, act: str) -> Tensor:
    """Write ``act(x)`` into out."""
    if act == "tanh":
        return torch.tanh(x, out=out)
    if act == "sigmoid":
        return torch.sigmoid(x, out=out)
    if act == "relu":
        return torch.clamp_min(x, 0.0, out=out)
    return _apply_(out.copy_(x), act)


def _deriv(y: Tensor, act: str) -> Tensor | None:
    """``act'`` from the activation's output y (any shape); None means 1 (identity)."""
    if act == "tanh":
        return 1.0 - y * y
    if act == "sigmoid":
        return y * (1.0 - y)
    if act == "relu":
        return (y > 0).to(y.dtype)
    if act in ("hard_sigmoid", "hard_sigmoid_keras2"):
        return ((y > 0) & (y < 1)).to(y.dtype) * (_SIXTH if act == "hard_sigmoid" else 0.2)
    return None


def _ln(z: Tensor, gain: Tensor, shift: Tensor, groups: int) -> Tensor:
    """Layer norm of each of ``groups`` blocks of z (B, groups*H), then gain and shift (as ``cell.gate_norm``).

    A layer norm over (B*groups, H) rows: on CPU about 2x faster than the equivalent group norm."""
    B, F = z.shape
    y = torch.native_layer_norm(z.reshape(B * groups, F // groups), (F // groups,), None, None, LN_EPS)[0]
    return torch.addcmul(shift, y.view(B, F), gain)


def _ln_stats(z: Tensor, groups: int) -> tuple[Tensor, Tensor]:
    """Normalised input xhat (B, T, groups, H) and 1/std (B, T, groups, 1), as batch-major views, of the
    time-major raw projections z (T, B, groups*H) (one layer-norm call without gain and shift)."""
    T, B, F = z.shape
    xhat, _, rstd = torch.native_layer_norm(z.reshape(T * B * groups, F // groups), (F // groups,), None, None, LN_EPS)
    return xhat.view(T, B, groups, -1).transpose(0, 1), rstd.view(T, B, groups, 1).transpose(0, 1)


def _ln_backward(dy: Tensor, xhat: Tensor, rstd: Tensor, gain: Tensor, out: Tensor) -> Tensor:
    """Gradient wrt the raw projection (B, G*H), written into out, from dy (B, G*H) wrt the layer-norm output.

    ``xhat`` (B, G, H) and ``rstd`` (B, G, 1) are this step's statistics, ``gain`` is (G, H):
    dz = rstd * (dx̂ - mean(dx̂) - x̂ mean(dx̂ x̂)) with dx̂ = dy * gain, means over each block's H entries.
    """
    n = gain.shape[1]
    d = dy.unflatten(-1, gain.shape) * gain
    s1 = d.sum(-1, keepdim=True)
    s2 = torch.linalg.vecdot(d, xhat).unsqueeze_(-1)
    d.sub_(s1, alpha=1.0 / n).addcmul_(xhat, s2, value=-1.0 / n)
    torch.mul(d, rstd, out=out.unflatten(-1, gain.shape))
    return out


def _ln_param_grads(dy: Tensor, xhat: Tensor) -> tuple[Tensor, Tensor]:
    """Gain and shift gradients (G*H,) from dy (T, B, G*H) wrt the layer-norm output and xhat (T, B, G, H)."""
    return (dy * xhat.flatten(-2)).sum((0, 1)), dy.sum((0, 1))


def _proj(h: Tensor, wt: Tensor, b: Tensor | None, out: Tensor) -> Tensor:
    """``h W^T + b`` (B, F) into ``out``; ``wt`` is W transposed (H, F)."""
    return torch.mm(h, wt, out=out) if b is None else torch.addmm(b, h, wt, out=out)


def _preact(a: Tensor, x: Tensor, h: Tensor, wt: Tensor, b: Tensor | None, z: Tensor | None,
            norm: tuple[Tensor, Tensor, int] | None) -> None:
    """Gate pre-activations ``a = x + [LN](W_hh h + b_hh)`` (B, G*H) in place. Without layer norm and with a
    bias, ``a`` already holds ``x + b`` (added for all steps at once); with it, the raw projection goes to
    ``z`` for the backward pass and ``norm`` is (gain, shift, gates)."""
    if norm is not None:
        torch.add(x, _ln(_proj(h, wt, b, z), *norm), out=a)
    elif b is None:
        torch.addmm(x, h, wt, out=a)
    else:
        a.addmm_(h, wt)


def _states(gx: Tensor, h0: Tensor, H: int, drop: Tensor | None):
    """State buffers for a scan over gx (B, T, F): ``Hp`` (B, T, H) the state entering each step (``Hp[:, 0]`` =
    h0), ``hT`` (B, H), ``Hr`` (B, T, H) h_{t-1} as W_hh sees it (Hp itself without dropout), and the list of
    slots the steps write their new state into (``Hp[:, t+1]``, the last one ``hT``)."""
    B, T = gx.shape[:2]
    Hp, hT = gx.new_empty(B, T, H), gx.new_empty(B, H)
    Hp[:, 0] = h0
    return Hp, hT, (gx.new_empty(B, T, H) if drop is not None else Hp), (*Hp.unbind(1)[1:], hT)


def _outputs(Hp: Tensor, hT: Tensor, mf: Tensor | None) -> Tensor:
    """Layer outputs (B, T, H): the states after each step, zero where the mask mf (B, T, 1) is 0."""
    out = torch.empty_like(Hp)
    out[:, :-1], out[:, -1] = Hp[:, 1:], hT
    return out if mf is None else out.mul_(mf)


@dataclass(frozen=True)
class _Spec:
    kind: str  # "lstm", "gru" (reset_after=True), "gru_rb" (reset before: reset_after=False), "rnn"
    hidden: int
    act: str
    rec_act: str


def cell_spec(cell: Cell) -> _Spec | None:
    """What :func:`scan` needs to know of a cell (its ``scan_kind`` and named activations), or None when it cannot
    run it (a cell with no hand-written BPTT, or an activation without a known derivative)."""
    kind = cell.scan_kind()
    if kind is None:
        return None
    act, rec = _act_name(cell.act), _act_name(cell.rec_act)
    if kind == "rnn":
        rec = "identity"
    return None if act is None or rec is None else _Spec(kind, cell.hidden_size, act, rec)


# ---------------------------------------------------------------------------------------------- forward
# Buffers are batch-major (B, T, ...) like gx and the outputs, so nothing is transposed; a step reads and
# writes the rows [:, t] (strided, which BLAS and elementwise kernels take as they are).
def _lstm_forward(s: _Spec, gx, w, b, gain, shift, drop, m, h0, c0):
    T, H, ln = gx.shape[1], s.hidden, gain is not None
    A = gx + b if b is not None and not ln else torch.empty_like(gx)  # pre-activations -> gate activations
    Z = gx.new_empty(T, gx.shape[0], 4 * H) if ln else None  # time-major for the layer-norm statistics
    Hp, hT, Hr, h_next = _states(gx, h0, H, drop)
    Cp, cT, TC = torch.empty_like(Hp), torch.empty_like(hT), torch.empty_like(Hp)  # c_{t-1}, c_T, φ(c_t)
    Cp[:, 0] = c0
    wt, hp, hr, cp, tcs = w.t(), Hp.unbind(1), Hr.unbind(1), Cp.unbind(1), TC.unbind(1)
    a_s, xs, c_next = A.unbind(1), gx.unbind(1), (*cp[1:], cT)
    ms = m.unbind(1) if m is not None else None
    for t in range(T):
        a, h = a_s[t], hp[t] if drop is None else torch.mul(hp[t], drop, out=hr[t])
        _preact(a, xs[t], h, wt, b, Z[t] if ln else None, (gain, shift, 4) if ln else None)
        _apply_(a[:, : 2 * H], s.rec_act)
        _apply_(a[:, 3 * H:], s.rec_act)
        _apply_(a[:, 2 * H: 3 * H], s.act)
        c = torch.mul(a[:, H: 2 * H], cp[t], out=c_next[t]).addcmul_(a[:, :H], a[:, 2 * H: 3 * H])
        if ms is not None:
            torch.where(ms[t], c, cp[t], out=c)
        hn = torch.mul(a[:, 3 * H:], _apply_out(c, tcs[t], s.act), out=h_next[t])
        if ms is not None:
            torch.where(ms[t], hn, hp[t], out=hn)
    return Hp, hT, (hT.clone(), cT.clone()), {"A": A, "Z": Z, "Hp": Hp, "Hr": Hr, "Cp": Cp, "TC": TC}


def _gru_forward(s: _Spec, gx, w, b, gain, shift, drop, m, h0, c0):
    T, H, ln = gx.shape[1], s.hidden, gain is not None
    R = gx.new_empty(T, gx.shape[0], 3 * H)  # raw W_hh h + b_hh, time-major for the layer-norm statistics
    Gt = torch.empty_like(gx)  # gates r, z, n
    Hp, hT, Hr, h_next = _states(gx, h0, H, drop)
    tmp = torch.empty_like(hT)
    wt, hp, hr, rs, gs, xs = w.t(), Hp.unbind(1), Hr.unbind(1), R.unbind(0), Gt.unbind(1), gx.unbind(1)
    ms = m.unbind(1) if m is not None else None
    for t in range(T):
        g, x, h = gs[t], xs[t], hp[t] if drop is None else torch.mul(hp[t], drop, out=hr[t])
        y = _proj(h, wt, b, rs[t])
        if ln:
            y = _ln(y, gain, shift, 3)
        _apply_(torch.add(x[:, : 2 * H], y[:, : 2 * H], out=g[:, : 2 * H]), s.rec_act)
        n = _apply_(torch.addcmul(x[:, 2 * H:], g[:, :H], y[:, 2 * H:], out=g[:, 2 * H:]), s.act)
        hn = torch.addcmul(n, g[:, H: 2 * H], torch.sub(hp[t], n, out=tmp), out=h_next[t])
        if ms is not None:
            torch.where(ms[t], hn, hp[t], out=hn)
    return Hp, hT, (hT.clone(),), {"R": R, "G": Gt, "Hp": Hp, "Hr": Hr}


def _gru_rb_forward(s: _Spec, gx, w, b, gain, shift, drop, m, h0, c0):
    B, T, H, ln = gx.shape[0], gx.shape[1], s.hidden, gain is not None
    R, N = gx.new_empty(T, B, 2 * H), gx.new_empty(T, B, H)  # raw W_hrz h + b_rz, W_hn (r ⊙ h) + b_n (T-major)
    RH, Gt = gx.new_empty(B, T, H), torch.empty_like(gx)  # r ⊙ h_rec; gates r, z, n
    Hp, hT, Hr, h_next = _states(gx, h0, H, drop)
    tmp = torch.empty_like(hT)
    w_rz, w_n = w[: 2 * H].t(), w[2 * H:].t()
    b_rz, b_n = (None, None) if b is None else (b[: 2 * H], b[2 * H:])
    g_rz, s_rz, g_n, s_n = (None,) * 4 if not ln else (gain[: 2 * H], shift[: 2 * H], gain[2 * H:], shift[2 * H:])
    hp, hr, gs, xs = Hp.unbind(1), Hr.unbind(1), Gt.unbind(1), gx.unbind(1)
    ms = m.unbind(1) if m is not None else None
    for t in range(T):
        g, x, h = gs[t], xs[t], hp[t] if drop is None else torch.mul(hp[t], drop, out=hr[t])
        y = _proj(h, w_rz, b_rz, R[t])
        if ln:
            y = _ln(y, g_rz, s_rz, 2)
        _apply_(torch.add(x[:, : 2 * H], y, out=g[:, : 2 * H]), s.rec_act)
        rh = torch.mul(g[:, :H], h, out=RH[:, t])
        y = _proj(rh, w_n, b_n, N[t])
        if ln:
            y = _ln(y, g_n, s_n, 1)
        n = _apply_(torch.add(x[:, 2 * H:], y, out=g[:, 2 * H:]), s.act)
        hn = torch.addcmul(n, g[:, H: 2 * H], torch.sub(hp[t], n, out=tmp), out=h_next[t])
        if ms is not None:
            torch.where(ms[t], hn, hp[t], out=hn)
    return Hp, hT, (hT.clone(),), {"R": R, "N": N, "RH": RH, "G": Gt, "Hp": Hp, "Hr": Hr}


def _rnn_forward(s: _Spec, gx, w, b, gain, shift, drop, m, h0, c0):
    T, H, ln = gx.shape[1], s.hidden, gain is not None
    A = gx + b if b is not None and not ln else torch.empty_like(gx)
    Z = gx.new_empty(T, gx.shape[0], H) if ln else None  # time-major for the layer-norm statistics
    Hp, hT, Hr, h_next = _states(gx, h0, H, drop)
    wt, hp, hr, a_s, xs = w.t(), Hp.unbind(1), Hr.unbind(1), A.unbind(1), gx.unbind(1)
    ms = m.unbind(1) if m is not None else None
    for t in range(T):
        a, h = a_s[t], hp[t] if drop is None else torch.mul(hp[t], drop, out=hr[t])
        _preact(a, xs[t], h, wt, b, Z[t] if ln else None, (gain, shift, 1) if ln else None)
        hn = _apply_out(a, h_next[t], s.act)
        if ms is not None:
            torch.where(ms[t], hn, hp[t], out=hn)
    return Hp, hT, (hT.clone(),), {"Z": Z, "Hp": Hp, "hT": hT, "Hr": Hr}


# ---------------------------------------------------------------------------------------------- backward
# Each backward gets D (B, T, H), the gradient wrt the outputs (times the mask), and returns the gradient
# wrt gx (B, T, G*H), the parameter gradients (dW_hh[, db_hh][, d gain, d shift]) and the initial-state ones.
# Activation derivatives are taken inside the loop with torch's fused backward kernels (the ones autograd
# runs), while the step's gates are in cache; a step's one matmul is in _prev.
_SIG_BWD, _TANH_BWD = torch.ops.aten.sigmoid_backward.grad_input, torch.ops.aten.tanh_backward.grad_input
_RELU_BWD = torch.ops.aten.threshold_backward.grad_input


def _act_bwd(grad: Tensor, y: Tensor, act: str, out: Tensor) -> Tensor:
    """``grad * act'`` into out, act' from the activation's output y."""
    if act == "sigmoid":
        return _SIG_BWD(grad, y, grad_input=out)
    if act == "tanh":
        return _TANH_BWD(grad, y, grad_input=out)
    if act == "relu":
        return _RELU_BWD(grad, y, 0, grad_input=out)
    d = _deriv(y, act)
    return out.copy_(grad) if d is None else torch.mul(grad, d, out=out)


def _prev(dst: Tensor, base: Tensor, direct: Tensor | None, dz: Tensor | None, w: Tensor | None,
          drop: Tensor | None, tmp: Tensor, rec: Tensor | None = None) -> Tensor:
    """dh_{t-1} (B, H) into dst: ``base + direct + drop ⊙ rec`` with ``rec = dz @ w`` unless given."""
    if drop is None and rec is None:
        torch.addmm(base, dz, w, out=dst)
    else:
        rec = torch.mm(dz, w, out=tmp) if rec is None else rec
        torch.add(base, rec, out=dst) if drop is None else torch.addcmul(base, rec, drop, out=dst)
    return dst if direct is None else dst.add_(direct)


def _split_mask(g: Tensor, m: Tensor | None, k: Tensor | None, out: Tensor) -> tuple[Tensor, Tensor | None]:
    """For a state gradient g (B, H) at a step with mask m and keep = 1 - m (B, 1): the part the cell gets
    (``g * m``, into out) and the part carried past the step (``g * keep``); g itself without masks."""
    return (g, None) if m is None else (torch.mul(g, m, out=out), g * k)


def _lstm_backward(s: _Spec, sv, w, b, gain, drop, m, mf, D, dfin, need_h0):
    A, Cp, TC = sv["A"], sv["Cp"], sv["TC"]
    T, H = A.shape[1], s.hidden
    keep = None if m is None else 1.0 - mf
    dA = torch.empty_like(A)  # gradient wrt the pre-activations = wrt gx
    dZ = torch.empty_like(A) if gain is not None else dA  # wrt W_hh h + b_hh
    if gain is not None:
        xhat, rstd = _ln_stats(sv["Z"], 4)
        g4 = gain.view(4, H)
    dh, dc = D[:, T - 1] + dfin[0], dfin[1].clone()
    nxt, tmp, zero, u, v, dhm = (torch.empty_like(dh) for _ in range(6))
    zero.zero_()
    a_s, da_s, cp, tcs = A.unbind(1), dA.unbind(1), Cp.unbind(1), TC.unbind(1)
    for t in range(T - 1, -1, -1):
        a, da, mt, kt = a_s[t], da_s[t], (None if m is None else mf[:, t]), (None if m is None else keep[:, t])
        i, f, g, o = a[:, :H], a[:, H: 2 * H], a[:, 2 * H: 3 * H], a[:, 3 * H:]
        dhc, dh_keep = _split_mask(dh, mt, kt, dhm)
        dc_keep = None if mt is None else dc * kt
        if mt is not None:
            dc.mul_(mt)
        dc.add_(_act_bwd(torch.mul(dhc, o, out=u), tcs[t], s.act, v))
        _act_bwd(torch.mul(dhc, tcs[t], out=u), o, s.rec_act, da[:, 3 * H:])
        _act_bwd(torch.mul(dc, g, out=u), i, s.rec_act, da[:, :H])
        _act_bwd(torch.mul(dc, cp[t], out=u), f, s.rec_act, da[:, H: 2 * H])
        _act_bwd(torch.mul(dc, i, out=u), g, s.act, da[:, 2 * H: 3 * H])
        dc.mul_(f)
        if dc_keep is not None:
            dc.add_(dc_keep)
        if gain is not None:
            _ln_backward(da, xhat[:, t], rstd[:, t], g4, dZ[:, t])
        if t or need_h0:
            dh, nxt = _prev(nxt, D[:, t - 1] if t else zero, dh_keep, dZ[:, t], w, drop, tmp), dh
    grads = _param_grads(dZ, sv["Hr"], b)
    if gain is not None:
        grads += _ln_param_grads(dA, xhat)
    return dA, grads, (dh, dc)


def _gru_backward(s: _Spec, sv, w, b, gain, drop, m, mf, D, dfin, need_h0):
    Gt, Hp = sv["G"], sv["Hp"]
    T, H = Gt.shape[1], s.hidden
    if gain is not None:
        xhat, rstd = _ln_stats(sv["R"], 3)
        g3, yn = gain.view(3, H), xhat[:, :, 2] * gain[2 * H:] + sv["shift"][2 * H:]
    else:
        yn = sv["R"].transpose(0, 1)[..., 2 * H:]  # r multiplies this in the n gate
    keep = None if m is None else 1.0 - mf
    dX = torch.empty_like(Gt)  # wrt gx
    dY = torch.empty_like(Gt)  # wrt the (normalised) recurrent projection
    dR = torch.empty_like(Gt) if gain is not None else dY  # wrt W_hh h + b_hh
    dh = D[:, T - 1] + dfin[0]
    nxt, tmp, zero, u, v, dhm = (torch.empty_like(dh) for _ in range(6))
    zero.zero_()
    g_s, dx_s, dy_s, hp = Gt.unbind(1), dX.unbind(1), dY.unbind(1), Hp.unbind(1)
    for t in range(T - 1, -1, -1):
        g, dx, dy = g_s[t], dx_s[t], dy_s[t]
        r, z, n = g[:, :H], g[:, H: 2 * H], g[:, 2 * H:]
        dhc, dh_keep = _split_mask(dh, None if m is None else mf[:, t], None if m is None else keep[:, t], dhm)
        direct = torch.mul(dhc, z, out=v)  # h_t = n + z (h_{t-1} - n)
        dxn = _act_bwd(torch.sub(dhc, direct, out=u), n, s.act, dx[:, 2 * H:])
        _act_bwd(torch.mul(dhc, torch.sub(hp[t], n, out=u), out=u), z, s.rec_act, dy[:, H: 2 * H])
        _act_bwd(torch.mul(dxn, yn[:, t], out=u), r, s.rec_act, dy[:, :H])
        torch.mul(dxn, r, out=dy[:, 2 * H:])
        if dh_keep is not None:
            direct.add_(dh_keep)
        if gain is not None:
            _ln_backward(dy, xhat[:, t], rstd[:, t], g3, dR[:, t])
        if t or need_h0:
            dh, nxt = _prev(nxt, D[:, t - 1] if t else zero, direct, dR[:, t], w, drop, tmp), dh
    dX[..., : 2 * H] = dY[..., : 2 * H]
    grads = _param_grads(dR, sv["Hr"], b)
    if gain is not None:
        grads += _ln_param_grads(dY, xhat)
    return dX, grads, (dh,)


def _gru_rb_backward(s: _Spec, sv, w, b, gain, drop, m, mf, D, dfin, need_h0):
    RH, Gt, Hp, Hr = sv["RH"], sv["G"], sv["Hp"], sv["Hr"]
    T, H = Gt.shape[1], s.hidden
    keep = None if m is None else 1.0 - mf
    if gain is not None:
        x_rz, rs_rz = _ln_stats(sv["R"], 2)
        x_n, rs_n = _ln_stats(sv["N"], 1)
        g_rz, g_n = gain[: 2 * H].view(2, H), gain[2 * H:].view(1, H)
    dX = torch.empty_like(Gt)  # wrt gx
    dY = RH.new_empty(RH.shape[0], T, 2 * H)  # wrt the r, z pre-activations (recurrent part after layer norm)
    dR = torch.empty_like(dY) if gain is not None else dY  # wrt W_hrz h + b_rz
    dN = torch.empty_like(RH) if gain is not None else dX[..., 2 * H:]  # wrt W_hn (r ⊙ h) + b_n
    w_rz, w_n = w[: 2 * H], w[2 * H:]
    dh = D[:, T - 1] + dfin[0]
    nxt, tmp, zero, u, v, dhm, drh = (torch.empty_like(dh) for _ in range(7))
    zero.zero_()
    g_s, dx_s, dy_s, hp, hr = Gt.unbind(1), dX.unbind(1), dY.unbind(1), Hp.unbind(1), Hr.unbind(1)
    for t in range(T - 1, -1, -1):
        g, dx, dy = g_s[t], dx_s[t], dy_s[t]
        r, z, n = g[:, :H], g[:, H: 2 * H], g[:, 2 * H:]
        dhc, dh_keep = _split_mask(dh, None if m is None else mf[:, t], None if m is None else keep[:, t], dhm)
        direct = torch.mul(dhc, z, out=v)
        dxn = _act_bwd(torch.sub(dhc, direct, out=u), n, s.act, dx[:, 2 * H:])
        dn = _ln_backward(dxn, x_n[:, t], rs_n[:, t], g_n, dN[:, t]) if gain is not None else dxn
        torch.mm(dn, w_n, out=drh)  # wrt r ⊙ h_rec
        _act_bwd(torch.mul(drh, hr[t], out=u), r, s.rec_act, dy[:, :H])
        _act_bwd(torch.mul(dhc, torch.sub(hp[t], n, out=u), out=u), z, s.rec_act, dy[:, H:])
        if dh_keep is not None:
            direct.add_(dh_keep)
        drz = _ln_backward(dy, x_rz[:, t], rs_rz[:, t], g_rz, dR[:, t]) if gain is not None else dy
        if t or need_h0:
            rec = torch.mm(drz, w_rz, out=tmp).addcmul_(drh, r)
            dh, nxt = _prev(nxt, D[:, t - 1] if t else zero, direct, None, None, drop, tmp, rec), dh
    dX[..., : 2 * H] = dY
    grads = tuple(torch.cat(p) for p in zip(_param_grads(dR, Hr, b), _param_grads(dN, RH, b), strict=True))
    if gain is not None:
        grads += tuple(torch.cat(p) for p in zip(_ln_param_grads(dY, x_rz), _ln_param_grads(dX[..., 2 * H:], x_n),
                                                 strict=True))
    return dX, grads, (dh,)


def _rnn_backward(s: _Spec, sv, w, b, gain, drop, m, mf, D, dfin, need_h0):
    Hp, hT = sv["Hp"], sv["hT"]
    T, H = Hp.shape[1], s.hidden
    keep = None if m is None else 1.0 - mf
    dA = torch.empty(Hp.shape[0], T, H, dtype=Hp.dtype, device=Hp.device)
    dZ = torch.empty_like(dA) if gain is not None else dA
    if gain is not None:
        xhat, rstd = _ln_stats(sv["Z"], 1)
        g1 = gain.view(1, H)
    dh = D[:, T - 1] + dfin[0]
    nxt, tmp, zero, dhm = (torch.empty_like(dh) for _ in range(4))
    zero.zero_()
    h_new = (*Hp.unbind(1)[1:], hT)  # h_t, the activation's output
    for t in range(T - 1, -1, -1):
        dhc, dh_keep = _split_mask(dh, None if m is None else mf[:, t], None if m is None else keep[:, t], dhm)
        _act_bwd(dhc, h_new[t], s.act, dA[:, t])
        if gain is not None:
            _ln_backward(dA[:, t], xhat[:, t], rstd[:, t], g1, dZ[:, t])
        if t or need_h0:
            dh, nxt = _prev(nxt, D[:, t - 1] if t else zero, dh_keep, dZ[:, t], w, drop, tmp), dh
    grads = _param_grads(dZ, sv["Hr"], b)
    if gain is not None:
        grads += _ln_param_grads(dA, xhat)
    return dA, grads, (dh,)


def _param_grads(dz: Tensor, hr: Tensor, b: Tensor | None) -> tuple[Tensor, ...]:
    """``(dW, db)`` (or ``(dW,)`` without bias) from dz (B, T, F) wrt ``W hr + b``, hr (B, T, H): one matmul and
    one sum over the B*T rows."""
    dz2 = dz.reshape(-1, dz.shape[-1])
    dw = dz2.t().mm(hr.reshape(-1, hr.shape[-1]))
    return (dw,) if b is None else (dw, dz2.sum(0))


_FORWARD = {"lstm": _lstm_forward, "gru": _gru_forward, "gru_rb": _gru_rb_forward, "rnn": _rnn_forward}
_BACKWARD = {"lstm": _lstm_backward, "gru": _gru_backward, "gru_rb": _gru_rb_backward, "rnn": _rnn_backward}


class ScanFunction(torch.autograd.Function):
    """The whole recurrence of one layer and direction as one autograd node.

    ``apply(spec, gx, w_hh, b_hh, ln_gain, ln_shift, drop, active, h0, c0)`` with gx (B, T, G*H), w_hh
    (G*H, H), b_hh / ln_gain / ln_shift (G*H,) or None, drop (B, H) recurrent-dropout mask or None,
    active (B, T) bool or None, h0 (B, H), c0 (B, H) for LSTM else None. Returns outputs (B, T, H), h_T
    and, for LSTM, c_T.
    """

    @staticmethod
    def forward(ctx, spec, gx, w, b, gain, shift, drop, active, h0, c0):  # noqa: D102
        m = None if active is None else active.unsqueeze(2)  # (B, T, 1)
        Hp, hT, finals, sv = _FORWARD[spec.kind](spec, gx, w, b, gain, shift, drop, m, h0, c0)
        mf = None if m is None else m.to(gx.dtype)
        sv["shift"] = shift
        keys = [k for k, v in sv.items() if v is not None]
        ctx.spec, ctx.keys = spec, keys
        ctx.save_for_backward(w, b, gain, drop, m, mf, *(sv[k] for k in keys))
        return (_outputs(Hp, hT, mf), *finals)

    @staticmethod
    @once_differentiable
    def backward(ctx, dout, *dfin):  # noqa: D102
        w, b, gain, drop, m, mf, *rest = ctx.saved_tensors
        sv = {"Z": None, "shift": None, **dict(zip(ctx.keys, rest, strict=True))}
        D = dout if mf is None else dout * mf
        need = ctx.needs_input_grad
        dgx, grads, dstate = _BACKWARD[ctx.spec.kind](ctx.spec, sv, w, b, gain, drop, m, mf, D, dfin, need[8])
        dw, db = grads[0], (grads[1] if b is not None else None)
        dgain, dshift = grads[-2:] if gain is not None else (None, None)
        dc0 = dstate[1] if len(dstate) > 1 and need[9] else None
        return (None, dgx, dw, db, dgain, dshift, None, None, dstate[0] if need[8] else None, dc0)


def scan(
    cell: Cell,
    gx: Tensor,
    state: tuple[Tensor, ...],
    p: dict[str, Tensor | None],
    active: Tensor | None,
    drop: Tensor | None,
    use_native: bool = False,
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """Run ``cell`` over gx (B, T, G*H) from ``state``; the cell must have a :func:`cell_spec`.

    ``p`` holds the layer and direction's parameters (``weight_hh``, ``bias_hh``, ``ln_*`` or None); gx is the
    input projection *before* the input-side layer norm, which is applied here (fused into the native kernel's
    steps). ``active`` (B, T) bool marks live steps (finished sequences keep their state and emit zeros);
    ``drop`` (B, H) is the recurrent-dropout mask applied to h_{t-1} where it enters W_hh. ``use_native`` runs
    the C++ kernel (:mod:`rnnkit.layers.native`). Returns outputs (B, T, H) and the final state tuple.
    """
    spec = cell_spec(cell)
    assert spec is not None, "scan() called for a cell it cannot run"
    gain, shift = p.get("ln_hh_weight"), p.get("ln_hh_bias")
    g_ih, s_ih = p.get("ln_ih_weight"), p.get("ln_ih_bias")
    c0 = state[1] if spec.kind == "lstm" else None
    if use_native:
        res = native.scan(spec.kind, spec.act, spec.rec_act, gx, p["weight_hh"], p["bias_hh"], gain, shift, g_ih,
                          s_ih, drop, active, state[0], c0)
        return res[0], tuple(res[1:])
    if g_ih is not None:
        gx = gate_norm(gx, g_ih, s_ih, cell.num_gates)
    res = ScanFunction.apply(spec, gx, p["weight_hh"], p["bias_hh"], gain, shift, drop, active, state[0], c0)
    return res[0], tuple(res[1:])
