"""The long-range table of docs/long_range.md: six cells on the adding problem and pixel-by-pixel Fashion-MNIST.

Every run is one of the examples with only the cell, T (adding) or the pixel order (pixel Fashion-MNIST) changed,
and the same budget for every cell: the examples' own epochs, capped at ``--adding-time`` seconds of training
(adding) or ``--pixel-time`` (pixels, the example's ``training.max_time``). One thread per run, ``--jobs`` runs at
once. Each finished run appends a line to ``--out`` (JSON lines: the run's keys, its test metric, training
seconds, wall seconds, optimizer steps), so an interrupted table continues where it stopped; ``--markdown``
prints the table from that file.

    python bench/long_range.py --jobs 2 --out runs/long_range.jsonl
    python bench/long_range.py --out runs/long_range.jsonl --markdown
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

CELLS = ("rnn", "lstm", "gru", "indrnn", "mingru", "minlstm")
ADDING_T = (100, 500, 1000, 5000)
PIXELS = ("pixels", "permuted")
NAMES = {"rnn": "tanh RNN", "lstm": "LSTM", "gru": "GRU", "indrnn": "IndRNN", "mingru": "minGRU",
         "minlstm": "minLSTM"}


def jobs(seeds: int, adding_time: float, pixel_time: float, tasks: str) -> list[dict]:
    out = []
    for seed in range(seeds):
        if "adding" in tasks:
            for T in ADDING_T:
                for cell in CELLS:
                    out.append({"task": "adding", "T": T, "cell": cell, "seed": seed, "config": "examples/adding.yaml",
                                "set": [f"data.num_steps={T}", f"model.cell={cell}", f"training.seed={seed}",
                                        f"training.max_time={adding_time}"]})
        if "pixels" in tasks:
            for variant in PIXELS:
                for cell in CELLS:
                    extra = ["data.options.permute=0"] if variant == "permuted" else []
                    out.append({"task": variant, "T": 784, "cell": cell, "seed": seed,
                                "config": "examples/pixel_fashion_mnist.yaml",
                                "set": [f"model.cell={cell}", f"training.seed={seed}",
                                        f"training.max_time={pixel_time}", "training.num_threads=1", *extra]})
    return out


def key(job: dict) -> str:
    return f"{job['task']}-{job['T']}-{job['cell']}-{job['seed']}"


def run_one(job: dict, root: str) -> dict:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from rnnkit.build import fit

    start = time.perf_counter()
    try:
        _, m = fit(job["config"], Path(root) / key(job), overrides=job["set"], quiet=True)
    except Exception as exc:  # a diverged run is a result of the table too
        return {**job, "error": f"{type(exc).__name__}: {str(exc)[:200]}", "wall": time.perf_counter() - start}
    test = m.get("test", {})
    return {**job, "metric": test.get("mse", test.get("accuracy")), "val": m.get("val", {}),
            "train_seconds": m.get("train_seconds"), "steps": m.get("steps"), "stopped": m.get("stopped"),
            "wall": time.perf_counter() - start}


def markdown(rows: list[dict]) -> str:
    def cell_text(r: dict | None, adding: bool) -> str:
        if r is None:
            return "-"
        if "error" in r:
            return "diverged"
        metric = f"{r['metric']:.2g}" if adding else f"{100 * r['metric']:.1f} %"
        return f"{metric} ({r['train_seconds']:.0f} s, {r['steps']} st)"

    by = {}
    for r in rows:
        by.setdefault((r["task"], r["T"], r["cell"]), []).append(r)
    first = {k: v[0] for k, v in by.items()}  # seed 0; more seeds are listed by their spread below
    lines = ["| cell | " + " | ".join(f"adding T = {T}" for T in ADDING_T) + " | pixels | permuted |",
             "|---|" + "---:|" * (len(ADDING_T) + 2)]
    for cell in CELLS:
        parts = [cell_text(first.get(("adding", T, cell)), True) for T in ADDING_T]
        parts += [cell_text(first.get((v, 784, cell)), False) for v in PIXELS]
        lines.append(f"| {NAMES[cell]} | " + " | ".join(parts) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/long_range.jsonl")
    ap.add_argument("--runs", default="runs/long_range", help="folder for the run folders")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--tasks", default="adding,pixels")
    ap.add_argument("--adding-time", type=float, default=300.0)
    ap.add_argument("--pixel-time", type=float, default=300.0)
    ap.add_argument("--only", default="", help="comma-separated keys (task-T-cell-seed) to run")
    ap.add_argument("--markdown", action="store_true", help="print the table of --out and exit")
    args = ap.parse_args(argv)
    out = Path(args.out)
    done = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    if args.markdown:
        print(markdown(done))
        return 0
    seen = {key(r) for r in done}
    todo = [j for j in jobs(args.seeds, args.adding_time, args.pixel_time, args.tasks) if key(j) not in seen]
    if args.only:
        todo = [j for j in todo if key(j) in args.only.split(",")]
    out.parent.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = {pool.submit(run_one, j, args.runs): j for j in todo}
        for f in as_completed(futures):
            row = f.result()
            with out.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            print(key(row), row.get("metric", row.get("error")), f"{row['wall']:.0f} s wall", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
