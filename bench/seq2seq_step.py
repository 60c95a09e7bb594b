"""What input feeding and the dropout generator cost a seq2seq training step: the example's own task, model and
first batches, four variants stepped interleaved (input feeding on or off, times torch's ``F.dropout`` or the
native kernel's masks), float32 or ``--amp``. Each figure is the median seconds of a training step (forward,
backward, Adam) after three warm-up batches; the variants start from the same seed. It prints only; it asserts
nothing about speed.

    RNNKIT_DATA=../shared/datasets python bench/seq2seq_step.py --config examples/g2p.yaml --amp
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from rnnkit.build import load_config
from rnnkit.layers import native
from rnnkit.tasks import get_task


def torch_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    return torch.nn.functional.dropout(x, p, training)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="examples/g2p.yaml")
    p.add_argument("--steps", type=int, default=40, help="batches timed per variant (after 3 warm-up)")
    p.add_argument("--amp", action="store_true", help="under torch.autocast('cpu', bfloat16), as training.amp")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    native_dropout = native.dropout
    cfg = load_config(args.config)
    task = get_task(cfg.task)(cfg)
    task.setup()
    batches = [b for _, b in zip(range(args.steps + 3), task.train_batches(0, 0, 0, 1), strict=False)]
    variants = {}
    for feed in (True, False):
        for fast in (False, True):
            c = load_config(args.config)
            c.model.input_feeding = feed
            task.cfg = c
            torch.manual_seed(0)
            model = task.build_model().train()
            name = f"input_feeding={feed!s:5} dropout={'native' if fast else 'F.dropout'}"
            variants[name] = (c, model, torch.optim.Adam(model.parameters(), c.training.lr), fast)
    times: dict[str, list[float]] = {k: [] for k in variants}
    for i, batch in enumerate(batches):
        for name, (c, model, opt, fast) in variants.items():
            native.dropout = native_dropout if fast else torch_dropout  # what Dropout and the layers call
            task.cfg = c
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.amp):
                res = task.step(model, batch, torch.device("cpu"))
            opt.zero_grad()
            (res.loss_sum / res.count).backward()
            opt.step()
            if i >= 3:
                times[name].append(time.perf_counter() - start)
    native.dropout = native_dropout
    first = statistics.median(next(iter(times.values())))
    print(f"{args.config}, amp={args.amp}, {len(batches) - 3} batches, {args.threads} threads")
    for name, t in times.items():
        med = statistics.median(t)
        print(f"  {name}: {med:.4f} s a step ({first / med:.2f}x the first)")


if __name__ == "__main__":
    main()
