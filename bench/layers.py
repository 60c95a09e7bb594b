"""Layer benchmark: one training step of rnnkit.LSTM / GRU / RNN against torch.nn, as a speed ratio.

A training step is forward + backward + Adam step in float32 on a small model (optional embedding, the
recurrent layer, a linear head on the last hidden state, a loss). For every row the torch.nn model and the
rnnkit model run interleaved, step by step, after warm-up; each side's time is the median of its timed steps
and ``ratio = torch ms / rnnkit ms`` (> 1: rnnkit is faster). Both models start from the same weights.

Cases (batch, steps, features; model; loss):

* A text      128 x 200, Embedding(10000, 128) on random ids, LSTM 128 x 2 layers, Linear(1), sigmoid + BCE
* B rows      128 x 28 x 28, LSTM 128, Linear(10), 10-way cross-entropy
* C forecast  32 x 50 x 1, LSTM 50 x 2 layers, Linear(1), MSE
* D long      32 x 1024 x 64, one layer of 256: LSTM, GRU and tanh RNN, Linear(1), MSE

Rows per case: ``rnnkit default`` against torch.nn's same cell (target >= 0.95x), then the options torch.nn
does not have, each against torch.nn's fused kernel of the same cell (floor 0.6x, goal 0.9x). The script only
prints; it asserts nothing about speed. See bench/README.md for how to run it.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import torch
import torch.nn.functional as F
from torch import nn

import rnnkit

DEFAULT_FLOOR = 0.95  # rnnkit default vs torch.nn: must not be slower than this
OPTION_FLOOR, OPTION_GOAL = 0.6, 0.9  # rnnkit-only options vs torch.nn's fused kernel

TORCH_CELLS: dict[str, type[nn.Module]] = {"LSTM": nn.LSTM, "GRU": nn.GRU, "RNN": nn.RNN}
RNNKIT_CELLS: dict[str, type[nn.Module]] = {"LSTM": rnnkit.LSTM, "GRU": rnnkit.GRU, "RNN": rnnkit.RNN}
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
LSTM_OPTIONS: tuple[dict[str, Any], ...] = (
    {"activation": "relu"},
    {"layer_norm": True},
    {"recurrent_dropout": 0.25},
)
EXTRA_OPTIONS: dict[str, tuple[dict[str, Any], ...]] = {
    "LSTM": LSTM_OPTIONS,
    "GRU": ({"reset_after": False}, {"layer_norm": True}, {"recurrent_dropout": 0.25}),
    "RNN": ({"activation": "sigmoid"}, {"layer_norm": True}),
}


# ----------------------------------------------------------------------------- cases
@dataclasses.dataclass(frozen=True)
class Case:
    """One benchmark problem: data shape, model and loss; ``cells`` lists the recurrent cells to try."""

    key: str
    name: str
    batch: int
    steps: int
    features: int
    hidden: int
    layers: int
    head: int
    loss: str  # "bce", "ce" or "mse"
    cells: tuple[str, ...] = ("LSTM",)
    vocab: int | None = None  # token ids through Embedding(vocab, features) when set

    def shrunk(self) -> Case:
        """The same case at smoke-test size (``--quick``): batch / 8 and steps / 8, at least a few of each."""
        return dataclasses.replace(self, batch=max(4, self.batch // 8), steps=max(4, self.steps // 8))


CASES: dict[str, Case] = {
    "A": Case("A", "text", 128, 200, 128, 128, 2, 1, "bce", vocab=10000),
    "B": Case("B", "rows", 128, 28, 28, 128, 1, 10, "ce"),
    "C": Case("C", "forecast", 32, 50, 1, 50, 2, 1, "mse"),
    "D": Case("D", "long", 32, 1024, 64, 256, 1, 1, "mse", cells=("LSTM", "GRU", "RNN")),
}


@dataclasses.dataclass
class Row:
    """The result of one comparison: rnnkit with ``options`` against torch.nn's ``cell``."""

    case: str
    cell: str
    variant: str
    torch_ms: float
    rnnkit_ms: float
    spread: float  # the larger of the two sides' interquartile range / median
    engine: str
    rnnkit_kernel: str
    torch_kernel: str
    gflops: float
    gemm_fraction: float
    floor: float
    goal: float

    @property
    def ratio(self) -> float:
        """torch time / rnnkit time; > 1 means rnnkit is faster."""
        return self.torch_ms / self.rnnkit_ms

    @property
    def target(self) -> str:
        """The floor (and goal) this row is held to, as text."""
        return f">={self.floor:.2f}x" if self.goal <= self.floor else f">={self.floor:.1f}x (goal {self.goal:.1f}x)"

    @property
    def verdict(self) -> str:
        """``ok``, ``below goal`` or ``BELOW FLOOR`` — information only, nothing is asserted."""
        if self.ratio < self.floor:
            return "BELOW FLOOR"
        return "below goal" if self.ratio < self.goal else "ok"


# ----------------------------------------------------------------------------- model and step
class Net(nn.Module):
    """Optional embedding -> recurrent layer -> linear head on the last time step's hidden state."""

    def __init__(self, rnn: nn.Module, head: nn.Linear, embed: nn.Embedding | None = None) -> None:
        super().__init__()
        self.embed, self.rnn, self.head = embed, rnn, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, T) token ids or (B, T, D) features -> (B, head outputs)."""
        if self.embed is not None:
            x = self.embed(x)
        out, _ = self.rnn(x)  # torch.nn (batch_first=True) and rnnkit both return (outputs, state)
        return self.head(out[:, -1])


def loss_fn(kind: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The case's loss on (logits, targets)."""
    if kind == "bce":
        return lambda logits, y: F.binary_cross_entropy(torch.sigmoid(logits.squeeze(1)), y)
    if kind == "ce":
        return F.cross_entropy
    if kind == "mse":
        return lambda logits, y: F.mse_loss(logits.squeeze(1), y)
    raise ValueError(f"unknown loss {kind!r}")


def make_data(case: Case, device: torch.device, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed random inputs and targets for ``case``."""
    g = torch.Generator().manual_seed(seed)
    if case.vocab is not None:
        x = torch.randint(0, case.vocab, (case.batch, case.steps), generator=g)
    else:
        x = torch.randn(case.batch, case.steps, case.features, generator=g)
    if case.loss == "bce":
        y = torch.randint(0, 2, (case.batch,), generator=g).float()
    elif case.loss == "ce":
        y = torch.randint(0, case.head, (case.batch,), generator=g)
    else:
        y = torch.randn(case.batch, generator=g)
    return x.to(device), y.to(device)


def build_net(case: Case, rnn: nn.Module, seed: int) -> Net:
    """Wrap ``rnn`` in the case's model; embedding and head are drawn from ``seed``."""
    torch.manual_seed(seed)
    embed = nn.Embedding(case.vocab, case.features) if case.vocab is not None else None
    return Net(rnn, nn.Linear(case.hidden, case.head), embed)


def build_pair(case: Case, cell: str, options: dict[str, Any], device: torch.device, seed: int) -> tuple[Net, Net]:
    """torch.nn's model and rnnkit's model with ``options``, sharing every weight they have in common."""
    torch.manual_seed(seed)
    t_rnn = TORCH_CELLS[cell](case.features, case.hidden, case.layers, batch_first=True)
    torch.manual_seed(seed)
    r_rnn = RNNKIT_CELLS[cell](case.features, case.hidden, case.layers, **options)
    t_net, r_net = build_net(case, t_rnn, seed), build_net(case, r_rnn, seed)
    missing, unexpected = r_net.load_state_dict(t_net.state_dict(), strict=False)
    if unexpected or any(not k.startswith("rnn.ln_") for k in missing):
        raise RuntimeError(f"weights do not line up: missing {missing}, unexpected {unexpected}")
    return t_net.to(device).train(), r_net.to(device).train()


class Stepper:
    """One training step (zero grads, forward, loss, backward, Adam) of a model on fixed data, timed."""

    def __init__(self, net: Net, data: tuple[torch.Tensor, torch.Tensor], loss: str, device: torch.device) -> None:
        self.net, self.x, self.y = net, data[0], data[1]
        self.loss = loss_fn(loss)
        self.opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        self.cuda = device.type == "cuda"
        self.times: list[float] = []

    def step(self) -> torch.Tensor:
        """Run one step; return the loss (still attached to its graph until the next step)."""
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss(self.net(self.x), self.y)
        loss.backward()
        self.opt.step()
        return loss

    def timed_step(self) -> None:
        """Run one step and record its wall time in seconds (device synchronised on CUDA)."""
        if self.cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        self.step()
        if self.cuda:
            torch.cuda.synchronize()
        self.times.append(time.perf_counter() - start)

    def kernel(self) -> str:
        """Which backend the recurrent layer's backward runs on, read off a fresh autograd graph:
        ``cuDNN``, ``oneDNN``, ``rnnkit C++`` (rnnkit's native CPU kernel), ``rnnkit scan`` (rnnkit's Python
        scan over ATen ops) or ``ATen`` (torch's own ATen ops, e.g. nn.GRU on CPU)."""
        loss = self.loss(self.net(self.x), self.y)
        names: set[str] = set()
        seen: dict[int, Any] = {}  # holds every node visited: a freed Python wrapper's id could be reused
        stack = [loss.grad_fn]
        while stack:
            fn = stack.pop()
            if fn is None or id(fn) in seen:
                continue
            seen[id(fn)] = fn
            names.add(type(fn).__name__)
            stack.extend(nxt for nxt, _ in fn.next_functions)
        del loss
        if any("Cudnn" in n for n in names):
            return "cuDNN"
        if any("Mkldnn" in n for n in names):
            return "oneDNN"
        if any(n.startswith("NativeScanFunction") or "rnnkit_native_scan" in n for n in names):
            return "rnnkit C++"
        if any(n.startswith("ScanFunction") for n in names):
            return "rnnkit scan"
        return "ATen"


def relative_iqr(times: Sequence[float]) -> float:
    """Interquartile range over median: how noisy one side's timings were (0 with fewer than 2)."""
    if len(times) < 2:
        return 0.0
    q1, _, q3 = statistics.quantiles(times, n=4, method="inclusive")
    return (q3 - q1) / statistics.median(times)


def measure(
    torch_step: Stepper, rnnkit_step: Stepper, warmup: int, repeats: int
) -> tuple[float, float, float]:
    """Warm up, then alternate the two steps (swapping which goes first each round); return the median ms
    of each and the spread (the larger relative interquartile range of the two)."""
    for _ in range(warmup):
        torch_step.step()
        rnnkit_step.step()
    torch_step.times.clear()
    rnnkit_step.times.clear()
    for i in range(repeats):
        pair = (torch_step, rnnkit_step) if i % 2 == 0 else (rnnkit_step, torch_step)
        for s in pair:
            s.timed_step()
    spread = max(relative_iqr(torch_step.times), relative_iqr(rnnkit_step.times))
    return statistics.median(torch_step.times) * 1e3, statistics.median(rnnkit_step.times) * 1e3, spread


# ----------------------------------------------------------------------------- FLOPs and GEMM rate
def recurrent_flops(case: Case, cell: str, directions: int = 1) -> float:
    """Matmul FLOPs of the recurrent layers in one training step: forward 2·B·T·G·H·(D+H) per layer and
    direction (input and recurrent projections), training ≈ 3x forward (forward, grad input, grad weight)."""
    b, t, h, g = case.batch, case.steps, case.hidden, GATES[cell]
    forward = 0.0
    for k in range(case.layers):
        d_in = case.features if k == 0 else h * directions
        forward += directions * 2.0 * b * t * g * h * (d_in + h)
    return 3.0 * forward


def gemm_gflops(device: torch.device, n: int, tries: int = 5) -> float:
    """This machine's fp32 matmul rate: best of ``tries`` n x n @ n x n products, in GFLOP/s."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device)
    b = torch.randn(n, n, generator=g).to(device)
    torch.matmul(a, b)  # warm-up (and, on CUDA, library initialisation)
    best = float("inf")
    for _ in range(tries):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        torch.matmul(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 / best / 1e9


# ----------------------------------------------------------------------------- running
def variant_label(options: dict[str, Any]) -> str:
    """``rnnkit default`` or the options as keyword arguments, e.g. ``activation="relu"``."""
    if not options:
        return "rnnkit default"
    return ", ".join(f"{k}={v!r}".replace("'", '"') for k, v in options.items())


def run_case(
    case: Case, device: torch.device, warmup: int, repeats: int, seed: int, gemm: float, on_row: Callable[[Row], None]
) -> list[Row]:
    """Every row of one case; ``on_row`` sees each row as soon as it is measured."""
    rows = []
    data = make_data(case, device, seed)
    for cell in case.cells:
        for options in ({}, *EXTRA_OPTIONS[cell]):
            t_net, r_net = build_pair(case, cell, options, device, seed)
            t_step = Stepper(t_net, data, case.loss, device)
            r_step = Stepper(r_net, data, case.loss, device)
            torch.manual_seed(seed)  # the same dropout masks run to run
            torch_ms, rnnkit_ms, spread = measure(t_step, r_step, warmup, repeats)
            gflops = recurrent_flops(case, cell) / (rnnkit_ms / 1e3) / 1e9
            floor, goal = (DEFAULT_FLOOR, DEFAULT_FLOOR) if not options else (OPTION_FLOOR, OPTION_GOAL)
            row = Row(
                case=f"{case.key} {case.name}", cell=cell, variant=variant_label(options),
                torch_ms=torch_ms, rnnkit_ms=rnnkit_ms, spread=spread,
                engine=r_net.rnn.engine,
                rnnkit_kernel=r_step.kernel(), torch_kernel=t_step.kernel(),
                gflops=gflops, gemm_fraction=gflops / gemm, floor=floor, goal=goal,
            )
            rows.append(row)
            on_row(row)
            del t_step, r_step, t_net, r_net
    return rows


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo, else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_info(device: torch.device) -> dict[str, str]:
    """What the numbers depend on: CPU, threads, torch, device (and cuDNN on CUDA)."""
    info = {
        "CPU": f"{cpu_model()} ({os.cpu_count()} logical cores)",
        "torch threads": str(torch.get_num_threads()),
        "torch": torch.__version__,
        "Python": platform.python_version(),
        "device": "cpu",
    }
    if device.type == "cuda":
        info["device"] = f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
        cudnn = torch.backends.cudnn
        info["cuDNN"] = f"{cudnn.version()} (enabled: {cudnn.enabled})" if cudnn.is_available() else "not available"
    else:
        info["oneDNN"] = "available" if torch.backends.mkldnn.is_available() else "not available"
    return info


COLUMNS = ("case", "cell", "variant", "torch ms", "rnnkit ms", "ratio", "spread", "target", "verdict", "engine",
           "rnnkit kernel", "torch kernel", "GFLOP/s", "% GEMM")
WIDTHS = (11, 4, 25, 9, 9, 6, 6, 20, 11, 6, 13, 12, 8, 6)
NUMERIC = (3, 4, 5, 6, 12, 13)  # right-aligned columns


def row_cells(row: Row) -> tuple[str, ...]:
    """A row's values as text, in ``COLUMNS`` order."""
    return (row.case, row.cell, row.variant, f"{row.torch_ms:.1f}", f"{row.rnnkit_ms:.1f}", f"{row.ratio:.2f}x",
            f"{100 * row.spread:.0f}%", row.target, row.verdict, row.engine, row.rnnkit_kernel, row.torch_kernel,
            f"{row.gflops:.1f}", f"{100 * row.gemm_fraction:.1f}%")


def text_line(cells: Sequence[str]) -> str:
    """One fixed-width line of the plain-text table."""
    return "  ".join(c.rjust(w) if i in NUMERIC else c.ljust(w) for i, (c, w) in enumerate(
        zip(cells, WIDTHS, strict=True))).rstrip()


def markdown(rows: Sequence[Row], info: dict[str, str], gemm: float, gemm_n: int, args: argparse.Namespace) -> str:
    """The results as a Markdown section for docs/benchmarks.md."""
    sizes = ", ".join(
        f"{c.key} {c.batch}x{c.steps}x{c.features} H={c.hidden}x{c.layers}" for c in selected_cases(args)
    )
    lines = [
        f"Training step (forward + backward + Adam, float32), rnnkit vs torch.nn on `{args.device}`; "
        f"ratio = torch ms / rnnkit ms (> 1: rnnkit faster), medians of {args.repeats} interleaved steps "
        f"after {args.warmup} warm-up step(s){' — **--quick smoke sizes, not representative**' if args.quick else ''}.",
        "",
        *(f"- {k}: {v}" for k, v in info.items()),
        f"- fp32 GEMM ({gemm_n}x{gemm_n}, best of 5): {gemm:.1f} GFLOP/s",
        f"- sizes (batch x steps x features, hidden x layers): {sizes}",
        f"- command: `python {' '.join(shlex.quote(a) for a in sys.argv)}`",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join("---:" if i in NUMERIC else "---" for i in range(len(COLUMNS))) + "|",
    ]
    for row in rows:
        cells = list(row_cells(row))
        cells[2] = f"`{cells[2]}`" if row.variant != "rnnkit default" else cells[2]
        if row.verdict == "BELOW FLOOR":
            cells[COLUMNS.index("verdict")] = "**below floor**"
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("GFLOP/s counts the recurrent layers' matmuls only (forward 2·B·T·G·H·(D+H) per layer, "
                 "training ≈ 3x forward) over rnnkit's step time; % GEMM is that over the fp32 GEMM rate above. "
                 "spread: the larger relative interquartile range of the two sides' step times (noise).")
    return "\n".join(lines)


def selected_cases(args: argparse.Namespace) -> list[Case]:
    """The cases ``--cases`` names, with ``--cells`` replacing their cells, shrunk under ``--quick``."""
    cases = [CASES[k] if args.cells is None else dataclasses.replace(CASES[k], cells=args.cells) for k in args.cases]
    return [c.shrunk() for c in cases] if args.quick else cases


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options; see ``--help``."""
    p = argparse.ArgumentParser(
        description="Training-step speed of rnnkit.LSTM/GRU/RNN relative to torch.nn (ratio > 1: rnnkit faster).",
    )
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to run (default: cpu)")
    p.add_argument("--cases", default="A,B,C,D", help="comma-separated subset of A,B,C,D (default: all)")
    p.add_argument("--cells", default=None,
                   help="comma-separated cells (LSTM,GRU,RNN) to run on every selected case instead of its own")
    p.add_argument("--repeats", type=int, default=None, help="timed steps per model and row (default: 10; quick: 3)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps per model first (default: 3; quick: 1)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--quick", action="store_true", help="smoke run: batch and steps / 8, fewer repeats")
    p.add_argument("--markdown", action="store_true",
                   help="print a Markdown section for docs/benchmarks.md on stdout (progress goes to stderr)")
    p.add_argument("--seed", type=int, default=0, help="seed for weights, data and dropout (default: 0)")
    p.add_argument("--flush-denormal", action="store_true",
                   help="CPU: flush denormal floats to zero (torch.set_flush_denormal) for both sides; vanishing "
                        "gradients through long sequences otherwise slow every kernel down by denormal arithmetic")
    args = p.parse_args(argv)
    keys = [k.strip().upper() for k in args.cases.split(",") if k.strip()]
    unknown = [k for k in keys if k not in CASES]
    if unknown or not keys:
        p.error(f"--cases: unknown case(s) {', '.join(unknown) or '(none given)'}; choose from {','.join(CASES)}")
    args.cases = list(dict.fromkeys(keys))
    if args.cells is not None:
        cells = [c.strip().upper() for c in args.cells.split(",") if c.strip()]
        if not cells or any(c not in TORCH_CELLS for c in cells):
            p.error(f"--cells: use a comma-separated subset of {','.join(TORCH_CELLS)}")
        args.cells = tuple(dict.fromkeys(cells))
    args.repeats = args.repeats if args.repeats is not None else (3 if args.quick else 10)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 3)
    if args.repeats < 1 or args.warmup < 0:
        p.error("--repeats must be >= 1 and --warmup >= 0")
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be >= 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: CUDA is not available in this torch build or on this machine")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected cases and print the table (and the Markdown section with ``--markdown``)."""
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.flush_denormal:
        torch.set_flush_denormal(True)
    device = torch.device(args.device)
    out: TextIO = sys.stderr if args.markdown else sys.stdout
    info = machine_info(device)
    gemm_n = (4096 if device.type == "cuda" else 2048) // (4 if args.quick else 1)
    gemm = gemm_gflops(device, gemm_n)
    for k, v in info.items():
        print(f"{k}: {v}", file=out)
    print(f"fp32 GEMM {gemm_n}x{gemm_n}: {gemm:.1f} GFLOP/s", file=out)
    print(f"repeats {args.repeats}, warm-up {args.warmup}, seed {args.seed}{', QUICK sizes' if args.quick else ''}",
          file=out)
    print(text_line(COLUMNS), file=out)

    def show(row: Row) -> None:
        print(text_line(row_cells(row)), file=out, flush=True)

    rows: list[Row] = []
    for case in selected_cases(args):
        rows += run_case(case, device, args.warmup, args.repeats, args.seed, gemm, show)
    if args.markdown:
        print(markdown(rows, info, gemm, gemm_n, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
