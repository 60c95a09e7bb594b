"""Every layer configuration leaves Python: torch.export (dynamic batch and time), ONNX through onnxruntime, and
torch.compile(fullgraph=True) forward and backward — including the native kernel's configurations."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import rnnkit

CONFIGS = [
    ("RNN", {}),
    ("LSTM", {}),
    ("GRU", {}),
    ("LSTM", {"activation": "relu", "recurrent_activation": "hard_sigmoid"}),
    ("RNN", {"activation": "gelu"}),  # no hand-written derivative: the autograd engine
    ("LSTM", {"layer_norm": True}),
    ("GRU", {"reset_after": False}),
    ("GRU", {"bidirectional": True, "num_layers": 2}),
    ("LSTM", {"bidirectional": True, "num_layers": 2, "layer_norm": True, "merge_mode": "sum"}),
    ("LSTM", {"proj_size": 3}),
]
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'default'}" for n, kw in CONFIGS]


class Wrap(nn.Module):
    """A layer with a flat signature and flat outputs: (x, lengths) -> (outputs, *final states)."""

    def __init__(self, layer: nn.Module, with_lengths: bool) -> None:
        super().__init__()
        self.layer, self.with_lengths = layer, with_lengths

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None):
        out, h = self.layer(x, lengths=lengths if self.with_lengths else None)
        return (out, *(h if isinstance(h, tuple) else (h,)))


def _model(name, kw, with_lengths):
    torch.manual_seed(0)
    layer = getattr(rnnkit, name)(5, 6, **kw)
    with torch.no_grad():  # move the layer-norm gains/shifts off 1 and 0
        for p in layer.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return Wrap(layer, with_lengths).eval()


def _inputs(batch, steps, with_lengths):
    x = torch.randn(batch, steps, 5)
    lengths = torch.randint(1, steps + 1, (batch,))
    lengths[0] = steps
    return (x, lengths) if with_lengths else (x,)


def _dynamic(with_lengths):
    b, t = torch.export.Dim("batch", min=1, max=4096), torch.export.Dim("time", min=2, max=100_000)
    shapes = {"x": {0: b, 1: t}}
    if with_lengths:
        shapes["lengths"] = {0: b}
    return shapes


@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize(("name", "kw"), CONFIGS, ids=IDS)
def test_torch_export_dynamic_batch_and_time(name, kw, with_lengths):
    model = _model(name, kw, with_lengths)
    ep = torch.export.export(model, _inputs(3, 6, with_lengths), dynamic_shapes=_dynamic(with_lengths))
    new = _inputs(5, 9, with_lengths)  # another batch size and length than the example
    with torch.no_grad():
        for a, b in zip(ep.module()(*new), model(*new), strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


# torch.export runs every configuration with and without lengths (above). ONNX's converter adds its own
# translation of each op, so the three plain cells run both ways and the others one way each, alternating: the
# masked and the unmasked paths both meet every other option (bidirectional: the GRU with lengths, the LSTM without).
ONNX_CASES = [pytest.param(name, kw, lengths, id=f"{IDS[i]}-{'lengths' if lengths else 'full'}")
              for i, (name, kw) in enumerate(CONFIGS) for lengths in (False, True) if i < 3 or lengths == bool(i % 2)]


@pytest.mark.parametrize(("name", "kw", "with_lengths"), ONNX_CASES)
def test_onnx_in_onnxruntime(name, kw, with_lengths, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    model = _model(name, kw, with_lengths)
    names = ["x", "lengths"] if with_lengths else ["x"]
    prog = torch.onnx.export(model, _inputs(3, 6, with_lengths), dynamo=True, dynamic_shapes=_dynamic(with_lengths),
                             input_names=names, verbose=False)
    path = tmp_path / "m.onnx"
    prog.save(str(path))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch, steps in ((5, 9), (1, 2)):
        new = _inputs(batch, steps, with_lengths)
        got = sess.run(None, {n: t.numpy() for n, t in zip(names, new, strict=True)})
        with torch.no_grad():
            want = model(*new)
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(torch.from_numpy(a), b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize(("name", "kw"), CONFIGS[:3] + CONFIGS[5:8], ids=IDS[:3] + IDS[5:8])
def test_compile_fullgraph_trains(name, kw, with_lengths):
    """Forward and backward through torch.compile(fullgraph=True) in training mode — also the CPU LSTM, whose torch
    kernel does not compile (aten.mkldnn_rnn_layer): the layer routes it to an engine that does."""
    torch._dynamo.reset()
    model = _model(name, kw, with_lengths).train()
    compiled = torch.compile(model, fullgraph=True)
    grads = []
    inputs = _inputs(3, 6, with_lengths)
    for m in (compiled, model):
        x = inputs[0].clone().requires_grad_()
        outs = m(x, *inputs[1:])
        (outs[0].square().sum() + outs[1].sum()).backward()
        grads.append([x.grad, *(p.grad.clone() for p in model.parameters())])
        model.zero_grad()
        if m is compiled:
            want = [o.detach() for o in outs]
        else:
            for a, b in zip(want, outs, strict=True):
                torch.testing.assert_close(a, b.detach(), atol=1e-5, rtol=1e-5)
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_a_saved_program_with_the_native_op_loads_after_import_rnnkit(tmp_path):
    """The documented way to run a .pt2 (`import rnnkit, torch; torch.export.load(...)`) works in a fresh
    process: `import rnnkit` alone registers the kernel's custom op that the graph calls."""
    import subprocess
    import sys

    model = _model("LSTM", {}, True)
    example = _inputs(3, 6, True)
    ep = torch.export.export(model, example, dynamic_shapes=_dynamic(True))
    if not any("rnnkit" in str(n.target) for n in ep.graph.nodes):
        pytest.skip("this layer exported without the native kernel here")
    torch.export.save(ep, tmp_path / "m.pt2")
    torch.save(example, tmp_path / "x.pt")
    with torch.no_grad():
        torch.save(model(*example), tmp_path / "want.pt")
    code = ("import sys, rnnkit, torch\n"
            "p = torch.export.load(sys.argv[1] + '/m.pt2').module()\n"
            "got, want = p(*torch.load(sys.argv[1] + '/x.pt')), torch.load(sys.argv[1] + '/want.pt')\n"
            "print(max(float((a - b).abs().max()) for a, b in zip(got, want)))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert float(out.stdout.split()[-1]) < 1e-5
