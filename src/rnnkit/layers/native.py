"""rnnkit's native CPU kernel: the time loop of the LSTM, GRU and RNN in C++ (``csrc/``), built on first use.

The kernel computes what :mod:`rnnkit.layers.scan` computes (any activations the scan knows, layer norm,
recurrent dropout, lengths) for the LSTM, the GRU (both ``reset_after`` conventions) and the Elman RNN, but a
step is one GEMM (two for the GRU with ``reset_after=False``) plus one C++ pass over the batch rows instead of
~30 torch ops, which is what the Python loop spends its time on at small sizes.

It is compiled with ``torch.utils.cpp_extension`` (gcc and ninja) the first time a layer runs its own loop on
the CPU (about 25 s on two cores, once; the library is cached under ``~/.cache/rnnkit/native`` or
``$RNNKIT_NATIVE_CACHE``, keyed by a hash of the sources, flags and torch version). Where no
C++ compiler is present or the build fails, rnnkit warns once and the Python scan runs instead — same
results, slower. ``RNNKIT_NATIVE=0`` turns the kernel off.
"""

from __future__ import annotations

import hashlib
import os
import sys
import warnings
from pathlib import Path

import torch
from torch.autograd.function import once_differentiable

Tensor = torch.Tensor
CSRC = Path(__file__).with_name("csrc")
SOURCES = ("scan_ops.cpp", "scan_float.cpp", "scan_double.cpp")  # and scan.h, the kernels they share
KINDS = {"lstm": 0, "gru": 1, "rnn": 2, "gru_rb": 3}  # gru: reset_after=True; gru_rb: reset_after=False
ACT_CODES = {"tanh": 0, "sigmoid": 1, "relu": 2, "identity": 3, "hard_sigmoid": 4, "hard_sigmoid_keras2": 5}
_state: dict[str, bool] = {}


def _cpu_flags() -> list[str]:
    """``-mavx2 -mfma`` where this CPU has both (the float exp/tanh then run 8 lanes wide)."""
    try:
        words = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return []
    return ["-mavx2", "-mfma"] if {"avx2", "fma"} <= words else []


def _build() -> None:
    """Compile (or load the cached build of) the kernel; raises when that fails."""
    from torch.utils import cpp_extension

    try:  # the ninja wheel's binary, which is not on PATH when the venv is not activated
        import ninja

        if ninja.BIN_DIR not in os.environ.get("PATH", "").split(os.pathsep):
            os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")
    except ImportError:
        pass

    # -fopenmp: at::parallel_for splits a step's rows over torch's threads (the extension links the libgomp
    # torch has already loaded); -fno-trapping-math lets gcc vectorise the selects in the activations.
    flags = ["-O3", "-fopenmp", "-fno-trapping-math", *_cpu_flags()]
    digest = hashlib.sha256(" ".join([*flags, torch.__version__]).encode())
    for path in sorted(CSRC.iterdir()):
        digest.update(path.name.encode() + path.read_bytes())
    name = f"rnnkit_native_{digest.hexdigest()[:12]}"
    build = Path(os.environ.get("RNNKIT_NATIVE_CACHE", Path.home() / ".cache" / "rnnkit" / "native")) / name
    if not (build / f"{name}.so").exists():
        print(f"rnnkit: compiling the native recurrent kernel, once (about 25 s on two cores), into {build}",
              file=sys.stderr)
    build.mkdir(parents=True, exist_ok=True)
    cpp_extension.load(name=name, sources=[str(CSRC / s) for s in SOURCES], extra_cflags=flags,
                       extra_ldflags=["-fopenmp"], build_directory=str(build), is_python_module=False, verbose=False)


def enabled() -> bool:
    """Whether the native kernel is available: built (building it now if needed) and not turned off."""
    if "ok" not in _state:
        _state["ok"] = False
        if os.environ.get("RNNKIT_NATIVE", "1") != "0":
            try:
                _build()
                _state["ok"] = hasattr(torch.ops.rnnkit_native, "scan_forward")
            except Exception as exc:  # no compiler, no ninja, a failed build: the Python scan runs instead
                lines = str(exc).strip().splitlines() or [type(exc).__name__]
                first = next((ln for ln in lines if "error:" in ln), lines[0])[:200]
                warnings.warn(f"rnnkit: native recurrent kernel unavailable ({first}); using the Python scan, which "
                              "gives the same results more slowly (RNNKIT_NATIVE=0 skips the build)",
                              RuntimeWarning, stacklevel=2)
    return _state["ok"]


def empty_cache() -> int:
    """Release the buffers the native kernel keeps for reuse between steps; returns the bytes released.

    The kernel reuses its large buffers once the autograd graph that held them is gone, which saves a page
    fault per page of every fresh buffer (about a third of a step on CPU). The cache never holds more than one
    training step's peak; call this after training to return that memory at once.
    """
    return int(torch.ops.rnnkit_native.empty_cache()) if _state.get("ok") else 0


def supports_dtype(dtype: torch.dtype) -> bool:
    """Whether the kernel is available (building it if needed) and runs this dtype."""
    return dtype in (torch.float32, torch.float64) and enabled()


def supports(kind: str, gx: Tensor, act: str, rec_act: str) -> bool:
    """Whether the kernel can run this scan: a cell it has, CPU, float32/float64, activations it knows (builds
    the kernel on the first call)."""
    return (kind in KINDS and gx.device.type == "cpu" and act in ACT_CODES and rec_act in ACT_CODES
            and supports_dtype(gx.dtype))


class NativeScanFunction(torch.autograd.Function):
    """One layer and direction of an LSTM, GRU or RNN as one autograd node, stepped by the C++ kernel.

    ``apply(kind, act, rec_act, gx, w_hh, b_hh, ln_hh_gain, ln_hh_shift, ln_ih_gain, ln_ih_shift, drop, active,
    h0, c0)`` with the codes of :data:`KINDS` and :data:`ACT_CODES`, gx (B, T, G*H) = ``W_ih x + b_ih``
    *before* the input-side layer norm (the kernel applies it when ``ln_ih_gain`` is given), w_hh (G*H, H),
    the biases, gains and shifts (G*H,) or None, drop (B, H) the recurrent-dropout mask or None, active (B, T)
    bool or None, h0 (B, H) and, for the LSTM, c0 (B, H) (else None). Returns outputs (B, T, H), h_T and, for
    the LSTM, c_T.
    """

    @staticmethod
    def forward(ctx, kind, act, rec, gx, w, b, g_hh, s_hh, g_ih, s_ih, drop, active, h0, c0):  # noqa: D102
        live = None if active is None else active.to(torch.uint8).contiguous()
        gx = gx.contiguous()
        c0 = h0.new_empty(0) if c0 is None else c0.contiguous()
        out, hT, cT, A, Hp, Cp, X2, Hr, Z, S = torch.ops.rnnkit_native.scan_forward(
            kind, gx, w.contiguous(), b, g_hh, s_hh, g_ih, s_ih, drop, live, h0.contiguous(), c0, act, rec)
        ctx.codes = kind, act, rec
        ctx.flags = b is not None, g_hh is not None, g_ih is not None
        ctx.save_for_backward(w, g_hh, g_ih, drop, live, gx, A, Hp, Cp, X2, Hr, Z, S)
        return (out, hT, cT) if kind == KINDS["lstm"] else (out, hT)

    @staticmethod
    @once_differentiable
    def backward(ctx, dout, dhT, dcT=None):  # noqa: D102
        w, g_hh, g_ih, drop, live, gx, A, Hp, Cp, X2, Hr, Z, S = ctx.saved_tensors
        kind, act, rec = ctx.codes
        need = ctx.needs_input_grad
        dcT = dhT.new_empty(0) if dcT is None else dcT.contiguous()
        rb = kind == KINDS["gru_rb"]
        dX, dZ, dh0, dc0, sums = torch.ops.rnnkit_native.scan_backward(
            kind, dout.contiguous(), dhT.contiguous(), dcT, w.contiguous(), g_hh, g_ih, drop, live, gx, A, Hp,
            Hr if rb else Cp, X2, Z, S, act, rec, need[12] or need[13])
        has_b, ln_hh, ln_ih = ctx.flags
        B, T, G = dZ.shape
        dz2 = dZ.view(B * T, G)
        if rb:  # W_hrz reads h_rec, W_hn reads r ⊙ h_rec (kept in X2)
            H = G // 3
            dw = torch.cat([dz2[:, : 2 * H].t().mm(Hr.view(B * T, H)), dz2[:, 2 * H:].t().mm(X2.view(B * T, H))])
        else:
            dw = dz2.t().mm(Hr.view(B * T, -1))  # all steps' W_hh gradient in one matmul
        db = dz2.sum(0) if has_b else None
        g_hh_grad, s_hh_grad = (sums[0], sums[1]) if ln_hh else (None, None)
        g_ih_grad, s_ih_grad = (sums[2], sums[3]) if ln_ih else (None, None)
        return (None, None, None, dX, dw, db, g_hh_grad, s_hh_grad, g_ih_grad, s_ih_grad, None, None,
                dh0 if need[12] else None, dc0 if need[13] else None)
