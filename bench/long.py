"""Long-sequence benchmark: one training step of minGRU, minLSTM and IndRNN against torch.nn.GRU / LSTM.

A training step is forward + backward + Adam step in float32 of one recurrent layer (B = 32 sequences of D = 64
features, H = 256 units) with a linear head on the final state and an MSE loss against a fixed random target (as
case D of bench/layers.py: a sequence-to-one job such as the adding problem; the gradient reaches every step
through the recurrence). For each T all models run interleaved, step by step, after a warm-up step each; a
model's time is the median of its timed steps. Columns:

* ``ms/step``: one training step; ``us/t``: that divided by T (flat when the time grows linearly in T);
* ``x GRU``: ``nn.GRU ms / model ms`` at the same T (> 1: faster than torch's GRU);
* ``peak MiB``: the step's peak resident memory above the memory held before it (CPU: the process's high-water
  mark, reset through ``/proc/self/clear_refs`` before the step; CUDA: ``torch.cuda.max_memory_allocated``).

Usage: ``python bench/long.py [--lengths 256,1024,4096,16384] [--repeats 3] [--device cpu|cuda] [--markdown]``.
The script only prints; it asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn

import rnnkit

B, D, H = 32, 64, 256
MODELS: dict[str, Callable[[], nn.Module]] = {
    "minGRU": lambda: rnnkit.MinGRU(D, H),
    "minLSTM": lambda: rnnkit.MinLSTM(D, H),
    "IndRNN": lambda: rnnkit.IndRNN(D, H, max_abs=1.0),
    "nn.GRU": lambda: nn.GRU(D, H, batch_first=True),
    "nn.LSTM": lambda: nn.LSTM(D, H, batch_first=True),
}


def _trim() -> None:
    """Return what glibc's malloc keeps of freed memory to the system."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


@contextlib.contextmanager
def _malloc_returning() -> Iterator[None]:
    """Have glibc return every large freed block to the system at once (and what it kept so far), so that the
    resident memory before a step is what the process holds, not what malloc kept for later: the peak above it is
    then the step's own. Restores glibc's defaults after."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        yield
        return
    libc.mallopt(-3, 1 << 17)  # M_MMAP_THRESHOLD = 128 KiB (also turns the dynamic threshold off)
    libc.mallopt(-1, 1 << 17)  # M_TRIM_THRESHOLD
    libc.malloc_trim(0)
    try:
        yield
    finally:
        libc.mallopt(-3, 128 * 1024)
        libc.mallopt(-1, 128 * 1024)


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


class Peak:
    """The peak memory of a block above the memory held when it starts, in MiB (None where it cannot be read)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.mib = device, None

    def __enter__(self) -> Peak:
        gc.collect()
        rnnkit.layers.native.empty_cache()
        _trim()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            try:
                Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
            except OSError:
                self.base = None
                return self
            self.base = _rss_kib("VmRSS")
        return self

    def __exit__(self, *exc) -> None:
        if self.base is None:
            return
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.mib = (torch.cuda.max_memory_allocated() - self.base) / 2**20
        else:
            self.mib = (_rss_kib("VmHWM") - self.base) / 1024


def make_step(name: str, T: int, device: torch.device) -> Callable[[], None]:
    torch.manual_seed(0)
    model, head = MODELS[name]().to(device), nn.Linear(H, 1).to(device)
    opt = torch.optim.Adam([*model.parameters(), *head.parameters()], lr=1e-3)
    x = torch.randn(B, T, D, device=device)
    target = torch.randn(B, 1, device=device)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        _, h = model(x)
        h = h[0] if isinstance(h, tuple) else h  # the LSTM's (h, c)
        loss = (head(h[-1]) - target).square().mean()
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    return step


def run(lengths: list[int], names: list[str], repeats: int, device: torch.device) -> list[dict]:
    rows = []
    for T in lengths:
        steps = {n: make_step(n, T, device) for n in names}
        for step in steps.values():  # warm-up (and the kernel's build, once)
            step()
        times: dict[str, list[float]] = {n: [] for n in names}
        for _ in range(repeats):
            for n, step in steps.items():
                start = time.perf_counter()
                step()
                times[n].append((time.perf_counter() - start) * 1e3)
        ref = statistics.median(times["nn.GRU"]) if "nn.GRU" in times else None
        for n in names:
            ms = statistics.median(times[n])
            rows.append({"T": T, "model": n, "ms": ms, "us_per_t": ms * 1e3 / T,
                         "x_gru": ref / ms if ref else None, "peak_mib": None})
            ratio = f"{ref / ms:5.2f}x GRU" if ref else ""
            print(f"T={T:6d} {n:8s} {ms:9.1f} ms  {ms * 1e3 / T:7.1f} us/t  {ratio}", file=sys.stderr, flush=True)
        del steps
    with _malloc_returning():  # after all the timing, which runs with the allocator as users have it
        for r in rows:
            step = make_step(r["model"], r["T"], device)
            step()
            with Peak(device) as p:
                step()
            r["peak_mib"] = p.mib
            print(f"T={r['T']:6d} {r['model']:8s} peak {p.mib or float('nan'):8.0f} MiB", file=sys.stderr, flush=True)
    return rows


def markdown(rows: list[dict], device: torch.device, repeats: int) -> str:
    names = list(dict.fromkeys(r["model"] for r in rows))
    head = f"B = {B}, D = {D}, H = {H}, float32, {device.type}"
    if device.type == "cpu":
        head += f", {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}"
    else:
        head += f", {torch.cuda.get_device_name(device)}"
    lines = [f"{head}; torch {torch.__version__}; median of {repeats} interleaved steps", "",
             "| T | " + " | ".join(f"{n} ms/step (us/t)" for n in names) + " | minGRU x GRU | peak MiB "
             + " / ".join(names) + " |",
             "|---:|" + "---:|" * len(names) + "---:|---:|"]
    for T in dict.fromkeys(r["T"] for r in rows):
        rs = {r["model"]: r for r in rows if r["T"] == T}
        cells = [f"{rs[n]['ms']:.1f} ({rs[n]['us_per_t']:.0f})" for n in names]
        ratio = rs.get("minGRU", {}).get("x_gru")
        peak = " / ".join("-" if rs[n]["peak_mib"] is None else f"{rs[n]['peak_mib']:.0f}" for n in names)
        lines.append(f"| {T} | " + " | ".join(cells) + f" | {'-' if ratio is None else f'{ratio:.2f}x'} | {peak} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", default="256,1024,4096,16384", help="comma-separated sequence lengths")
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {', '.join(MODELS)}")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown at the end")
    args = ap.parse_args(argv)
    torch.set_flush_denormal(True)
    device = torch.device(args.device)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        ap.error(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(MODELS)}")
    rows = run([int(t) for t in args.lengths.split(",")], names, args.repeats, device)
    if args.markdown:
        print(markdown(rows, device, args.repeats))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
