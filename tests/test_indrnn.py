"""IndRNN: a cell with a vector recurrent weight, added as one file on the cell interface."""

from __future__ import annotations

import pytest
import torch

import rnnkit
from rnnkit.build import fit, load_config
from rnnkit.config import ConfigError
from rnnkit.layers import CELLS, IndRNN, native


def test_recurrence_written_out_with_lengths_and_both_directions():
    torch.manual_seed(0)
    layer = IndRNN(3, 4, bidirectional=True, max_abs=0.9, dtype=torch.float64)
    with torch.no_grad():
        layer.weight_hh_l0.copy_(torch.tensor([0.5, 1.5, -2.0, 0.1], dtype=torch.float64))  # two beyond the bound
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    out, h = layer(x, lengths=torch.tensor([5, 3]))
    u = layer.weight_hh_l0.clamp(-0.9, 0.9)
    for b, n in enumerate((5, 3)):
        s, fw = torch.zeros(4, dtype=torch.float64), []
        for t in range(n):  # h_t = relu(W x_t + b_ih + u * h_{t-1} + b_hh)
            s = torch.relu(x[b, t] @ layer.weight_ih_l0.T + layer.bias_ih_l0 + u * s + layer.bias_hh_l0)
            fw.append(s)
        torch.testing.assert_close(out[b, :n, :4], torch.stack(fw))
        torch.testing.assert_close(h[0, b], fw[-1])
        assert torch.all(out[b, n:] == 0)
        alone, _ = layer(x[b: b + 1, :n])
        torch.testing.assert_close(out[b, :n], alone[0])  # the reverse direction from each sequence's own end


needs_native = pytest.mark.skipif(not native.available(), reason="no C++ toolchain for the native kernel")


@pytest.mark.parametrize("engine", [pytest.param("native", marks=needs_native), "autograd"])
def test_gradcheck_and_engines(engine):
    torch.manual_seed(1)
    layer = IndRNN(2, 3, 2, activation="tanh", max_abs=0.8, dtype=torch.float64, engine=engine)
    x = torch.randn(2, 4, 2, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(2, 2, 3, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        layer.weight_hh_l0[0] = 1.2  # beyond the bound: the clamp's zero gradient is part of the check
    assert torch.autograd.gradcheck(lambda x, h0: layer(x, h0, lengths=torch.tensor([4, 2]))[0], (x, h0))
    assert torch.autograd.gradcheck(lambda x, h0: layer(x, h0, lengths=torch.tensor([4, 2]))[1], (x, h0))
    assert layer.engine == engine
    for other in ("fused", "scan", "parallel"):
        with pytest.raises(ValueError, match=f"engine='{other}' cannot run IndRNN"):
            layer.engine = other
    assert layer.weight_hh_l0.shape == (3,) and layer.weight_hh_l1.shape == (3,)


@needs_native
@pytest.mark.parametrize(("activation", "dtype"), [("relu", torch.float64), ("tanh", torch.float32)])
def test_native_kernel_matches_autograd(activation, dtype):
    # relu in float64: in float32 a pre-activation within rounding of 0 can take either side of the kink
    torch.manual_seed(2)
    layer = IndRNN(4, 70, num_layers=2, bidirectional=True, activation=activation, max_abs=1.2,
                   recurrent_dropout=0.2, layer_norm=True, dtype=dtype)
    assert layer.engine == "native"
    x, lengths = torch.randn(3, 30, 4, dtype=dtype), torch.tensor([30, 7, 19])
    results = []
    for engine in ("native", "autograd"):
        layer.engine = engine
        layer.zero_grad()
        torch.manual_seed(3)  # the same recurrent-dropout masks
        out, h = layer(x, lengths=lengths)
        (out.square().sum() + h.sum()).backward()
        results.append([out.detach(), h.detach(), *[p.grad.clone() for p in layer.parameters()]])
    for a, b in zip(*results, strict=True):  # float32 sums over 30 steps and 3 rows, in other orders
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3)


def test_in_configs_the_registry_and_export(tmp_path):
    assert CELLS["indrnn"] is IndRNN
    cfg = {"name": "ind", "task": "adding", "model": {"cell": "indrnn", "hidden_size": 8, "max_abs": 1.5},
           "data": {"num_steps": 10, "train_size": 64, "val_size": 16, "test_size": 16},
           "training": {"epochs": 2, "batch_size": 16, "lr": 0.01, "num_threads": 1, "device": "cpu"}}
    run_dir, metrics = fit(cfg, tmp_path / "run", quiet=True)
    assert metrics["test"]["mse"] < 1.0
    run = rnnkit.Run.load(run_dir)
    assert run.model.rnn.cell.max_abs == 1.5
    with pytest.raises(ConfigError, match="model.max_abs only applies to cell: indrnn"):
        load_config({"model": {"cell": "gru", "max_abs": 2.0}})
    with pytest.raises(ConfigError, match="max_abs must be a positive number"):
        load_config({"model": {"cell": "indrnn", "max_abs": -1.0}})
    ort = pytest.importorskip("onnxruntime")
    layer = IndRNN(3, 4, max_abs=1.0).eval()
    class Wrap(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = layer

        def forward(self, x):
            return self.layer(x)[0]

    b, t = torch.export.Dim("batch"), torch.export.Dim("time", min=2)
    prog = torch.onnx.export(Wrap(), (torch.randn(2, 5, 3),), dynamo=True, dynamic_shapes={"x": {0: b, 1: t}})
    prog.save(str(tmp_path / "ind.onnx"))
    x = torch.randn(3, 9, 3)
    got = ort.InferenceSession(str(tmp_path / "ind.onnx")).run(None, {"x": x.numpy()})[0]
    torch.testing.assert_close(torch.from_numpy(got), layer(x)[0].detach(), atol=1e-5, rtol=1e-5)
