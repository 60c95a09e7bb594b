"""rnnkit.LSTM / GRU / RNN against torch.nn, against themselves run one sequence at a time, and Keras weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import rnnkit
from rnnkit.layers import native

TORCH = {rnnkit.LSTM: nn.LSTM, rnnkit.GRU: nn.GRU, rnnkit.RNN: nn.RNN}
OWN = ["native", "scan", "autograd"] if native.available() else ["scan", "autograd"]


def _states(s):
    return s if isinstance(s, tuple) else (s,)


# ----------------------------------------------------------------------------- torch.nn equality
@pytest.mark.parametrize("engine", ["fused", *OWN])
@pytest.mark.parametrize("num_layers,bidirectional", [(1, False), (2, False), (1, True), (2, True)])
@pytest.mark.parametrize(
    "cls,kw", [(rnnkit.LSTM, {}), (rnnkit.GRU, {}), (rnnkit.RNN, {}), (rnnkit.RNN, {"nonlinearity": "relu"})]
)
def test_equals_torch_nn(cls, kw, num_layers, bidirectional, engine):
    torch.manual_seed(0)
    ref = TORCH[cls](6, 5, num_layers, batch_first=True, bidirectional=bidirectional, **kw)
    layer = cls.from_torch(ref)
    layer.engine = engine
    assert layer.engine == engine
    assert [n for n, _ in layer.named_parameters()] == [n for n, _ in ref.named_parameters()]
    x = torch.randn(4, 7, 6)
    lengths = torch.tensor([7, 3, 1, 5])
    for lens in (None, lengths):
        dirs = 2 if bidirectional else 1
        h0 = torch.randn(num_layers * dirs, 4, 5)
        state0 = (h0, torch.randn_like(h0)) if cls is rnnkit.LSTM else h0
        xr, xl = x.clone().requires_grad_(), x.clone().requires_grad_()
        if lens is None:
            out_ref, st_ref = ref(xr, state0)
        else:
            packed = nn.utils.rnn.pack_padded_sequence(xr, lens, batch_first=True, enforce_sorted=False)
            out_p, st_ref = ref(packed, state0)
            out_ref = nn.utils.rnn.pad_packed_sequence(out_p, batch_first=True, total_length=7)[0]
        out, st = layer(xl, state0, lengths=lens)
        torch.testing.assert_close(out, out_ref, atol=1e-5, rtol=1e-5)
        for a, b in zip(_states(st), _states(st_ref), strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
        proj = torch.randn_like(out)
        (out * proj).sum().backward()
        (out_ref * proj).sum().backward()
        torch.testing.assert_close(xl.grad, xr.grad, atol=1e-5, rtol=1e-5)
        for (name, p), (_, q) in zip(layer.named_parameters(), ref.named_parameters(), strict=True):
            torch.testing.assert_close(p.grad, q.grad, atol=1e-4, rtol=1e-4, msg=name)
        layer.zero_grad()
        ref.zero_grad()


def test_auto_engine_decisions():
    assert rnnkit.LSTM(3, 4).engine == "fused"
    # on the CPU, GRU and RNN run rnnkit's native kernel (faster than torch's there) where it is available
    own = "native" if native.available() else "fused"
    assert rnnkit.GRU(3, 4).engine == own
    assert rnnkit.RNN(3, 4).engine == own
    assert rnnkit.GRU(3, 4, dtype=torch.float16).engine == "fused"  # a dtype the native kernel lacks
    loop = "native" if native.available() else "scan"
    assert rnnkit.RNN(3, 4, activation="sigmoid").engine == loop
    assert rnnkit.LSTM(3, 4, activation="relu").engine == loop
    assert rnnkit.LSTM(3, 4, layer_norm=True).engine == loop
    assert rnnkit.GRU(3, 4, reset_after=False).engine == loop
    assert rnnkit.LSTM(3, 4, activation="gelu").engine == "autograd"  # no hand-written derivative for gelu
    m = rnnkit.LSTM(3, 4, recurrent_dropout=0.3)
    assert m.engine == loop
    assert m.eval().engine == "fused"  # recurrent dropout is the identity at inference
    assert m.uses_fused_kernel()


def test_from_torch_to_torch_round_trip():
    torch.manual_seed(1)
    for ref in (nn.LSTM(3, 4, 2, bidirectional=True), nn.GRU(3, 4), nn.RNN(3, 4, nonlinearity="relu")):
        layer = {nn.LSTM: rnnkit.LSTM, nn.GRU: rnnkit.GRU, nn.RNN: rnnkit.RNN}[type(ref)].from_torch(ref)
        assert layer.batch_first is False
        back = layer.to_torch()
        assert type(back) is type(ref)
        x = torch.randn(5, 2, 3)  # (T, B, D): batch_first=False copied over
        torch.testing.assert_close(back(x)[0], ref(x)[0])
        torch.testing.assert_close(layer(x)[0], ref(x)[0], atol=1e-6, rtol=1e-6)
    with pytest.raises(ValueError, match="cannot express"):
        rnnkit.LSTM(3, 4, layer_norm=True).to_torch()
    with pytest.raises(ValueError, match="expects a torch.nn.LSTM"):
        rnnkit.LSTM.from_torch(nn.GRU(3, 4))


def test_state_dict_moves_to_torch_nn():
    layer = rnnkit.GRU(3, 4, 2, bidirectional=True)
    ref = nn.GRU(3, 4, 2, bidirectional=True, batch_first=True)
    ref.load_state_dict(layer.state_dict())
    x = torch.randn(2, 5, 3)
    torch.testing.assert_close(layer(x)[0], ref(x)[0])


# ----------------------------------------------------------------------------- variable lengths
CONFIGS = [
    (rnnkit.LSTM, {}),
    (rnnkit.LSTM, {"activation": "relu"}),
    (rnnkit.LSTM, {"layer_norm": True}),
    (rnnkit.GRU, {}),
    (rnnkit.GRU, {"reset_after": False}),
    (rnnkit.RNN, {"activation": "sigmoid"}),
]


@pytest.mark.parametrize("cls,kw", CONFIGS)
def test_padded_batch_equals_each_sequence_alone(cls, kw):
    torch.manual_seed(2)
    layer = cls(3, 5, 2, bidirectional=True, **kw).double()
    lengths = [4, 9, 1, 6]
    x = torch.randn(4, 9, 3, dtype=torch.float64)
    out, state = layer(x, lengths=torch.tensor(lengths))
    for b, n in enumerate(lengths):
        out_b, state_b = layer(x[b : b + 1, :n])
        torch.testing.assert_close(out[b, :n], out_b[0], atol=1e-12, rtol=0)
        assert torch.all(out[b, n:] == 0)
        for s, s_b in zip(_states(state), _states(state_b), strict=True):
            torch.testing.assert_close(s[:, b], s_b[:, 0], atol=1e-12, rtol=0)


def test_lengths_any_order_and_all_full():
    torch.manual_seed(3)
    layer = rnnkit.LSTM(2, 3)
    x = torch.randn(3, 4, 2)
    full = layer(x)[0]
    torch.testing.assert_close(layer(x, lengths=torch.tensor([4, 4, 4]))[0], full)
    torch.testing.assert_close(layer(x, lengths=[4, 4, 4])[0], full)


# ----------------------------------------------------------------------------- recurrent dropout
def test_recurrent_dropout_is_one_mask_per_sequence():
    """h_t = m * h_{t-1} + x_t with W_hh = I and identity activation: h_2 must equal m^2 if m is fixed."""
    layer = rnnkit.RNN(1, 64, activation="identity", recurrent_dropout=0.5, bias=False)
    with torch.no_grad():
        layer.weight_hh_l0.copy_(torch.eye(64))
        layer.weight_ih_l0.fill_(1.0)
    x = torch.zeros(8, 3, 1)
    x[:, 0] = 1.0
    torch.manual_seed(4)
    out, _ = layer(x)
    h1, h2 = out[:, 1], out[:, 2]
    assert set(h1.unique().tolist()) <= {0.0, 2.0}
    assert 0 < (h1 == 0).float().mean() < 1
    torch.testing.assert_close(h2, h1 * h1)
    layer.eval()
    out_eval, _ = layer(x)
    assert torch.all(out_eval == 1.0)


def test_layer_dropout_only_between_layers_and_in_training():
    torch.manual_seed(5)
    layer = rnnkit.LSTM(3, 4, 2, dropout=0.5)
    x = torch.randn(2, 5, 3)
    layer.eval()
    torch.testing.assert_close(layer(x)[0], layer(x)[0])
    layer.train()
    assert not torch.equal(layer(x)[0], layer(x)[0])


# ----------------------------------------------------------------------------- layer norm and other activations
@pytest.mark.parametrize(
    "cls,kw",
    [
        (rnnkit.LSTM, {"layer_norm": True}),
        (rnnkit.GRU, {"layer_norm": True, "reset_after": False}),
        (rnnkit.RNN, {"layer_norm": True, "activation": "tanh"}),
        (rnnkit.LSTM, {"recurrent_activation": "hard_sigmoid", "activation": "softsign"}),
    ],
)
def test_gradcheck_loop_engine(cls, kw):
    torch.manual_seed(6)
    layer = cls(2, 3, bidirectional=True, **kw).double()
    with torch.no_grad():  # move layer-norm gains/shifts off their trivial initial values
        for p in layer.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(2, 4, 2, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([4, 2])
    params = list(layer.parameters())

    names = [n for n, _ in layer.named_parameters()]

    def f(x, *ps):
        return torch.func.functional_call(layer, dict(zip(names, ps, strict=True)), (x,), {"lengths": lengths})[0]

    assert torch.autograd.gradcheck(f, (x, *params), eps=1e-6, atol=1e-6)


def test_layer_norm_parameters_named_and_normalising():
    layer = rnnkit.LSTM(3, 4, layer_norm=True).double()
    names = [n for n, _ in layer.named_parameters()]
    assert "ln_hh_weight_l0" in names and "ln_ih_bias_l0" in names
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    out = layer(x)[0]
    with torch.no_grad():  # layer norm makes the scale of the input projection W_xh x + b_xh irrelevant
        layer.weight_ih_l0.mul_(1000.0)
        layer.bias_ih_l0.mul_(1000.0)
    out_big = layer(x)[0]
    torch.testing.assert_close(out, out_big, atol=1e-3, rtol=0)  # up to LN's epsilon


def test_callable_activation():
    layer = rnnkit.RNN(2, 3, activation=lambda t: torch.tanh(t) * 0.5)
    x = torch.randn(1, 4, 2)
    out, h = layer(x)
    expect, h_t = [], torch.zeros(1, 3)
    for t in range(4):  # h_t = 0.5 tanh(W_xh x_t + b_xh + W_hh h_{t-1} + b_hh), written out
        h_t = 0.5 * torch.tanh(x[:, t] @ layer.weight_ih_l0.T + layer.bias_ih_l0 + h_t @ layer.weight_hh_l0.T
                               + layer.bias_hh_l0)
        expect.append(h_t)
    torch.testing.assert_close(out, torch.stack(expect, 1))


# ----------------------------------------------------------------------------- Keras weights
def _sig(a):
    return 1 / (1 + np.exp(-a))


def keras_numpy(kind, weights, x, reset_after=True):
    """Keras semantics written out from its documentation, independent of rnnkit: x (B, T, D) -> (B, T, H)."""
    kernel, rec, bias = weights
    H = rec.shape[0]
    B, T, _ = x.shape
    h, c, outs = np.zeros((B, H)), np.zeros((B, H)), []
    for t in range(T):
        xt = x[:, t]
        if kind == "simple":
            h = np.tanh(xt @ kernel + h @ rec + bias)
        elif kind == "lstm":
            z = xt @ kernel + h @ rec + bias
            i, f, g, o = (z[:, k * H : (k + 1) * H] for k in range(4))
            c = _sig(f) * c + _sig(i) * np.tanh(g)
            h = _sig(o) * np.tanh(c)
        else:
            bx, bh = (bias[0], bias[1]) if reset_after else (bias, np.zeros_like(bias))
            mx = xt @ kernel + bx
            x_z, x_r, x_h = mx[:, :H], mx[:, H : 2 * H], mx[:, 2 * H :]
            if reset_after:
                mi = h @ rec + bh
                z, r = _sig(x_z + mi[:, :H]), _sig(x_r + mi[:, H : 2 * H])
                hh = np.tanh(x_h + r * mi[:, 2 * H :])
            else:
                z, r = _sig(x_z + h @ rec[:, :H]), _sig(x_r + h @ rec[:, H : 2 * H])
                hh = np.tanh(x_h + (r * h) @ rec[:, 2 * H :])
            h = z * h + (1 - z) * hh
        outs.append(h)
    return np.stack(outs, 1)


@pytest.mark.parametrize("kind,reset_after", [("simple", True), ("lstm", True), ("gru", True), ("gru", False)])
def test_load_keras_weights(kind, reset_after):
    rng = np.random.default_rng(7)
    D, H = 3, 4
    G = {"simple": 1, "lstm": 4, "gru": 3}[kind]
    bias_shape = (2, G * H) if kind == "gru" and reset_after else (G * H,)
    weights = [rng.normal(size=(D, G * H)), rng.normal(size=(H, G * H)), rng.normal(size=bias_shape)]
    x = rng.normal(size=(2, 5, D))
    layer = {"simple": rnnkit.RNN, "lstm": rnnkit.LSTM, "gru": rnnkit.GRU}[kind]
    layer = layer(D, H, reset_after=reset_after).double() if kind == "gru" else layer(D, H).double()
    layer.load_keras_weights(weights)
    out = layer(torch.from_numpy(x))[0].detach().numpy()
    np.testing.assert_allclose(out, keras_numpy(kind, weights, x, reset_after), atol=1e-10)


def test_load_keras_bidirectional_and_errors():
    rng = np.random.default_rng(8)
    fw = [rng.normal(size=(3, 16)), rng.normal(size=(4, 16)), rng.normal(size=(16,))]
    bw = [rng.normal(size=(3, 16)), rng.normal(size=(4, 16)), rng.normal(size=(16,))]
    layer = rnnkit.LSTM(3, 4, bidirectional=True).double().load_keras_weights(fw + bw)
    x = rng.normal(size=(2, 5, 3))
    out = layer(torch.from_numpy(x))[0].detach().numpy()
    np.testing.assert_allclose(out[..., :4], keras_numpy("lstm", fw, x), atol=1e-10)
    np.testing.assert_allclose(out[..., 4:], keras_numpy("lstm", bw, x[:, ::-1])[:, ::-1], atol=1e-10)
    with pytest.raises(ValueError, match="expected 6 Keras arrays"):
        layer.load_keras_weights(fw)
    with pytest.raises(ValueError, match="kernel of shape"):
        rnnkit.LSTM(5, 4).load_keras_weights(fw)
    gru_bias = [rng.normal(size=(3, 12)), rng.normal(size=(4, 12)), rng.normal(size=(2, 12))]
    with pytest.raises(ValueError, match="reset_after=True"):
        rnnkit.GRU(3, 4, reset_after=False).load_keras_weights(gru_bias)


def test_keras_itself_when_installed():
    keras = pytest.importorskip("keras")
    layer_k = keras.layers.LSTM(4, return_sequences=True)
    x = np.random.default_rng(9).normal(size=(2, 5, 3)).astype("float32")
    out_k = np.asarray(layer_k(x))
    layer = rnnkit.LSTM(3, 4).load_keras_weights(layer_k.get_weights())
    np.testing.assert_allclose(layer(torch.from_numpy(x))[0].detach().numpy(), out_k, atol=1e-5)


# ----------------------------------------------------------------------------- bad input
def test_bad_shapes_and_lengths_name_expected_and_received():
    layer = rnnkit.LSTM(3, 4)
    with pytest.raises(ValueError, match=r"features=3, got \(2, 5\)"):
        layer(torch.randn(2, 5))  # an unbatched (T, D) input with the wrong D
    with pytest.raises(ValueError, match=r"features=3, got \(2, 5, 7\)"):
        layer(torch.randn(2, 5, 7))
    x = torch.randn(2, 5, 3)
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, 5\].*min 0"):
        layer(x, lengths=torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, 5\].*max 6"):
        layer(x, lengths=torch.tensor([6, 3]))
    with pytest.raises(ValueError, match=r"expected lengths of shape \(2,\), got \(3,\)"):
        layer(x, lengths=torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="integers"):
        layer(x, lengths=torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"shape \(1, 2, 4\), \(1, 2, 4\), got \(1, 3, 4\)"):
        layer(x, (torch.zeros(1, 3, 4), torch.zeros(1, 3, 4)))
    with pytest.raises(ValueError, match=r"expected hx \(h0, c0\)"):
        layer(x, torch.zeros(1, 2, 4))
    with pytest.raises(ValueError, match=r"second positional argument is hx.*lengths="):
        layer(x, torch.tensor([5, 3]))  # the old call layer(x, lengths)
    with pytest.raises(ValueError, match="floating-point"):
        layer(torch.ones(2, 5, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="unknown activation 'swishy'"):
        rnnkit.LSTM(3, 4, activation="swishy")
    with pytest.raises(ValueError, match="recurrent_dropout must be in"):
        rnnkit.GRU(3, 4, recurrent_dropout=1.0)
    with pytest.raises(ValueError, match="hidden_size must be a positive integer"):
        rnnkit.RNN(3, 0)


def test_time_major_layout():
    torch.manual_seed(10)
    layer = rnnkit.GRU(3, 4, batch_first=False, activation="relu")
    x = torch.randn(6, 2, 3)
    out, h = layer(x, lengths=torch.tensor([6, 2]))
    assert out.shape == (6, 2, 4) and h.shape == (1, 2, 4)
    torch.testing.assert_close(out[1, 1], h[0, 1])
    assert torch.all(out[2:, 1] == 0)
