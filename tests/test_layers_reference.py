"""rnnkit layers (every engine that runs them) against the NumPy reference: outputs and gradients, float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rnnkit import reference as ref
from rnnkit.layers import CELLS, ENGINES

CASES = [
    ("rnn", {"activation": "tanh"}),
    ("rnn", {"activation": "relu"}),
    ("rnn", {"activation": "sigmoid"}),
    ("rnn", {"activation": "identity"}),
    ("lstm", {}),
    ("lstm", {"activation": "relu"}),
    ("gru", {"reset_after": True}),
    ("gru", {"reset_after": False}),
    ("indrnn", {"activation": "relu", "max_abs": None}),
    ("indrnn", {"activation": "tanh", "max_abs": 0.3}),  # some of u beyond the bound: its gradient is 0 there
    ("mingru", {}),
    ("minlstm", {}),
]
LAYER = CELLS
NAMES = {"W_xh": "weight_ih_l0", "W_hh": "weight_hh_l0", "b_xh": "bias_ih_l0", "b_hh": "bias_hh_l0"}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("cell,opts", CASES)
def test_layer_matches_reference(cell, opts, engine):
    rng = np.random.default_rng(11)
    B, T, D, H = 3, 6, 4, 5
    params = ref.init_params(cell, D, H, rng)
    x = rng.normal(size=(B, T, D))
    n_states = 2 if cell == "lstm" else 1
    state0 = tuple(rng.random(size=(B, H)) if cell.startswith("min") else rng.normal(size=(B, H)) * 0.5
                   for _ in range(n_states))  # minimal cells' states are positive (the log-space scan needs it)
    h_seq, state_T, cache = ref.forward(cell, x, params, state0, **opts)
    dh_seq = rng.normal(size=h_seq.shape)
    dstate_T = tuple(rng.normal(size=(B, H)) for _ in range(n_states))
    grads = ref.backward(cache, dh_seq, dstate_T)

    layer = LAYER[cell](D, H, **opts).double()
    assert layer.cell.reference and layer.cell.reference_options() == {**layer.cell.reference_options(), **opts}
    if layer._why_not(engine) is not None:
        pytest.skip(f"{engine} cannot run this configuration: {layer._why_not(engine)}")
    layer.engine = engine
    with torch.no_grad():
        for k, name in NAMES.items():
            if k in params:
                getattr(layer, name).copy_(torch.from_numpy(params[k]))
    xt = torch.from_numpy(x).requires_grad_()
    s0 = tuple(torch.from_numpy(s)[None].requires_grad_() for s in state0)
    out, st = layer(xt, s0 if cell == "lstm" else s0[0])
    st = st if isinstance(st, tuple) else (st,)
    np.testing.assert_allclose(out.detach().numpy(), h_seq, atol=1e-10, rtol=0)
    for a, b in zip(st, state_T, strict=True):
        np.testing.assert_allclose(a[0].detach().numpy(), b, atol=1e-10, rtol=0)
    loss = (out * torch.from_numpy(dh_seq)).sum() + sum(
        (a[0] * torch.from_numpy(d)).sum() for a, d in zip(st, dstate_T, strict=True)
    )
    loss.backward()
    for k, name in NAMES.items():
        if k in params:
            np.testing.assert_allclose(getattr(layer, name).grad.numpy(), grads[k], atol=1e-8, rtol=0, err_msg=k)
    np.testing.assert_allclose(xt.grad.numpy(), grads["x"], atol=1e-8, rtol=0)
    for s, key in zip(s0, ("h0", "c0"), strict=False):
        np.testing.assert_allclose(s.grad[0].numpy(), grads[key], atol=1e-8, rtol=0, err_msg=key)
