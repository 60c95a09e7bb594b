"""What does scripting or compiling buy the own-loop engine? LSTM with a relu candidate (no fused kernel).

Times a training step (forward + backward of a mean-square loss) of one LSTM layer, ratio against
torch.nn.LSTM's fused kernel measured in the same run, for:

* ``eager``   - autograd through a Python step function (rnnkit's fallback loop);
* ``script``  - the same step function under ``torch.jit.script``;
* ``compile`` - the same step function under ``torch.compile`` (Inductor fuses the pointwise ops);
* ``python scan`` - ``rnnkit.LSTM(activation="relu")`` with the native kernel off: no-grad forward and
  hand-written BPTT in torch ops (rnnkit's engine on the GPU, and on the CPU without a C++ compiler);
* ``native C++`` - ``rnnkit.LSTM(activation="relu")`` on the CPU: the same in rnnkit's C++ kernel (the default).

    python bench/loop_variants.py --device cuda
    python bench/loop_variants.py --device cpu --flush-denormal --shapes 128x28x28x128,32x50x1x50
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import rnnkit
from rnnkit.layers import native


def lstm_relu_step(gx: torch.Tensor, h: torch.Tensor, c: torch.Tensor, w_t: torch.Tensor, b: torch.Tensor):
    a = gx + torch.addmm(b, h, w_t)
    i, f, g, o = a.chunk(4, 1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.relu(g)
    return torch.sigmoid(o) * torch.relu(c), c


def loop(step, x: torch.Tensor, w_ih, w_hh, b_ih, b_hh) -> torch.Tensor:
    """One LSTM layer over x (B, T, D) with ``step``; returns outputs (B, T, H)."""
    gx = torch.nn.functional.linear(x, w_ih, b_ih)
    h = c = x.new_zeros(x.shape[0], w_hh.shape[1])
    w_t, outs = w_hh.t(), []
    for g in gx.unbind(1):
        h, c = step(g, h, c, w_t, b_hh)
        outs.append(h)
    return torch.stack(outs, 1)


def timed(fn, device: str, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def measure(shape: str, dev: str, repeats: int) -> None:
    """Print one table row per variant for a BxTxDxH shape."""
    B, T, D, H = (int(v) for v in shape.split("x"))
    torch.manual_seed(0)
    ref = torch.nn.LSTM(D, H, batch_first=True).to(dev)
    ours = rnnkit.LSTM(D, H, activation="relu").to(dev)
    x = torch.randn(B, T, D, device=dev)
    ps = [ours.weight_ih_l0, ours.weight_hh_l0, ours.bias_ih_l0, ours.bias_hh_l0]
    scripted = torch.jit.script(lstm_relu_step)
    compiled = torch.compile(lstm_relu_step, dynamic=False)

    def run(forward):
        def step():
            forward().square().mean().backward()
        return step

    scan_layer = rnnkit.LSTM(D, H, activation="relu", engine="scan").to(dev)
    scan_layer.load_state_dict(ours.state_dict())

    def python_scan():
        return scan_layer(x)[0]

    variants = {
        "torch.nn fused (tanh)": run(lambda: ref(x)[0]),
        "eager": run(lambda: loop(lstm_relu_step, x, *ps)),
        "script": run(lambda: loop(scripted, x, *ps)),
        "compile": run(lambda: loop(compiled, x, *ps)),
        "python scan": run(python_scan),
    }
    if dev == "cpu" and native.available():
        variants["native C++ (rnnkit default)"] = run(lambda: ours(x)[0])
    base = None
    for name, fn in variants.items():
        try:
            t = timed(fn, dev, 3, repeats)
        except Exception as e:  # noqa: BLE001 - report and go on: a backend may be missing
            print(f"| {shape} | {name} | failed: {type(e).__name__}: {str(e).splitlines()[0][:80]} | |")
            continue
        base = base or t
        print(f"| {shape} | {name} | {t * 1e3:.1f} | {base / t:.2f}x |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--shapes", default="128x28x28x128,32x1024x64x256", help="BxTxDxH, comma separated")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--flush-denormal", action="store_true", help="CPU: torch.set_flush_denormal(True)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.flush_denormal:
        torch.set_flush_denormal(True)
    dev = args.device
    print(f"device {torch.cuda.get_device_name() if dev == 'cuda' else 'cpu'}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}")
    print("| B x T x D x H | variant | ms/step | vs torch.nn fused |")
    print("|---|---|---:|---:|")
    for shape in args.shapes.split(","):
        measure(shape, dev, args.repeats)

if __name__ == "__main__":
    main()
