"""minGRU and minLSTM: the native kernel, the linear scan and the log-space scan against stepping one x_t at a
time, streaming, gradients, long sequences, configs and export."""

from __future__ import annotations

import pytest
import torch

from rnnkit.build import fit
from rnnkit.layers import CELLS, MinGRU, MinLSTM, native

# the three whole-sequence paths: (engine, minimal.LINEAR_ON_CPU)
PATHS = {"native": ("native", True), "linear-scan": ("parallel", True), "log-space-scan": ("parallel", False)}
needs_native = pytest.mark.skipif(not native.available(), reason="no C++ toolchain for the native kernel")


def _paths():
    return [pytest.param(k, marks=needs_native) if k == "native" else k for k in PATHS]


def _use(layer, path, monkeypatch) -> None:
    from rnnkit.layers import minimal

    engine, linear = PATHS[path]
    monkeypatch.setattr(minimal, "LINEAR_ON_CPU", linear)  # the log-space scan is the GPU path
    layer.engine = engine


def test_auto_engine_is_the_native_kernel_on_cpu():
    layer = MinGRU(3, 6)
    assert layer.engine == ("native" if native.available() else "parallel")
    layer.recurrent_dropout = 0.1  # no recurrent weight for it to act on: the step-by-step loop
    assert layer.engine == "autograd"


@pytest.mark.parametrize("path", _paths())
@pytest.mark.parametrize("cls", [MinGRU, MinLSTM])
@pytest.mark.parametrize("deep", [False, True], ids=["1layer", "2layer-bi"])
def test_parallel_scan_equals_stepping(cls, deep, path, monkeypatch):
    torch.manual_seed(0)
    extra = {"num_layers": 2, "bidirectional": True} if deep else {}
    layer = cls(3, 6, **extra)
    _use(layer, path, monkeypatch)
    x = torch.randn(4, 9, 3)
    lengths = torch.tensor([9, 2, 5, 1])
    n = layer.num_layers * layer.num_directions
    h0 = torch.rand(n, 4, 6)  # the state a minimal cell makes is positive
    fast, h_fast = layer(x, h0, lengths=lengths)
    layer.engine = "autograd"
    slow, h_slow = layer(x, h0, lengths=lengths)
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h_fast, h_slow, atol=1e-5, rtol=1e-5)
    assert torch.all(fast[1, 2:] == 0)


@pytest.mark.parametrize("cls", [MinGRU, MinLSTM])
def test_streaming_one_step_at_a_time_gives_the_parallel_outputs(cls):
    torch.manual_seed(1)
    layer = cls(2, 5)
    x = torch.randn(3, 12, 2)
    full, h_full = layer(x)
    h, outs = None, []
    for t in range(12):  # y, h = layer(x_t, h)
        y, h = layer(x[:, t: t + 1], h)
        outs.append(y)
    torch.testing.assert_close(torch.cat(outs, 1), full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h, h_full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cls", [MinGRU, MinLSTM])
@pytest.mark.parametrize("path", _paths())
def test_gradcheck_parallel(cls, path, monkeypatch):
    torch.manual_seed(2)
    layer = cls(2, 3, bidirectional=True, dtype=torch.float64)
    _use(layer, path, monkeypatch)
    x = torch.randn(2, 5, 2, dtype=torch.float64, requires_grad=True)
    h0 = torch.rand(2, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, h0: layer(x, h0, lengths=torch.tensor([5, 3]))[0], (x, h0))
    # the final state alone (the kernel then gets no output gradient at all)
    assert torch.autograd.gradcheck(lambda x, h0: layer(x, h0, lengths=torch.tensor([5, 3]))[1], (x, h0))


@needs_native
@pytest.mark.parametrize("cls", [MinGRU, MinLSTM])
def test_native_kernel_float32_matches_stepping_with_layer_norm(cls):
    torch.manual_seed(5)
    layer = cls(4, 70, layer_norm=True, num_layers=2)  # 70: a block of channels that is not a multiple of 8
    x = torch.randn(3, 40, 4)
    h0 = torch.randn(2, 3, 70)  # a negative state is fine for the direct recurrence
    layer.engine = "native"
    out, h = layer(x, h0)
    (out.sum() + h.square().sum()).backward()
    fast = [out.detach(), h.detach(), *[p.grad.clone() for p in layer.parameters()]]
    layer.zero_grad()
    layer.engine = "autograd"
    out, h = layer(x, h0)
    (out.sum() + h.square().sum()).backward()
    slow = [out.detach(), h.detach(), *[p.grad.clone() for p in layer.parameters()]]
    for a, b in zip(fast, slow, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("path", _paths())
def test_long_sequences_stay_finite_and_exact(path, monkeypatch):
    torch.manual_seed(3)
    layer = MinGRU(4, 8)
    _use(layer, path, monkeypatch)  # the log-space scan's blocks keep its sums short
    x = 3 * torch.randn(2, 3000, 4)  # gates near 0 and 1: A_t underflows long before T
    fast, _ = layer(x)
    layer.engine = "autograd"
    slow, _ = layer(x)
    assert torch.isfinite(fast).all()
    torch.testing.assert_close(fast, slow, atol=1e-4, rtol=1e-4)


def test_negative_state_falls_back_to_stepping_and_fewer_parameters():
    torch.manual_seed(4)
    layer = MinLSTM(3, 4)
    x, h0 = torch.randn(2, 6, 3), -torch.rand(1, 2, 4)  # a log-space scan cannot take a negative h0
    out, _ = layer(x, h0)
    layer.engine = "autograd"
    torch.testing.assert_close(out, layer(x, h0)[0])
    gru = sum(p.numel() for p in CELLS["gru"](64, 256).parameters())
    mingru = sum(p.numel() for p in MinGRU(64, 256).parameters())
    assert mingru < gru / 5  # no recurrent matrix at all
    with pytest.raises(ValueError, match="parallel engine needs a cell whose recurrence is linear"):
        CELLS["gru"](3, 4, engine="parallel")


@pytest.mark.parametrize("cell", ["mingru", "minlstm"])
def test_configs_train_and_export(cell, tmp_path):
    cfg = {"name": cell, "task": "adding", "model": {"cell": cell, "hidden_size": 8},
           "data": {"num_steps": 10, "train_size": 64, "val_size": 16, "test_size": 16},
           "training": {"epochs": 2, "batch_size": 16, "lr": 0.01, "num_threads": 1, "device": "cpu"}}
    _, metrics = fit(cfg, tmp_path / "run", quiet=True)
    assert metrics["test"]["mse"] < 1.0
    ort = pytest.importorskip("onnxruntime")

    class Wrap(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = CELLS[cell](3, 4)

        def forward(self, x, lengths):
            return self.layer(x, lengths=lengths)[0]

    model = Wrap().eval()
    b, t = torch.export.Dim("batch"), torch.export.Dim("time", min=2)
    prog = torch.onnx.export(model, (torch.randn(2, 5, 3), torch.tensor([5, 3])), dynamo=True,
                             dynamic_shapes={"x": {0: b, 1: t}, "lengths": {0: b}})
    prog.save(str(tmp_path / "m.onnx"))
    x, lengths = torch.randn(3, 8, 3), torch.tensor([8, 1, 4])
    got = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"x": x.numpy(), "lengths": lengths.numpy()})[0]
    torch.testing.assert_close(torch.from_numpy(got), model(x, lengths).detach(), atol=1e-5, rtol=1e-5)
