"""The fast scan (rnnkit.layers.scan: no-grad forward, hand-written BPTT) against the autograd loop, in float64."""

from __future__ import annotations

import pytest
import torch

import rnnkit
from rnnkit.layers import native
from rnnkit.layers.scan import ScanFunction, cell_spec

CASES = [
    ("LSTM", {}),
    ("LSTM", {"activation": "relu"}),
    ("LSTM", {"layer_norm": True}),
    ("LSTM", {"recurrent_dropout": 0.25}),
    ("LSTM", {"activation": "hard_sigmoid", "recurrent_activation": "hard_sigmoid_keras2", "layer_norm": True,
              "recurrent_dropout": 0.1}),
    ("GRU", {}),
    ("GRU", {"reset_after": False}),
    ("GRU", {"layer_norm": True}),
    ("GRU", {"reset_after": False, "layer_norm": True, "recurrent_dropout": 0.3}),
    ("GRU", {"activation": "relu", "recurrent_dropout": 0.2, "bias": False}),
    ("RNN", {}),
    ("RNN", {"activation": "relu"}),
    ("RNN", {"activation": "sigmoid", "layer_norm": True}),
    ("RNN", {"activation": "identity", "recurrent_dropout": 0.2}),
]
B, T, D, H = 4, 5, 3, 6


def _run(layer, x, lengths, state, engine: str) -> list[torch.Tensor]:
    """Outputs, final state and the gradients of a random projection loss wrt x, the state and every parameter."""
    layer.engine = engine
    for p in layer.parameters():
        p.grad = None
    x = x.clone().requires_grad_()
    st = tuple(s.clone().requires_grad_() for s in state)
    torch.manual_seed(5)  # the same recurrent-dropout mask on both paths
    out, fin = layer(x, st if len(st) > 1 else st[0], lengths=lengths)
    fin = fin if isinstance(fin, tuple) else (fin,)
    g = torch.Generator().manual_seed(1)
    loss = sum((y * torch.randn(y.shape, generator=g, dtype=y.dtype)).sum() for y in (out, *fin))
    loss.backward()
    return [out.detach(), *(f.detach() for f in fin), x.grad, *(s.grad for s in st),
            *(p.grad for p in layer.parameters())]


# the native kernel (where it can be built) and the Python scan, each against the autograd engine
RUNS = [(n, k, e) for n, k in CASES for e in (["native", "scan"] if native.available() else ["scan"])]


@pytest.mark.parametrize(("name", "kw", "engine"), RUNS, ids=[f"{n}-{k}-{e}" for n, k, e in RUNS])
@pytest.mark.parametrize("lengths", [None, [5, 1, 3, 5]], ids=["full", "lengths"])
@pytest.mark.parametrize("deep", [False, True], ids=["1layer", "2layer-bi"])
def test_fast_path_equals_autograd_loop(name, kw, engine, lengths, deep):
    torch.manual_seed(0)
    extra = {"num_layers": 2, "bidirectional": True} if deep else {}
    layer = getattr(rnnkit, name)(D, H, dtype=torch.float64, **kw, **extra).train()
    n = layer.num_layers * layer.num_directions
    state = tuple(torch.randn(n, B, H, dtype=torch.float64) for _ in range(layer.cell.num_states))
    x = torch.randn(B, T, D, dtype=torch.float64)
    lengths = None if lengths is None else torch.tensor(lengths)
    assert cell_spec(layer.cell) is not None
    fast, slow = (_run(layer, x, lengths, state, e) for e in (engine, "autograd"))
    assert len(fast) == len(slow)
    for a, b in zip(fast, slow, strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


def test_no_grad_and_eval_match():
    torch.manual_seed(0)
    layer = rnnkit.GRU(D, H, reset_after=False, layer_norm=True, recurrent_dropout=0.5, dtype=torch.float64).eval()
    x = torch.randn(B, T, D, dtype=torch.float64)
    with torch.no_grad():
        out, h = layer(x, lengths=[5, 2, 1, 4])
        layer.engine = "autograd"
        out2, h2 = layer(x, lengths=[5, 2, 1, 4])
    torch.testing.assert_close(out, out2, rtol=0, atol=1e-12)
    torch.testing.assert_close(h, h2, rtol=0, atol=1e-12)
    assert not out.requires_grad


def test_unknown_activation_falls_back():
    layer = rnnkit.LSTM(D, H, activation=torch.nn.functional.softsign, dtype=torch.float64)
    assert cell_spec(layer.cell) is None
    assert layer.engine == "autograd"
    for engine in ("scan", "native"):
        with pytest.raises(ValueError, match=f"engine='{engine}' cannot run LSTM.*knows the LSTM"):
            layer.engine = engine
    assert cell_spec(rnnkit.RNN(D, H, activation="elu").cell) is None


@pytest.mark.parametrize("name", ["LSTM", "GRU", "GRU_rb", "RNN"])
def test_gradcheck(name):
    torch.manual_seed(0)
    b, t, h = 3, 4, 2
    layer = {"LSTM": lambda: rnnkit.LSTM(1, h, activation="relu"), "GRU": lambda: rnnkit.GRU(1, h),
             "GRU_rb": lambda: rnnkit.GRU(1, h, reset_after=False), "RNN": lambda: rnnkit.RNN(1, h)}[name]()
    spec, g = cell_spec(layer.cell), layer.cell.num_gates * h
    dbl = {"dtype": torch.float64, "requires_grad": True}
    gx, w, bias = torch.randn(b, t, g, **dbl), torch.randn(g, h, **dbl), torch.randn(g, **dbl)
    gain, shift = (1 + 0.3 * torch.randn(g, dtype=torch.float64)).requires_grad_(), torch.randn(g, **dbl)
    drop = torch.tensor([[2.0, 0.0], [2.0, 2.0], [0.0, 2.0]], dtype=torch.float64)
    active = torch.arange(t)[None, :] < torch.tensor([4, 1, 3])[:, None]
    h0 = torch.randn(b, h, **dbl)
    c0 = torch.randn(b, h, **dbl) if name == "LSTM" else None

    def f(gx, w, bias, gain, shift, h0, c0):
        return ScanFunction.apply(spec, gx, w, bias, gain, shift, drop, active, h0, c0)

    assert torch.autograd.gradcheck(f, (gx, w, bias, gain, shift, h0, c0))
    assert torch.autograd.gradcheck(lambda gx, w, h0, c0: f(gx, w, None, None, None, h0, c0), (gx, w, h0, c0))
