"""Mixed precision on the CPU: one training step (forward + backward) of a recurrent layer in float32 and under
``torch.autocast("cpu", dtype=torch.bfloat16)`` (what ``training.amp: true`` does), rnnkit against torch.nn.

Rows: the layer (cell, batch, steps, width), then milliseconds per step for torch.nn float32, torch.nn under
autocast, rnnkit float32 and rnnkit under autocast, and the speed-ups of autocast over float32 for each. Also the
rate of one GEMM the size of a step's recurrent product in both dtypes. Models of one row start from the same
weights and run interleaved after warm-up; each figure is the median of the timed steps. The script prints only;
it asserts nothing about speed. Then, for accuracy, how far a 2,000-step LSTM's outputs under autocast are from
float32 (relative norm, over the whole sequence and its last 100 steps: drift would show as a larger second
figure). With ``--config``, the training step (forward, backward, Adam) of an example's own task and model on
its first batches, float32 against amp. Needs a CPU with bf16 instructions (AVX512-BF16 or AMX) to mean anything:

    python bench/amp_cpu.py [--threads 2] [--repeats 7]
    RNNKIT_DATA=../shared/datasets python bench/amp_cpu.py --config examples/g2p.yaml [--steps 40]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

import rnnkit
from rnnkit.layers.native import cpu_has_bf16

ROWS = [("lstm", 32, 100, 768), ("lstm", 128, 12, 256), ("gru", 128, 12, 256), ("gru", 32, 100, 768)]


def step_ms(model: nn.Module, x: torch.Tensor, amp: bool, repeats: int) -> float:
    """Median milliseconds of forward + backward of ``model(x)[0].sum()``."""
    times = []
    for i in range(repeats + 2):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            out = model(x)[0]
        out.float().sum().backward()
        if i >= 2:  # two warm-up steps
            times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def gemm_gflops(b: int, h: int, g: int, dtype: torch.dtype, n: int = 200) -> float:
    a, w = torch.randn(b, h).to(dtype), torch.randn(h, g).to(dtype)
    for _ in range(10):
        a @ w
    start = time.perf_counter()
    for _ in range(n):
        a @ w
    return 2 * b * h * g * n / (time.perf_counter() - start) / 1e9


def drift() -> None:
    """Relative distance of autocast outputs from float32 for a long LSTM, all steps and the last 100."""
    torch.manual_seed(0)
    layer = rnnkit.LSTM(64, 256)
    x = torch.randn(4, 2000, 64)
    with torch.no_grad():
        ref = layer(x)[0]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = layer(x)[0].float()
    rel = [float((out[:, s] - ref[:, s]).norm() / ref[:, s].norm()) for s in (slice(None), slice(-100, None))]
    print(f"\nLSTM 256, 4 x 2000 steps, autocast against float32: {100 * rel[0]:.2f} % over all steps, "
          f"{100 * rel[1]:.2f} % over the last 100 ({layer.engine} outside autocast)")


def task_steps(config: str, steps: int) -> None:
    """Median seconds of a training step of ``config``'s task, float32 against amp, on its first batches."""
    from rnnkit.build import load_config
    from rnnkit.tasks import get_task

    cfg = load_config(config)
    task = get_task(cfg.task)(cfg)
    task.setup()
    batches = [b for _, b in zip(range(steps), task.train_batches(0, 0, 0, 1), strict=False)]
    seconds = {}
    for amp in (False, True):
        torch.manual_seed(0)
        model = task.build_model()
        model.train()
        opt = torch.optim.Adam(model.parameters(), cfg.training.lr)
        times = []
        for i, b in enumerate(batches):
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                res = task.step(model, b, torch.device("cpu"))
            opt.zero_grad()
            (res.loss_sum / res.count).backward()
            opt.step()
            if i >= 3:  # warm-up
                times.append(time.perf_counter() - start)
        seconds[amp] = statistics.median(times)
    print(f"{config}: a training step {seconds[False]:.3f} s in float32, {seconds[True]:.3f} s with amp "
          f"({seconds[False] / seconds[True]:.2f}x; median of {len(batches) - 3} batches)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--config", help="time this example's training steps instead of the layer table")
    p.add_argument("--steps", type=int, default=40, help="with --config: batches timed per mode (after 3 warm-up)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, CPU bf16 instructions: {cpu_has_bf16()}\n")
    if args.config:
        task_steps(args.config, args.steps)
        return
    print("| layer | torch fp32 ms | torch amp ms | rnnkit fp32 ms | rnnkit amp ms | torch amp speed-up "
          "| rnnkit amp speed-up | GEMM fp32 / bf16 GFLOPS |")
    print("|---|---|---|---|---|---|---|---|")
    for cell, b, t, h in ROWS:
        torch.manual_seed(0)
        ref = (nn.LSTM if cell == "lstm" else nn.GRU)(64, h, batch_first=True)
        ours = (rnnkit.LSTM if cell == "lstm" else rnnkit.GRU)(64, h)
        ours.load_state_dict(ref.state_dict())
        x = torch.randn(b, t, 64)
        ms = {}
        for amp in (False, True):
            for name, m in (("torch", ref), ("rnnkit", ours)):
                ms[name, amp] = step_ms(m, x, amp, args.repeats)
        g = (4 if cell == "lstm" else 3) * h
        rates = f"{gemm_gflops(b, h, g, torch.float32):.0f} / {gemm_gflops(b, h, g, torch.bfloat16):.0f}"
        print(f"| {cell.upper()} {b} x {t} x {h} | {ms['torch', False]:.1f} | {ms['torch', True]:.1f} "
              f"| {ms['rnnkit', False]:.1f} | {ms['rnnkit', True]:.1f} | {ms['torch', False] / ms['torch', True]:.2f}x "
              f"| {ms['rnnkit', False] / ms['rnnkit', True]:.2f}x | {rates} |")
    drift()


if __name__ == "__main__":
    main()
