"""The native C++ scan (rnnkit.layers.native) against the Python scan, in float64 and float32."""

from __future__ import annotations

import warnings

import pytest
import torch

import rnnkit
from rnnkit.layers import native
from rnnkit.layers.cell import gate_norm
from rnnkit.layers.scan import ScanFunction, _Spec

needs_native = pytest.mark.skipif(not native.enabled(), reason="the native kernel could not be built here")
B, T, H = 3, 6, 5
GATES = {"lstm": 4, "gru": 3, "gru_rb": 3, "rnn": 1}
ACTS = [("tanh", "sigmoid"), ("relu", "sigmoid"), ("identity", "hard_sigmoid"), ("sigmoid", "hard_sigmoid_keras2"),
        ("hard_sigmoid", "tanh")]


def _inputs(kind, dtype, scale=1.0, seed=0):
    g, G = torch.Generator().manual_seed(seed), GATES[kind] * H

    def r(*shape, s=1.0):
        return (s * torch.randn(*shape, generator=g, dtype=torch.float64)).to(dtype).requires_grad_()

    return {
        "gx": r(B, T, G, s=scale), "w": r(G, H, s=0.5), "b": r(G), "g_hh": r(G, s=0.3), "s_hh": r(G),
        "g_ih": r(G, s=0.3), "s_ih": r(G), "h0": r(B, H), "c0": r(B, H) if kind == "lstm" else None,
        "drop": torch.tensor([[2.0, 0.0, 2.0, 2.0, 0.0]] * B, dtype=dtype),
        "active": torch.arange(T)[None, :] < torch.tensor([6, 1, 4])[:, None],
    }


def _native(kind, act, rec, p, ln, drop, lengths):
    return native.scan(
        kind, act, rec, p["gx"], p["w"], p["b"], *((p["g_hh"], p["s_hh"], p["g_ih"], p["s_ih"]) if ln else (None,) * 4),
        p["drop"] if drop else None, p["active"] if lengths else None, p["h0"], p["c0"])


def _python(kind, act, rec, p, ln, drop, lengths):
    gx = gate_norm(p["gx"], p["g_ih"], p["s_ih"], GATES[kind]) if ln else p["gx"]
    return ScanFunction.apply(_Spec(kind, H, act, "identity" if kind == "rnn" else rec), gx, p["w"], p["b"],
                              p["g_hh"] if ln else None, p["s_hh"] if ln else None, p["drop"] if drop else None,
                              p["active"] if lengths else None, p["h0"], p["c0"])


def _outputs_and_grads(fn, p, *args):
    out = fn(*args[:3], p, *args[3:])
    g = torch.Generator().manual_seed(1)
    loss = sum((y * torch.randn(y.shape, generator=g, dtype=torch.float64).to(y.dtype)).sum() for y in out)
    params = [v for v in p.values() if v is not None and v.requires_grad]
    return [*(y.detach() for y in out), *torch.autograd.grad(loss, params, allow_unused=True)]


@needs_native
@pytest.mark.parametrize("kind", ["lstm", "gru", "gru_rb", "rnn"])
@pytest.mark.parametrize(("act", "rec"), ACTS)
@pytest.mark.parametrize("ln", [False, True], ids=["plain", "layer_norm"])
@pytest.mark.parametrize("extras", [(False, False), (True, True)], ids=["full", "dropout+lengths"])
def test_native_equals_python_scan(kind, act, rec, ln, extras):
    p = _inputs(kind, torch.float64)
    fast, slow = (_outputs_and_grads(f, p, kind, act, rec, ln, *extras) for f in (_native, _python))
    assert len(fast) == len(slow)
    for a, b in zip(fast, slow, strict=True):
        if b is None:  # a layer-norm parameter that is unused without layer norm
            assert a is None
            continue
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


@needs_native
@pytest.mark.parametrize("kind", ["lstm", "gru", "gru_rb", "rnn"])
def test_gradcheck(kind):
    p = _inputs(kind, torch.float64, seed=3)
    keys = [k for k in ("gx", "w", "b", "g_hh", "s_hh", "g_ih", "s_ih", "h0", "c0") if p[k] is not None]

    def f(*xs):
        return _native(kind, "tanh", "sigmoid", {**p, **dict(zip(keys, xs, strict=True))}, True, True, True)

    assert torch.autograd.gradcheck(f, tuple(p[k] for k in keys))


@needs_native
@pytest.mark.parametrize("kind", ["lstm", "gru", "gru_rb", "rnn"])
@pytest.mark.parametrize("scale", [1.0, 60.0], ids=["normal", "saturated"])
def test_float32_fast_math_is_accurate(kind, scale):
    """The kernel's own float32 exp/tanh: within float32 rounding of the float64 result, also far into
    saturation (|pre-activation| up to a few hundred) where exp would overflow unclamped."""
    p64 = _inputs(kind, torch.float64, scale=scale)
    p32 = {k: (v.detach().float().requires_grad_(v.requires_grad) if v is not None and v.is_floating_point() else v)
           for k, v in p64.items()}
    for act, rec in [("tanh", "sigmoid"), ("relu", "sigmoid")]:
        r64 = _outputs_and_grads(_native, p64, kind, act, rec, False, False, False)
        r32 = _outputs_and_grads(_native, p32, kind, act, rec, False, False, False)
        for a, b in zip(r32, r64, strict=True):
            if b is None:
                continue
            assert torch.isfinite(a).all()
            torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=1e-4 * max(1.0, b.abs().max().item()))


def test_turned_off_or_unbuildable_falls_back(monkeypatch):
    """RNNKIT_NATIVE=0, or a failed build (one warning), leaves the Python scan: the same numbers."""
    torch.manual_seed(0)
    layer = rnnkit.LSTM(3, H, layer_norm=True, activation="relu", dtype=torch.float64)
    x = torch.randn(B, T, 3, dtype=torch.float64)
    ref = layer(x)[0]
    monkeypatch.setattr(native, "_state", {})
    monkeypatch.setenv("RNNKIT_NATIVE", "0")
    assert not native.available() and "RNNKIT_NATIVE=0" in native.why_unavailable()
    assert layer.engine == "scan"
    with pytest.raises(ValueError, match="native kernel is unavailable: turned off by RNNKIT_NATIVE=0"):
        layer.engine = "native"
    assert not native.enabled()
    torch.testing.assert_close(layer(x)[0], ref, rtol=0, atol=1e-12)

    def broken():
        raise RuntimeError("Error building extension 'x':\nscan.h:1: error: no compiler")

    monkeypatch.setattr(native, "_state", {})
    monkeypatch.setenv("RNNKIT_NATIVE", "1")
    monkeypatch.setattr(native, "_build", broken)
    with pytest.warns(RuntimeWarning, match="no compiler"):
        assert not native.enabled()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # only once
        torch.testing.assert_close(layer(x)[0], ref, rtol=0, atol=1e-12)


@needs_native
@pytest.mark.parametrize(("cls", "kw", "fn"), [
    (rnnkit.LSTM, {"recurrent_dropout": 0.3}, "NativeScanFunctionBackward"),
    (rnnkit.GRU, {"layer_norm": True}, "NativeScanFunctionBackward"),
    (rnnkit.RNN, {"activation": "sigmoid"}, "NativeScanFunctionBackward"),
    (rnnkit.GRU, {"reset_after": False}, "NativeScanFunctionBackward"),
    (rnnkit.GRU, {"activation": torch.nn.functional.softsign}, "StackBackward0"),  # unknown: autograd loop
])
def test_layers_use_the_native_kernel(cls, kw, fn):
    layer = cls(3, H, **kw)
    out, _ = layer(torch.randn(B, T, 3))
    assert type(out.grad_fn).__name__ == fn
    assert layer.engine == ("autograd" if fn == "StackBackward0" else "native")


@needs_native
def test_buffer_reuse_never_overwrites_live_tensors():
    """Large buffers are reused between calls only once nothing holds them: outputs kept from an earlier
    call, and the tensors an unfinished backward still needs, stay intact."""
    torch.manual_seed(0)
    layer = rnnkit.LSTM(4, 32, layer_norm=True)
    x1, x2 = torch.randn(64, 40, 4), torch.randn(64, 40, 4)  # 64*40*128 gate entries: above the cache floor
    out1, _ = layer(x1)
    kept = out1.detach().clone()
    out2, _ = layer(x2)  # must not reuse out1's or its graph's buffers
    torch.testing.assert_close(out1.detach(), kept, rtol=0, atol=0)
    (out1.sum() + out2.sum()).backward()  # both graphs' saved buffers still valid
    g = layer.weight_hh_l0.grad.clone()
    for _ in range(2):  # now the buffers are free and get reused: the same numbers again
        layer.zero_grad()
        a, _ = layer(x1)
        b, _ = layer(x2)
        (a.sum() + b.sum()).backward()
        torch.testing.assert_close(a.detach(), kept, rtol=0, atol=0)
        torch.testing.assert_close(layer.weight_hh_l0.grad, g, rtol=0, atol=0)
    del a, b, out1, out2
    assert native.empty_cache() > 0
    assert native.empty_cache() == 0


@needs_native
@pytest.mark.parametrize("kind", ["lstm", "gru", "gru_rb", "rnn"])
@pytest.mark.parametrize("ln", [False, True], ids=["plain", "layer_norm"])
def test_mixed_precision_steps(kind, ln):
    """Under CPU bf16 autocast the kernel takes its step GEMMs (forward, BPTT and the weight gradient) in
    bfloat16 and everything else in float32: results within bf16 rounding of the float64 ones, not the float32
    ones to the bit (the bf16 path ran), and gradients of every float32 input in float32."""
    p64 = _inputs(kind, torch.float64, seed=5)
    p32 = {k: (v.detach().float().requires_grad_(v.requires_grad) if v is not None and v.is_floating_point() else v)
           for k, v in p64.items()}
    ref = _outputs_and_grads(_native, p64, kind, "tanh", "sigmoid", ln, True, True)
    full = _outputs_and_grads(_native, p32, kind, "tanh", "sigmoid", ln, True, True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert native.mixed_precision(p32["w"])
        mixed = _outputs_and_grads(_native, p32, kind, "tanh", "sigmoid", ln, True, True)
    differs = False
    for a, f, b in zip(mixed, full, ref, strict=True):
        if b is None:
            continue
        assert a.dtype == torch.float32
        torch.testing.assert_close(a.double(), b, rtol=3e-2, atol=3e-2 * max(1.0, b.abs().max().item()))
        differs |= not torch.equal(a, f)
    assert differs
    assert not native.mixed_precision(p32["w"])  # outside autocast: float32 again


@needs_native
def test_mixed_precision_rejects_a_bf16_weight_with_float64():
    p = _inputs("gru", torch.float64)
    p["w"] = p["w"].detach().bfloat16()
    with pytest.raises(RuntimeError, match="bfloat16 with float32 gx"):
        _native("gru", "tanh", "sigmoid", p, False, False, False)


@needs_native
def test_autocast_lstm_runs_the_kernel_with_float_states():
    """Under CPU bf16 autocast the LSTM takes the kernel's mixed mode rather than torch's fused kernel (which
    would carry its states in bf16): outputs and final states stay float32."""
    layer = rnnkit.LSTM(3, H)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, (h, c) = layer(torch.randn(B, T, 3))
    assert type(out.grad_fn).__name__ == "NativeScanFunctionBackward"
    assert out.dtype == h.dtype == c.dtype == torch.float32
    assert layer.engine == "fused"  # outside autocast: torch's kernel, as before


@needs_native
@pytest.mark.parametrize("cell", ["mingru", "minlstm", "indrnn", "gru"])
def test_autocast_runs_every_native_cell(cell):
    """The cells with kernels of their own take float32 gates under autocast too (their kernels know no bf16)."""
    from rnnkit.layers import make_layer

    layer = make_layer(cell, 3, H, 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = layer(torch.randn(B, T, 3), lengths=torch.tensor([6, 2, 4]))
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in layer.parameters())


@needs_native
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_native_dropout_is_dropout(dtype):
    """The kernel's masks: zeros at rate p, the rest scaled by 1 / (1 - p); reproducible from torch's seed, fresh
    at every call, the gradient is the mask; eval mode and p = 0 return the input itself."""
    x = torch.ones(200, 500, dtype=dtype, requires_grad=True)
    torch.manual_seed(3)
    y = native.dropout(x, 0.3)
    torch.manual_seed(3)
    assert torch.equal(native.dropout(x, 0.3), y)
    assert not torch.equal(native.dropout(x, 0.3), y)  # the next call draws another mask
    kept = y != 0
    assert abs(float(kept.float().mean()) - 0.7) < 0.005  # 100,000 draws: the standard error is 0.0015
    assert torch.allclose(y[kept].float(), torch.tensor(1 / 0.7), rtol=1e-2)
    assert abs(float(kept[:, ::2].float().mean()) - float(kept[:, 1::2].float().mean())) < 0.01  # both halves
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())
    assert native.dropout(x, 0.3, training=False) is x and native.dropout(x, 0.0) is x
    layer = rnnkit.layers.Dropout(0.3)
    assert layer.eval()(x) is x and layer.train()(x).shape == x.shape
    assert set(layer.state_dict()) == set() and "p=0.3" in repr(layer)


def test_native_dropout_falls_back_without_the_kernel(monkeypatch):
    """Without the kernel (or for p = 1) it is F.dropout, drawn from the same generator."""
    monkeypatch.setattr(native, "_state", {"ok": False, "why": "test"})
    x = torch.ones(50, 40)
    torch.manual_seed(1)
    a = native.dropout(x, 0.5)
    torch.manual_seed(1)
    assert torch.equal(a, torch.nn.functional.dropout(x, 0.5, True))
    assert torch.equal(native.dropout(x, 1.0), torch.zeros_like(x))


def test_the_constant_mark_is_the_decorators_and_import_skips_dynamo():
    """`why_unavailable` carries torch.compiler.assume_constant_result's mark, set by hand: the decorator imports
    torch._dynamo (three seconds) to set it. Should a torch release mark functions otherwise, this fails rather than
    compiled graphs silently tracing the kernel's file checks; and `import rnnkit` must not pull torch._dynamo in."""
    import subprocess
    import sys

    def probe() -> None: ...

    marked = torch.compiler.assume_constant_result(probe)
    added = dict(vars(marked))
    assert added and all(getattr(native.why_unavailable, k, None) == v for k, v in added.items())
    code = "import sys, rnnkit.cli; print('torch._dynamo' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
