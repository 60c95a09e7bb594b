"""CUDA paths: cuDNN dispatch, rnnkit's own loop on the GPU, lengths, weight flattening. Skipped without CUDA."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import rnnkit

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.fixture(autouse=True)
def no_tf32():
    """Full fp32 matmuls: cuDNN and cuBLAS may use TF32 (10-bit mantissa) on Ampere and later by default."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.mark.parametrize("cls,tcls", [(rnnkit.LSTM, nn.LSTM), (rnnkit.GRU, nn.GRU), (rnnkit.RNN, nn.RNN)])
def test_cudnn_equals_torch_nn_and_cpu(cls, tcls):
    torch.manual_seed(0)
    ref = tcls(8, 16, 2, batch_first=True, bidirectional=True)
    layer = cls.from_torch(ref).cuda()
    x = torch.randn(5, 12, 8)
    lengths = torch.tensor([12, 3, 7, 1, 9])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # flattened weights: cuDNN must not warn about non-contiguous weights
        out_gpu, _ = layer(x.cuda(), lengths=lengths.cuda())
    out_cpu, _ = cls.from_torch(ref)(x, lengths=lengths)
    torch.testing.assert_close(out_gpu.cpu(), out_cpu, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    "cls,kw",
    [(rnnkit.LSTM, {"activation": "relu"}), (rnnkit.LSTM, {"layer_norm": True}), (rnnkit.GRU, {"reset_after": False})],
)
def test_own_loop_on_gpu_matches_cpu(cls, kw):
    torch.manual_seed(1)
    layer = cls(4, 8, 2, bidirectional=True, **kw).double()
    x = torch.randn(3, 10, 4, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([10, 4, 7])
    out, _ = layer(x, lengths=lengths)
    out.square().sum().backward()
    grads = [p.grad.clone() for p in layer.parameters()]
    layer.zero_grad()
    gpu = layer.cuda()
    xg = x.detach().cuda().requires_grad_()
    out_g, _ = gpu(xg, lengths=lengths.cuda())
    out_g.square().sum().backward()
    torch.testing.assert_close(out_g.cpu(), out.detach(), atol=1e-10, rtol=0)
    torch.testing.assert_close(xg.grad.cpu(), x.grad, atol=1e-10, rtol=0)
    for g, p in zip(grads, gpu.parameters(), strict=True):
        torch.testing.assert_close(p.grad.cpu(), g, atol=1e-9, rtol=0)


def test_loop_and_cudnn_agree_on_gpu():
    torch.manual_seed(2)
    layer = rnnkit.LSTM(6, 32, 2, bidirectional=True).cuda()
    x = torch.randn(4, 20, 6, device="cuda")
    lengths = torch.tensor([20, 5, 13, 1], device="cuda")
    assert layer.engine == "fused"
    out_fused, (h1, c1) = layer(x, lengths=lengths)
    layer.engine = "scan"
    out_loop, (h2, c2) = layer(x, lengths=lengths)
    torch.testing.assert_close(out_loop, out_fused, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(c2, c1, atol=1e-5, rtol=1e-5)


def test_autocast_bfloat16_runs():
    layer = rnnkit.GRU(8, 16).cuda()
    x = torch.randn(2, 5, 8, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out, h = layer(x)
    assert out.shape == (2, 5, 16) and torch.isfinite(out.float()).all()
