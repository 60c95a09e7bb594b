"""rnnkit's native CPU kernel: the time loop of the LSTM, GRU and RNN in C++ (``csrc/``), built on first use.

The kernel computes what :mod:`rnnkit.layers.scan` computes (any activations the scan knows, layer norm,
recurrent dropout, lengths) for the LSTM, the GRU (both ``reset_after`` conventions) and the Elman RNN, but a
step is one GEMM (two for the GRU with ``reset_after=False``) plus one C++ pass over the batch rows instead of
~30 torch ops, which is what the Python loop spends its time on at small sizes.

It is compiled with ``torch.utils.cpp_extension`` (gcc and ninja) by the first forward pass that needs it (the
message states how long it took; about 25 s on two idle cores, over a minute on a busy one). The library is
cached under ``~/.cache/rnnkit/native`` or ``$RNNKIT_NATIVE_CACHE``, keyed by a hash of the sources, flags
and torch version. :func:`available` answers without compiling anything. Where no C++ compiler is present or
the build fails, rnnkit warns once and the Python scan runs instead — same results, slower.
``RNNKIT_NATIVE=0`` turns the kernel off.

For ``torch.export`` and ``torch.compile`` the kernel is wrapped as the ``torch.library`` custom ops
``rnnkit::native_scan`` and ``rnnkit::native_scan_backward``, with fake (meta) kernels that give every
output's shape from the inputs' and an autograd formula, so graphs trace it as one opaque node.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import sys
import time
import warnings
from pathlib import Path

import torch
from torch.autograd.function import once_differentiable

Tensor = torch.Tensor
CSRC = Path(__file__).with_name("csrc")
# and scan.h, which the first three share
SOURCES = ("scan_ops.cpp", "scan_float.cpp", "scan_double.cpp", "diagonal.cpp", "dropout.cpp")
KINDS = {"lstm": 0, "gru": 1, "rnn": 2, "gru_rb": 3}  # gru: reset_after=True; gru_rb: reset_after=False
NUM_GATES = {0: 4, 1: 3, 2: 1, 3: 3}
ACT_CODES = {"tanh": 0, "sigmoid": 1, "relu": 2, "identity": 3, "hard_sigmoid": 4, "hard_sigmoid_keras2": 5}
_state: dict[str, object] = {}  # "ok": bool once a build was tried; "why": the reason it is unavailable


@functools.cache
def _cpu_words() -> frozenset[str]:
    """The words of /proc/cpuinfo (its flags among them); empty where there is none."""
    try:
        return frozenset(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return frozenset()


def _cpu_flags() -> list[str]:
    """``-mavx2 -mfma`` where this CPU has both (the float exp/tanh then run 8 lanes wide)."""
    return ["-mavx2", "-mfma"] if {"avx2", "fma"} <= _cpu_words() else []


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX-BF16), so that a bf16 GEMM runs at about
    4x the float32 rate; without them torch emulates bf16 and mixed precision would only be slower."""
    return bool({"avx512_bf16", "amx_bf16"} & _cpu_words())


def _flags() -> list[str]:
    # -fopenmp: at::parallel_for splits a step's rows over torch's threads (the extension links the libgomp
    # torch has already loaded); -fno-trapping-math lets gcc vectorise the selects in the activations.
    return ["-O3", "-fopenmp", "-fno-trapping-math", *_cpu_flags()]


def build_dir() -> Path:
    """Where the build for these sources, flags and torch version lives (whether or not it exists yet)."""
    root = Path(os.environ.get("RNNKIT_NATIVE_CACHE", Path.home() / ".cache" / "rnnkit" / "native"))
    return root / _build_name()


@functools.cache
def _build_name() -> str:
    digest = hashlib.sha256(" ".join([*_flags(), torch.__version__]).encode())
    for path in sorted(CSRC.iterdir()):
        if path.is_file():
            digest.update(path.name.encode() + path.read_bytes())
    return f"rnnkit_native_{digest.hexdigest()[:12]}"


def _ninja_on_path() -> bool:
    """Put the ninja wheel's binary on PATH (it is not there when the venv is not activated); True if found."""
    try:
        import ninja

        if ninja.BIN_DIR not in os.environ.get("PATH", "").split(os.pathsep):
            os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")
    except ImportError:
        pass
    return shutil.which("ninja") is not None


def _compiler() -> str | None:
    """The C++ compiler torch.utils.cpp_extension would use, if it is on PATH."""
    cxx = os.environ.get("CXX", "c++")
    return shutil.which(cxx) or shutil.which("g++")


def _build() -> None:
    """Compile (or load the cached build of) the kernel; raises when that fails."""
    from torch.utils import cpp_extension

    _ninja_on_path()
    build = build_dir()
    name = build.name
    cached = (build / f"{name}.so").exists()
    start = time.perf_counter()
    if not cached:
        print(f"rnnkit: compiling the native recurrent kernel, once, into {build} (about 25 s on two idle cores)",
              file=sys.stderr, flush=True)
    build.mkdir(parents=True, exist_ok=True)
    cpp_extension.load(name=name, sources=[str(CSRC / s) for s in SOURCES], extra_cflags=_flags(),
                       extra_ldflags=["-fopenmp"], build_directory=str(build), is_python_module=False, verbose=False)
    if not cached:
        print(f"rnnkit: native kernel built in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)


def why_unavailable() -> str | None:
    """Why the kernel cannot run here (with the fix), or None when it can — built already, or buildable: a C++
    compiler and ninja are present. Never compiles."""
    if os.environ.get("RNNKIT_NATIVE", "1") == "0":
        return "turned off by RNNKIT_NATIVE=0 (unset it to use the kernel)"
    if _state.get("ok") is False:
        return str(_state.get("why", "its build failed"))
    if _state.get("ok"):
        return None
    build = build_dir()
    if (build / f"{build.name}.so").exists():
        return None
    if _compiler() is None:
        return "no C++ compiler on PATH to build it (install g++, or set CXX)"
    if not _ninja_on_path():
        return "ninja is not installed to build it (pip install ninja)"
    return None


# Compiled graphs take the answer as a constant instead of tracing the file checks. This is the mark that
# torch.compiler.assume_constant_result sets; the decorator itself imports torch._dynamo to set it, three seconds
# added to every `import rnnkit` (the CLI's one-line errors included). tests/test_native.py checks that the mark
# is still the decorator's.
why_unavailable._dynamo_marked_constant = True  # type: ignore[attr-defined]


def available() -> bool:
    """Whether the kernel can run (already built, or buildable on first use); never compiles."""
    return why_unavailable() is None


def is_built() -> bool:
    """Whether the kernel is loaded in this process."""
    return bool(_state.get("ok"))


def enabled() -> bool:
    """Load the kernel (building it now if needed); True when it is ready to run."""
    if "ok" not in _state:
        why = why_unavailable()
        _state["ok"] = False
        if why is not None:
            _state["why"] = why
        else:
            try:
                _build()
                _state["ok"] = hasattr(torch.ops.rnnkit_native, "scan_forward")
                if not _state["ok"]:
                    _state["why"] = "the built library registered no rnnkit_native ops"
            except Exception as exc:  # no compiler, no ninja, a failed build: the Python scan runs instead
                lines = str(exc).strip().splitlines() or [type(exc).__name__]
                first = next((ln for ln in lines if "error:" in ln), lines[0])[:200]
                _state["why"] = f"its build failed: {first}"
                warnings.warn(f"rnnkit: native recurrent kernel unavailable ({_state['why']}); using the Python "
                              "scan, which gives the same results more slowly (RNNKIT_NATIVE=0 skips the build)",
                              RuntimeWarning, stacklevel=2)
    return bool(_state["ok"])


def empty_cache() -> int:
    """Release the buffers the native kernel keeps for reuse between steps; returns the bytes released.

    The kernel reuses its large buffers once the autograd graph that held them is gone, which saves a page
    fault per page of every fresh buffer (about a third of a step on CPU). The cache never holds more than one
    training step's peak; call this after training to return that memory at once.
    """
    return int(torch.ops.rnnkit_native.empty_cache()) if _state.get("ok") else 0


def tracing() -> bool:
    """Inside torch.compile, torch.export or ONNX export (values are symbolic: no data-dependent checks, no
    kernel calls that graphs cannot see)."""
    return torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export() or torch.jit.is_tracing()


def dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """``F.dropout(x, p, training)`` with the mask drawn by the kernel (``csrc/dropout.cpp``): a counter-based
    hash on every thread instead of torch's sequential generator, about 10x faster on the CPU sizes of a training
    step. The mask's seed is drawn from torch's generator, so ``torch.manual_seed`` and a restored generator
    state reproduce it; the masks differ from ``F.dropout``'s, not their distribution. Falls back to
    ``F.dropout`` off the CPU, while tracing or exporting, and where the kernel is unavailable."""
    if not training or p == 0.0:
        return x
    if (p >= 1.0 or x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64, torch.bfloat16)
            or tracing() or not enabled()):
        return torch.nn.functional.dropout(x, p, training)
    seed = int(torch.randint(-(2**63), 2**63 - 1, (1,), dtype=torch.int64))
    return x * torch.ops.rnnkit_native.dropout_mask(x.detach(), p, seed)


class Dropout(torch.nn.Dropout):
    """``torch.nn.Dropout`` (same arguments, no parameters, same state dict) drawing its masks through
    :func:`dropout`. Shape: any -> the same."""

    def forward(self, x: Tensor) -> Tensor:
        if self.inplace:
            return super().forward(x)
        return dropout(x, self.p, self.training)


def bf16_autocast() -> bool:
    """Whether this code runs inside ``torch.autocast("cpu", dtype=torch.bfloat16)`` (``training.amp`` on a CPU
    with bf16 instructions): the kernel's mixed mode, which ``auto`` then prefers over torch's fused kernels."""
    return torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16


def mixed_precision(w: Tensor) -> bool:
    """Whether the kernel takes its step GEMMs in bfloat16 for this float32 weight (under :func:`bf16_autocast`).
    The states, gates and their gradients stay float32; only the matmuls round their inputs to bf16."""
    return w.dtype == torch.float32 and w.device.type == "cpu" and bf16_autocast()


def supports_dtype(dtype: torch.dtype) -> bool:
    """Whether the kernel runs this dtype (float32, float64)."""
    return dtype in (torch.float32, torch.float64)


# ---------------------------------------------------------------------------------------------- the ops
# Outputs of the forward op, in order: out (B, T, H), hT (B, H), cT (B, H) for the LSTM else (0,), then what the
# backward op needs: A (B, T, G) gate activations, Hp (B, T, H) states entering each step, Cp (B, T, H) cell
# states (LSTM) else (0,), X2 (B, T, H) (GRU: the n gate's recurrent input; LSTM: φ(c)) else (0,), Hr (B, T, H)
# h_{t-1} after recurrent dropout, or (0,) without dropout (then it is Hp), Z (T, B, G) raw recurrent projections
# with layer norm else (0,), S (B, T, 2, 8) layer-norm statistics. Outputs never alias inputs or each other.
def _forward_shapes(kind: int, B, T, G, has_drop: bool, ln_hh: bool) -> list[tuple]:
    H = G // NUM_GATES[kind]
    lstm, rnn = kind == KINDS["lstm"], kind == KINDS["rnn"]
    return [(B, T, H), (B, H), (B, H) if lstm else (0,), (B, T, G), (B, T, H), (B, T, H) if lstm else (0,),
            (0,) if rnn else (B, T, H), (B, T, H) if has_drop else (0,), (T, B, G) if ln_hh else (0,),
            (B, T, 2, 8)]


def _forward_impl(kind, act, rec, gx, w, b, g_hh, s_hh, g_ih, s_ih, drop, live, h0, c0) -> list[Tensor]:
    if not enabled():
        raise RuntimeError(f"rnnkit's native kernel is unavailable: {_state.get('why')}")
    res = list(torch.ops.rnnkit_native.scan_forward(kind, gx.contiguous(), w.contiguous(), b, g_hh, s_hh, g_ih,
                                                     s_ih, drop, live, h0.contiguous(), c0.contiguous(), act, rec))
    if drop is None:
        res[7] = gx.new_empty(0)  # Hr is Hp itself without dropout
    if g_hh is None:
        res[8] = gx.new_empty(0)  # one step's scratch only
    return res


def _backward_impl(kind, act, rec, dout, dhT, dcT, w, g_hh, g_ih, drop, live, gx, A, Hp, Cp, X2, Hr, Z, S,
                   need_h0) -> list[Tensor]:
    if not enabled():
        raise RuntimeError(f"rnnkit's native kernel is unavailable: {_state.get('why')}")
    rb = kind == KINDS["gru_rb"]
    hr = Hr if Hr.numel() else Hp
    res = list(torch.ops.rnnkit_native.scan_backward(
        kind, dout.contiguous(), dhT.contiguous(), dcT.contiguous(), w.contiguous(), g_hh, g_ih, drop, live, gx,
        A, Hp, hr if rb else Cp, X2, Z if Z.numel() else A.new_empty(1, 1, 1), S, act, rec, need_h0))
    if res[1].data_ptr() == res[0].data_ptr():
        res[1] = A.new_empty(0)
    return res


@torch.library.custom_op("rnnkit::native_scan", mutates_args=())
def native_scan(kind: int, act: int, rec: int, gx: Tensor, w: Tensor, b: Tensor | None, g_hh: Tensor | None,
                s_hh: Tensor | None, g_ih: Tensor | None, s_ih: Tensor | None, drop: Tensor | None,
                live: Tensor | None, h0: Tensor, c0: Tensor) -> list[Tensor]:
    """One layer and direction forward (see the shapes above); ``live`` (B, T) uint8 marks live steps, ``c0`` is
    (B, H) for the LSTM else (0,)."""
    return _forward_impl(kind, act, rec, gx, w, b, g_hh, s_hh, g_ih, s_ih, drop, live, h0, c0)


@native_scan.register_fake
def _(kind, act, rec, gx, w, b, g_hh, s_hh, g_ih, s_ih, drop, live, h0, c0):
    B, T, G = gx.shape
    return [gx.new_empty(s) for s in _forward_shapes(kind, B, T, G, drop is not None, g_hh is not None)]


@torch.library.custom_op("rnnkit::native_scan_backward", mutates_args=())
def native_scan_backward(kind: int, act: int, rec: int, dout: Tensor, dhT: Tensor, dcT: Tensor, w: Tensor,
                         g_hh: Tensor | None, g_ih: Tensor | None, drop: Tensor | None, live: Tensor | None,
                         gx: Tensor, A: Tensor, Hp: Tensor, Cp: Tensor, X2: Tensor, Hr: Tensor, Z: Tensor,
                         S: Tensor, need_h0: bool) -> list[Tensor]:
    """BPTT of :func:`native_scan`: returns dX (B, T, G) wrt gx, dZ (B, T, G) wrt the recurrent projections (or
    (0,) when it equals dX), dh0 (B, H), dc0 (B, H) or (0,), and the layer-norm sums (4, G) or (4, 0)."""
    return _backward_impl(kind, act, rec, dout, dhT, dcT, w, g_hh, g_ih, drop, live, gx, A, Hp, Cp, X2, Hr, Z, S,
                          need_h0)


@native_scan_backward.register_fake
def _(kind, act, rec, dout, dhT, dcT, w, g_hh, g_ih, drop, live, gx, A, Hp, Cp, X2, Hr, Z, S, need_h0):
    B, T, G = A.shape
    H = G // NUM_GATES[kind]
    ln_hh, ln_ih = g_hh is not None, g_ih is not None
    shared = not ln_hh and not ln_ih if kind == KINDS["gru_rb"] else kind != KINDS["gru"] and not ln_hh and not ln_ih
    return [A.new_empty(B, T, G), A.new_empty((0,) if shared else (B, T, G)), A.new_empty(B, H),
            A.new_empty((B, H) if kind == KINDS["lstm"] else (0,)), A.new_empty(4, G if ln_hh or ln_ih else 0)]


def _save(ctx, inputs, output, low: bool = False) -> None:
    kind, act, rec, gx, w, b, g_hh, s_hh, g_ih, s_ih, drop, live, h0, c0 = inputs
    _, _, _, A, Hp, Cp, X2, Hr, Z, S = output
    ctx.codes = kind, act, rec
    ctx.low = low  # w is the bf16 copy: the weight gradient's matmul runs in bf16 too
    ctx.flags = b is not None, g_hh is not None, g_ih is not None, drop is not None
    ctx.save_for_backward(w, g_hh, g_ih, drop, live, gx, A, Hp, Cp, X2, Hr, Z, S)


def _grads(ctx, dout, dhT, dcT, backward) -> tuple:
    """The gradients of every forward input from those of (out, hT, cT), through ``backward`` (the custom op
    when traced, its implementation in eager mode)."""
    w, g_hh, g_ih, drop, live, gx, A, Hp, Cp, X2, Hr, Z, S = ctx.saved_tensors
    kind, act, rec = ctx.codes
    has_b, ln_hh, ln_ih, has_drop = ctx.flags
    need = ctx.needs_input_grad[-14:]  # the op's 14 inputs (the eager node has a leading flag)
    low = ctx.low
    B, T, G = A.shape
    H = G // NUM_GATES[kind]
    dout = torch.zeros_like(Hp) if dout is None else dout
    dhT = Hp.new_zeros(B, H) if dhT is None else dhT
    dcT = (Hp.new_zeros(B, H) if dcT is None else dcT) if kind == KINDS["lstm"] else Hp.new_empty(0)
    dX, dZ, dh0, dc0, sums = backward(kind, act, rec, dout, dhT, dcT, w, g_hh, g_ih, drop, live, gx, A, Hp, Cp, X2,
                                      Hr, Z, S, bool(need[12] or need[13]))
    dZ = dX if dZ.numel() == 0 else dZ
    hr = Hr if has_drop else Hp
    dz2 = dZ.reshape(B * T, G)
    if kind == KINDS["gru_rb"]:  # W_hrz reads h_rec, W_hn reads r ⊙ h_rec (kept in X2)
        dw = torch.cat([_mm_t(dz2[:, : 2 * H], hr.reshape(B * T, H), low),
                        _mm_t(dz2[:, 2 * H:], X2.reshape(B * T, H), low)])
    else:
        dw = _mm_t(dz2, hr.reshape(B * T, H), low)  # all steps' W_hh gradient in one matmul
    db = dz2.sum(0) if has_b else None
    g_hh_grad, s_hh_grad = (sums[0], sums[1]) if ln_hh else (None, None)
    g_ih_grad, s_ih_grad = (sums[2], sums[3]) if ln_ih else (None, None)
    return (None, None, None, dX, dw, db, g_hh_grad, s_hh_grad, g_ih_grad, s_ih_grad, None, None,
            dh0 if need[12] else None, dc0 if need[13] and kind == KINDS["lstm"] else None)


def _mm_t(a: Tensor, b: Tensor, low: bool) -> Tensor:
    """a.T @ b in a's dtype; with ``low`` the product is taken in bfloat16 (float accumulation)."""
    return a.t().bfloat16().mm(b.bfloat16()).to(a.dtype) if low else a.t().mm(b)


native_scan.register_autograd(lambda ctx, grads: _grads(ctx, grads[0], grads[1], grads[2], native_scan_backward),
                              setup_context=_save)


class NativeScanFunction(torch.autograd.Function):
    """The same node for eager mode: the kernel called directly, without the custom op's dispatch (about 0.1 ms
    a call, which is 5-10% of a small layer's step)."""

    @staticmethod
    def forward(ctx, low: bool, *inputs):  # noqa: D102
        if low:  # the step GEMMs in bfloat16: the kernel sees a bf16 w and keeps everything else in float32
            inputs = (*inputs[:4], inputs[4].bfloat16(), *inputs[5:])
        res = _forward_impl(*inputs)
        _save(ctx, inputs, res, low)
        return res[0], res[1], res[2]

    @staticmethod
    @once_differentiable
    def backward(ctx, dout, dhT, dcT):  # noqa: D102
        return (None, *_grads(ctx, dout, dhT, dcT, _backward_impl))  # dw in float32, as the weight


def scan(kind: str, act: str, rec: str, gx: Tensor, w: Tensor, b: Tensor | None, g_hh: Tensor | None,
         s_hh: Tensor | None, g_ih: Tensor | None, s_ih: Tensor | None, drop: Tensor | None, active: Tensor | None,
         h0: Tensor, c0: Tensor | None) -> tuple[Tensor, ...]:
    """One layer and direction through the kernel: gx (B, T, G*H) = ``W_ih x + b_ih`` *before* the input-side
    layer norm (applied in the kernel when ``g_ih`` is given), w (G*H, H), the biases, gains and shifts (G*H,) or
    None, drop (B, H) the recurrent-dropout mask or None, active (B, T) bool or None, h0 (B, H) and, for the LSTM,
    c0 (B, H). Returns outputs (B, T, H), h_T and, for the LSTM, c_T. Traced (torch.compile, torch.export) it is
    the custom op ``rnnkit::native_scan``; in eager mode the same kernel as a plain autograd node."""
    live = None if active is None else active.to(torch.uint8).contiguous()
    k = KINDS[kind]
    c0 = h0.new_empty(0) if c0 is None else c0
    args = (k, ACT_CODES[act], ACT_CODES[rec], gx.contiguous(), w, b, g_hh, s_hh, g_ih, s_ih, drop, live, h0, c0)
    if torch.compiler.is_compiling():
        res = native_scan(*args)
    else:
        res = NativeScanFunction.apply(mixed_precision(w), *args)
    return (res[0], res[1], res[2]) if k == KINDS["lstm"] else (res[0], res[1])


# ------------------------------------------------------------------------------ the diagonal recurrences
# minGRU, minLSTM and IndRNN (csrc/diagonal.cpp): an elementwise recurrence, forward and backward each one fused
# pass over the pre-activations. Eager mode only: traced graphs run these cells' autograd step instead.
MINIMAL_KINDS = {"mingru": 0, "minlstm": 1}


def _live(active: Tensor | None) -> Tensor | None:
    return None if active is None else active.to(torch.uint8).contiguous()


def _incoming(dhs: Tensor | None, dhT: Tensor | None, h0: Tensor) -> tuple[Tensor | None, Tensor]:
    """The gradients a diagonal kernel's backward takes: of the states (None: the outputs were not used) and of
    the final state (zeros when it was not)."""
    return (None if dhs is None else dhs.contiguous()), (h0.new_zeros(h0.shape) if dhT is None else dhT.contiguous())


class MinimalScanFunction(torch.autograd.Function):
    """States (B, T, H) of minGRU/minLSTM from gx (B, T, G*H) and h0 (B, H), and the last one (B, H) apart (so
    that a loss on the final state alone costs no (B, T, H) gradient); ``live`` (B, T) uint8 or None."""

    @staticmethod
    def forward(ctx, kind: int, gx: Tensor, h0: Tensor, live: Tensor | None):  # noqa: D102
        hs = torch.ops.rnnkit_native.minimal_forward(kind, gx, h0, live)
        ctx.kind = kind
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(gx, hs, h0, live)
        return hs, hs[:, -1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, dhs, dhT):  # noqa: D102
        gx, hs, h0, live = ctx.saved_tensors
        dhs, dhT = _incoming(dhs, dhT, h0)
        dgx, dh0 = torch.ops.rnnkit_native.minimal_backward(ctx.kind, dhs, dhT, gx, hs, h0, live)
        return None, dgx, dh0 if ctx.needs_input_grad[2] else None, None


def minimal_scan(kind: str, gx: Tensor, h0: Tensor, active: Tensor | None) -> tuple[Tensor, Tensor]:
    """The states (B, T, H) after every step of ``kind`` ("mingru", "minlstm") over gx (B, T, G*H) (the input
    projection, layer-normed if the layer is) from h0 (B, H); a step where ``active`` (B, T) is False keeps the
    state. The layer's outputs are these states, zeroed at padded steps; the second result is the final state."""
    return MinimalScanFunction.apply(MINIMAL_KINDS[kind], gx.contiguous(), h0.contiguous(), _live(active))


class IndRNNScanFunction(torch.autograd.Function):
    """States (B, T, H) of IndRNN, ``h_t = act(gx_t + u ⊙ h_{t-1} ⊙ drop + b)``, and the last one (B, H) apart."""

    @staticmethod
    def forward(ctx, act: int, gx: Tensor, u: Tensor, b: Tensor | None, drop: Tensor | None,
                live: Tensor | None, h0: Tensor):  # noqa: D102
        (hs,) = torch.ops.rnnkit_native.indrnn_forward(act, gx, u, b, drop, live, h0)
        ctx.act, ctx.has_b = act, b is not None
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(u, drop, live, hs, h0)
        return hs, hs[:, -1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, dhs, dhT):  # noqa: D102
        u, drop, live, hs, h0 = ctx.saved_tensors
        dhs, dhT = _incoming(dhs, dhT, h0)
        da, du, dh0 = torch.ops.rnnkit_native.indrnn_backward(ctx.act, dhs, dhT, u, drop, live, hs, h0)
        db = da.sum((0, 1)) if ctx.has_b and ctx.needs_input_grad[3] else None
        return None, da, du.sum(0), db, None, None, dh0 if ctx.needs_input_grad[6] else None


def indrnn_scan(act: str, gx: Tensor, u: Tensor, b: Tensor | None, drop: Tensor | None, active: Tensor | None,
                h0: Tensor) -> tuple[Tensor, Tensor]:
    """The states (B, T, H) after every IndRNN step over gx (B, T, H), with u (H,) (already bounded), b (H,) or
    None, drop (B, H) the recurrent-dropout mask or None, active (B, T) bool or None, h0 (B, H); and the final
    state (B, H)."""
    return IndRNNScanFunction.apply(ACT_CODES[act], gx.contiguous(), u.contiguous(), b, drop, _live(active),
                                    h0.contiguous())
