"""Tests for rnnkit.reference: hand-computed cases, torch.nn equivalence, and gradient checks."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch

from rnnkit.reference import (
    backward,
    forward,
    get_activation,
    gradient_check,
    init_params,
    output_backward,
    output_forward,
)

# ----------------------------------------------------------------------------------------------------
# hand-computed cases: numbers worked out on paper, B = D = H = 1


def _p(W_xh, W_hh, b_xh, b_hh) -> dict[str, np.ndarray]:
    """Parameters of a D = H = 1 cell from lists of G numbers each (gate blocks in torch order)."""
    return {"W_xh": np.c_[W_xh], "W_hh": np.c_[W_hh], "b_xh": np.array(b_xh), "b_hh": np.array(b_hh)}


def test_rnn_identity_by_hand():
    # h_t = 2 x_t + 0.5 h_{t-1} + 0.25 - 0.25, x = (1, 2), h_0 = 1
    # h_1 = 2 + 0.5 = 2.5,  h_2 = 4 + 1.25 = 5.25
    p = _p([2.0], [0.5], [0.25], [-0.25])
    x = np.array([1.0, 2.0]).reshape(1, 2, 1)
    h_seq, (h_T,), cache = forward("rnn", x, p, (np.ones((1, 1)),), activation="identity")
    np.testing.assert_allclose(h_seq.ravel(), [2.5, 5.25], rtol=0, atol=1e-15)
    assert h_T.item() == 5.25
    # L = h_1 + h_2: delta_2 = 1, delta_1 = 1 + W_hh delta_2 = 1.5
    # dW_hh = delta_1 h_0 + delta_2 h_1 = 1.5 + 2.5, dW_xh = delta_1 x_1 + delta_2 x_2 = 1.5 + 2
    # db = 1.5 + 1 (for each bias), dx_t = W_xh delta_t = (3, 2), dh_0 = W_hh delta_1 = 0.75
    g = backward(cache, np.ones((1, 2, 1)))
    assert g["W_hh"].item() == 4.0 and g["W_xh"].item() == 3.5
    assert g["b_xh"].item() == 2.5 and g["b_hh"].item() == 2.5
    np.testing.assert_array_equal(g["x"].ravel(), [3.0, 2.0])
    assert g["h0"].item() == 0.75
    # L = h_1 + h_2 + h_T (h_T = h_2 reached through the final state): delta_2 = 2, delta_1 = 1 + 0.5 * 2 = 2
    # dW_hh = 2 * 1 + 2 * 2.5 = 7, dW_xh = 2 * 1 + 2 * 2 = 6, db = 4, dx = (4, 4), dh_0 = 0.5 * 2 = 1
    g = backward(cache, np.ones((1, 2, 1)), (np.ones((1, 1)),))
    assert g["W_hh"].item() == 7.0 and g["W_xh"].item() == 6.0 and g["b_hh"].item() == 4.0
    np.testing.assert_array_equal(g["x"].ravel(), [4.0, 4.0])
    assert g["h0"].item() == 1.0


def test_rnn_tanh_by_hand():
    # h_t = tanh(x_t + 2 h_{t-1}), x = (0.5, -1), h_0 = 0; loss L = h_2
    p = _p([1.0], [2.0], [0.0], [0.0])
    x = np.array([0.5, -1.0]).reshape(1, 2, 1)
    h1 = math.tanh(0.5)
    h2 = math.tanh(-1.0 + 2.0 * h1)
    h_seq, _, cache = forward("rnn", x, p)
    np.testing.assert_allclose(h_seq.ravel(), [h1, h2], rtol=1e-15)
    da2 = 1.0 - h2**2  # dL/da_2
    da1 = 2.0 * da2 * (1.0 - h1**2)  # dL/da_1 = W_hh da_2 tanh'(a_1)
    g = backward(cache, np.array([0.0, 1.0]).reshape(1, 2, 1))
    np.testing.assert_allclose(g["W_hh"].item(), da2 * h1 + da1 * 0.0, rtol=1e-14)
    np.testing.assert_allclose(g["W_xh"].item(), da2 * -1.0 + da1 * 0.5, rtol=1e-14)
    np.testing.assert_allclose(g["b_xh"].item(), da1 + da2, rtol=1e-14)
    np.testing.assert_allclose(g["x"].ravel(), [da1, da2], rtol=1e-14)
    np.testing.assert_allclose(g["h0"].item(), 2.0 * da1, rtol=1e-14)


def test_lstm_by_hand():
    # one step, x = 1, h_0 = 0.5, c_0 = 2, only W_xh nonzero: a = (0, ln 3, atanh(1/2), ln 3)
    # i = 1/2, f = 3/4, g = 1/2, o = 3/4;  c_1 = 3/4 * 2 + 1/2 * 1/2 = 1.75,  h_1 = 3/4 tanh(1.75)
    p = _p([0.0, math.log(3.0), math.atanh(0.5), math.log(3.0)], [0.0] * 4, [0.0] * 4, [0.0] * 4)
    state0 = (np.full((1, 1), 0.5), np.full((1, 1), 2.0))
    h_seq, (h_T, c_T), cache = forward("lstm", np.ones((1, 1, 1)), p, state0)
    np.testing.assert_allclose(c_T.item(), 1.75, rtol=1e-15)
    np.testing.assert_allclose(h_T.item(), 0.75 * math.tanh(1.75), rtol=1e-15)
    assert h_seq.item() == h_T.item()
    # L = h_1 + c_1: dc_1 = 1 + o tanh'(c_1), dc_0 = dc_1 f (the cell path), dh_0 = 0 since W_hh = 0
    g = backward(cache, np.ones((1, 1, 1)), (None, np.ones((1, 1))))
    dc1 = 1.0 + 0.75 * (1.0 - math.tanh(1.75) ** 2)
    np.testing.assert_allclose(g["c0"].item(), 0.75 * dc1, rtol=1e-14)
    assert g["h0"].item() == 0.0
    # da_f = dc_1 c_0 f (1 - f), da_o = tanh(c_1) o (1 - o), in rows 1 and 3 of W_xh (x = 1)
    np.testing.assert_allclose(g["W_xh"][1, 0], dc1 * 2.0 * 0.75 * 0.25, rtol=1e-14)
    np.testing.assert_allclose(g["W_xh"][3, 0], math.tanh(1.75) * 0.75 * 0.25, rtol=1e-14)


@pytest.mark.parametrize("reset_after, n_pre", [(True, 0.5 + 0.5 * (2 + 1)), (False, 0.5 + 2 * 0.5 + 1)])
def test_gru_by_hand(reset_after: bool, n_pre: float):
    # one step, h_0 = 1, r = z = sigma(0) = 1/2, W_xn = 0, b_xn = 0.5, W_hn = 2, b_hn = 1
    # reset_after=True:  n = tanh(0.5 + r (2 h_0 + 1)) = tanh(2)
    # reset_after=False: n = tanh(0.5 + 2 (r h_0) + 1) = tanh(2.5);   h_1 = (1 - z) n + z h_0
    p = _p([0.0, 0.0, 0.0], [0.0, 0.0, 2.0], [0.0, 0.0, 0.5], [0.0, 0.0, 1.0])
    h_seq, _, _ = forward("gru", np.zeros((1, 1, 1)), p, (np.ones((1, 1)),), reset_after=reset_after)
    np.testing.assert_allclose(h_seq.item(), 0.5 * math.tanh(n_pre) + 0.5, rtol=1e-15)


def test_relu_derivative_at_zero_is_zero():
    # all weights zero: a_t = 0 exactly, h_t = relu(0) = 0 and relu'(0) = 0, so nothing flows back
    p = _p([0.0], [0.0], [0.0], [0.0])
    _, _, cache = forward("rnn", np.ones((1, 3, 1)), p, activation="relu")
    g = backward(cache, np.ones((1, 3, 1)))
    assert all(not v.any() for v in g.values())
    assert get_activation("relu").df(np.array([0.0, 1.0])).tolist() == [0.0, 1.0]


def test_output_projection_by_hand():
    h_seq = np.array([1.0, -2.0]).reshape(1, 1, 2)
    W_hy, b_y = np.array([[3.0, 1.0]]), np.array([0.5])
    y, ycache = output_forward(h_seq, W_hy, b_y)
    assert y.item() == 3.0 - 2.0 + 0.5
    dh, dW, db = output_backward(ycache, np.full((1, 1, 1), 2.0))
    np.testing.assert_array_equal(dh.ravel(), [6.0, 2.0])
    np.testing.assert_array_equal(dW, [[2.0, -4.0]])
    np.testing.assert_array_equal(db, [2.0])


# ----------------------------------------------------------------------------------------------------
# equivalence with torch.nn (pins the gate order and the GRU reset convention to torch's)

TORCH_CASES = [("rnn", "tanh"), ("rnn", "relu"), ("lstm", "tanh"), ("gru", "tanh")]
TORCH_NAMES = {"W_xh": "weight_ih_l0", "W_hh": "weight_hh_l0", "b_xh": "bias_ih_l0", "b_hh": "bias_hh_l0"}


def _torch_layer(cell: str, activation: str, params: dict[str, np.ndarray]) -> torch.nn.RNNBase:
    D, H = params["W_xh"].shape[1], params["W_hh"].shape[1]
    kw = {"batch_first": True, "dtype": torch.float64}
    if cell == "rnn":
        layer = torch.nn.RNN(D, H, nonlinearity=activation, **kw)
    else:
        layer = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](D, H, **kw)
    with torch.no_grad():
        for ours, theirs in TORCH_NAMES.items():
            getattr(layer, theirs).copy_(torch.from_numpy(params[ours]))
    return layer


@pytest.mark.parametrize("cell, activation", TORCH_CASES)
def test_matches_torch_forward_and_backward(cell: str, activation: str):
    B, T, D, H = 3, 7, 4, 5
    rng = np.random.default_rng(1)
    params = init_params(cell, D, H, rng)
    x = rng.standard_normal((B, T, D))
    state0 = tuple(rng.standard_normal((B, H)) for _ in range(2 if cell == "lstm" else 1))
    h_seq, state_T, cache = forward(cell, x, params, state0, activation=activation)
    close = functools.partial(np.testing.assert_allclose, rtol=0, atol=1e-10)

    layer = _torch_layer(cell, activation, params)
    xt = torch.tensor(x, requires_grad=True)
    s0 = [torch.tensor(s[None], requires_grad=True) for s in state0]  # torch wants (layers, B, H)
    out, sT = layer(xt, tuple(s0) if cell == "lstm" else s0[0])
    sT = sT if cell == "lstm" else (sT,)
    close(h_seq, out.detach().numpy())
    for ours, theirs in zip(state_T, sT, strict=True):
        close(ours, theirs[0].detach().numpy())

    # same scalar loss on both sides: random projections of the outputs and the final state
    P_h, P_s = rng.standard_normal((B, T, H)), [rng.standard_normal((B, H)) for _ in state0]
    loss = (out * torch.from_numpy(P_h)).sum()
    loss = loss + sum((s[0] * torch.from_numpy(p)).sum() for s, p in zip(sT, P_s, strict=True))
    loss.backward()
    g = backward(cache, P_h, tuple(P_s))
    for name, theirs in TORCH_NAMES.items():
        close(g[name], getattr(layer, theirs).grad.numpy(), err_msg=name)
    close(g["x"], xt.grad.numpy())
    for name, s in zip(("h0", "c0")[: len(s0)], s0, strict=True):
        close(g[name], s.grad[0].numpy(), err_msg=name)


# ----------------------------------------------------------------------------------------------------
# gradient checks: every cell, every activation, with and without the output projection

GRADCHECK_CASES = [
    ("rnn", {"activation": "tanh"}),
    ("rnn", {"activation": "relu"}),
    ("rnn", {"activation": "sigmoid"}),
    ("rnn", {"activation": "identity"}),
    ("lstm", {}),
    ("lstm", {"activation": "relu"}),
    ("lstm", {"activation": "identity", "recurrent_activation": "tanh"}),
    ("gru", {"reset_after": True}),
    ("gru", {"reset_after": False}),
    ("gru", {"reset_after": True, "activation": "relu", "recurrent_activation": "tanh"}),
    ("gru", {"reset_after": False, "activation": "relu", "recurrent_activation": "identity"}),
]


GRADCHECK_IDS = [",".join([cell] + [f"{k}={v}" for k, v in opts.items()]) for cell, opts in GRADCHECK_CASES]


@pytest.mark.parametrize("output_size", [None, 3])
@pytest.mark.parametrize("cell, options", GRADCHECK_CASES, ids=GRADCHECK_IDS)
def test_gradient_check(cell: str, options: dict, output_size: int | None):
    report = gradient_check(cell, output_size=output_size, **options)
    expected = {"W_xh", "W_hh", "b_xh", "b_hh", "x", "h0"} | ({"c0"} if cell == "lstm" else set())
    expected |= {"W_hy", "b_y"} if output_size else set()
    assert set(report.errors) == expected
    assert report.worst < 1e-6, str(report)


def test_gradient_check_catches_a_wrong_gradient(monkeypatch: pytest.MonkeyPatch):
    # break the reference's tanh derivative: the checker must notice
    from rnnkit.reference import activations

    bad = activations.Activation("tanh", np.tanh, lambda y: 1.0 - 0.9 * y * y)
    monkeypatch.setitem(activations.ACTIVATIONS, "tanh", bad)
    assert gradient_check("rnn", activation="tanh").worst > 1e-3


# ----------------------------------------------------------------------------------------------------
# API details


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_final_state_gradient_equals_gradient_on_last_output(cell: str):
    # h_T is h_seq[:, -1], so an upstream dh_T must act exactly like adding it to dh_seq[:, -1]
    rng = np.random.default_rng(2)
    params = init_params(cell, 2, 3, rng)
    _, _, cache = forward(cell, rng.standard_normal((2, 4, 2)), params)
    dh_seq, dh_T = rng.standard_normal((2, 4, 3)), rng.standard_normal((2, 3))
    dstate = (dh_T, None) if cell == "lstm" else (dh_T,)
    g1 = backward(cache, dh_seq, dstate)
    dh_seq[:, -1] += dh_T
    g2 = backward(cache, dh_seq)
    for k in g1:
        np.testing.assert_allclose(g1[k], g2[k], rtol=1e-13, atol=1e-15)


def test_init_params_shapes_and_seed():
    p = init_params("lstm", 3, 5, np.random.default_rng(0), output_size=2)
    shapes = {k: v.shape for k, v in p.items()}
    assert shapes == dict(W_xh=(20, 3), W_hh=(20, 5), b_xh=(20,), b_hh=(20,), W_hy=(2, 5), b_y=(2,))
    assert all(v.dtype == np.float64 and np.abs(v).max() <= 1 / math.sqrt(5) for v in p.values())
    assert set(init_params("gru", 3, 5, 0)) == {"W_xh", "W_hh", "b_xh", "b_hh"}
    np.testing.assert_array_equal(init_params("rnn", 2, 2, 7)["W_hh"], init_params("rnn", 2, 2, 7)["W_hh"])


def test_float32_input_is_cast_and_zero_state_default():
    params = init_params("gru", 2, 3, 0)
    x = np.random.default_rng(0).standard_normal((2, 4, 2))
    h32, _, _ = forward("gru", x.astype(np.float32), params)
    h64, _, _ = forward("gru", x.astype(np.float32).astype(np.float64), params, (np.zeros((2, 3)),))
    assert h32.dtype == np.float64
    np.testing.assert_array_equal(h32, h64)


def test_bad_arguments():
    params = init_params("rnn", 2, 3, 0)
    x = np.zeros((1, 2, 2))
    with pytest.raises(ValueError, match="cell"):
        forward("transformer", x, params)
    with pytest.raises(ValueError, match="activation"):
        forward("rnn", x, params, activation="gelu")
    with pytest.raises(ValueError, match="state0"):
        forward("rnn", x, params, (np.zeros((1, 3)), np.zeros((1, 3))))
