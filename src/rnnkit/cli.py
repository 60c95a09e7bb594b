"""The ``rnnkit`` command: demo, train, evaluate, predict, info.

Every user mistake (bad config, bad data, missing file, corrupted checkpoint) prints one line
``rnnkit: error: ...`` on stderr and exits with status 2; a diverged training exits with 1.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

EPILOG_TRAIN = """examples:
  rnnkit train examples/digits.yaml
  rnnkit train examples/fashion_mnist.yaml --set training.epochs=3 --set model.hidden_size=64
  rnnkit train examples/digits.yaml --out runs/try2
  rnnkit train --resume runs/digits                  # continue an interrupted run to its configured end
  torchrun --nproc_per_node=2 -m rnnkit train examples/digits.yaml   # data-parallel on 2 processes
"""

DEMO_CONFIG = {
    "name": "demo",
    "task": "sequence_classification",
    "model": {"cell": "gru", "hidden_size": 64, "pooling": "last"},
    "data": {"source": "embedded", "name": "digits", "val_fraction": 0.1, "test_fraction": 0.2},
    "training": {"epochs": 12, "lr": 0.005, "batch_size": 32, "schedule": "cosine", "monitor": "val_accuracy",
                 "clip_norm": 1.0, "seed": 0},
}


def _command(argv: list[str]) -> str:
    return "rnnkit " + shlex.join(argv)


def _headline(run_dir: Path, metrics: dict) -> None:
    for split in ("test", "val"):
        m = metrics.get(split)
        if m:
            shown = "  ".join(f"{k} {v:.4f}" for k, v in m.items() if isinstance(v, float))
            print(f"{split}: {shown}")
            break
    print(f"run folder: {run_dir}")
    print(f"report: {run_dir / 'report.html'}")


def cmd_demo(args: argparse.Namespace) -> int:
    from rnnkit.training.engine import fit

    out = Path(args.out) if args.out else None
    if out is None:  # the next free runs/demo, runs/demo-2, ...
        out, i = Path("runs/demo"), 1
        while out.exists():
            i += 1
            out = Path(f"runs/demo-{i}")
    print(f"training a GRU on the embedded UCI digits (8 rows x 8 pixels per image) -> {out}")
    run_dir, metrics = fit(DEMO_CONFIG, out, command=_command(args.argv), quiet=args.quiet)
    _headline(run_dir, metrics)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from rnnkit.training.engine import fit

    if args.resume is None and args.config is None:
        raise ValueError("give a CONFIG file to train, or --resume RUN_DIR to continue a run")
    if args.resume is not None and (args.config is not None or args.out is not None):
        raise ValueError("--resume continues a run from its own config.yaml; drop CONFIG and --out")
    run_dir, metrics = fit(args.config, args.out, resume=args.resume, overrides=args.set or [],
                           command=_command(args.argv), quiet=args.quiet)
    if metrics:
        _headline(run_dir, metrics)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from rnnkit.api import Run

    run = Run.load(args.run, checkpoint=args.checkpoint)
    m = run.evaluate(args.data, split=args.split)
    if args.json:
        print(json.dumps(m, indent=1))
        return 0
    print(f"{args.data or args.split}: " + "  ".join(f"{k} {v:.4f}" for k, v in m.items() if isinstance(v, float))
          + f"  ({m.get('count', '?')} items, {run.checkpoint} checkpoint)")
    cm = m.get("confusion_matrix")
    if cm is not None and len(cm) <= 20:
        classes = run.task.classes
        w = max(len(c) for c in classes) + 1
        print("confusion matrix (rows: true, columns: predicted)")
        for c, row in zip(classes, cm, strict=True):
            print(c.rjust(w), " ".join(f"{v:>5d}" for v in row))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from rnnkit.api import Run
    from rnnkit.tasks.sequence_classification import write_predictions

    if args.output is not None and Path(args.output).suffix not in (".csv", ".json"):
        raise ValueError(f"--output {args.output}: use a .csv or .json file name")
    run = Run.load(args.run, checkpoint=args.checkpoint)
    records = run.predict(args.input)
    if args.output is None:
        import csv

        w = csv.DictWriter(sys.stdout, fieldnames=list(records[0]) if records else ["index"])
        w.writeheader()
        w.writerows(records)
    else:
        write_predictions(records, Path(args.output))
        print(f"{len(records)} predictions written to {args.output}", file=sys.stderr)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from rnnkit.training import checkpoint as ckpt

    run_dir = Path(args.run)
    if not (run_dir / "run.json").is_file():
        raise ckpt.CheckpointError(f"{run_dir} is not a run folder (no run.json); give a folder made by rnnkit train")
    info = json.loads((run_dir / "run.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text()) if (run_dir / "metrics.json").is_file() else {}
    print(f"run {info['name']} ({info['task']}) in {run_dir}")
    print(f"command: {info.get('command', '')}")
    print(f"model: {info['parameters']:,} parameters on {info['device']} x {info['world_size']}")
    print("data: " + ", ".join(f"{k} {v}" for k, v in info.get("data", {}).items() if k != "classes"))
    for name in ("last", "best"):
        where = run_dir / "checkpoints" / name
        try:
            meta = json.loads(ckpt.read_checkpoint(where)["state.json"])
            print(f"checkpoint {name}: ok, epoch {meta['epoch']}, step {meta['global_step']}"
                  + (f" (mid-epoch, {meta['step_in_epoch']} batches in)" if meta["step_in_epoch"] else ""))
        except ckpt.CheckpointError as e:
            print(f"checkpoint {name}: {e}")
    if metrics:
        print(f"best epoch {metrics.get('best_epoch')} of {metrics.get('epochs')}"
              + (f", stopped by {metrics['stopped']}" if metrics.get("stopped") else ""))
        for split in ("val", "test"):
            if split in metrics:
                print(f"{split}: " + "  ".join(f"{k} {v:.4f}" for k, v in metrics[split].items()
                                               if isinstance(v, float)))
    else:
        print("no metrics.json yet: training has not finished (rnnkit train --resume to continue)")
    if (run_dir / "report.html").is_file():
        print(f"report: {run_dir / 'report.html'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(prog="rnnkit", formatter_class=fmt,
                                description="Train, evaluate and use recurrent networks (RNN, LSTM, GRU).",
                                epilog="examples:\n  rnnkit demo\n  rnnkit train examples/digits.yaml\n"
                                       "  rnnkit info runs/digits\n\nrun 'rnnkit COMMAND --help' for details")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("demo", help="train a small GRU on the embedded digits data (~20 s on a laptop CPU)",
                       formatter_class=fmt, epilog="examples:\n  rnnkit demo\n  rnnkit demo --out /tmp/demo")
    s.add_argument("--out", help="run folder (default: the next free runs/demo[-N])")
    s.add_argument("--quiet", action="store_true", help="no per-epoch output")
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("train", help="train from a YAML config, or resume a run", formatter_class=fmt,
                       epilog=EPILOG_TRAIN)
    s.add_argument("config", nargs="?", help="YAML config file (see docs/training.md)")
    s.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config value, e.g. --set training.lr=0.01 (repeatable; value parsed as YAML)")
    s.add_argument("--out", help="run folder (default: runs/<name>); must not exist yet")
    s.add_argument("--resume", metavar="RUN_DIR", help="continue RUN_DIR from its last checkpoint")
    s.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("evaluate", help="metrics of a trained run on its test split or on a file",
                       formatter_class=fmt, epilog="examples:\n  rnnkit evaluate runs/digits\n"
                       "  rnnkit evaluate runs/digits --split val\n  rnnkit evaluate runs/digits --data new.npz --json")
    s.add_argument("run", help="run folder")
    s.add_argument("--data", help=".npz or .csv file with labels (default: the run's own data)")
    s.add_argument("--split", default="test", choices=["train", "val", "test"], help="split of the run's data")
    s.add_argument("--checkpoint", default="best", choices=["best", "last"])
    s.add_argument("--json", action="store_true", help="print all metrics as JSON")
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("predict", help="predicted class and per-class probabilities for new sequences",
                       formatter_class=fmt, epilog="examples:\n  rnnkit predict runs/digits new.npz\n"
                       "  rnnkit predict runs/digits new.npz --output predictions.csv\n"
                       "  rnnkit predict runs/digits new.csv --output predictions.json\n\n"
                       "an .npz needs X (N, T, D) and optionally lengths; y is not needed")
    s.add_argument("run", help="run folder")
    s.add_argument("input", help=".npz or .csv file of sequences")
    s.add_argument("--output", help=".csv or .json file (default: CSV on stdout)")
    s.add_argument("--checkpoint", default="best", choices=["best", "last"])
    s.set_defaults(func=cmd_predict)

    s = sub.add_parser("info", help="summary of a run folder: config, checkpoints, metrics",
                       formatter_class=fmt, epilog="examples:\n  rnnkit info runs/digits")
    s.add_argument("run", help="run folder")
    s.set_defaults(func=cmd_info)
    return p


def main(argv: list[str] | None = None) -> int:
    from rnnkit.config import ConfigError
    from rnnkit.data import DataError
    from rnnkit.training import CheckpointError, TrainingDiverged

    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        return args.func(args)
    except (ConfigError, DataError, CheckpointError, FileExistsError, ValueError) as e:
        print(f"rnnkit: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"rnnkit: error: file not found: {e.filename or e}; check the path", file=sys.stderr)
        return 2
    except TrainingDiverged as e:
        print(f"rnnkit: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("rnnkit: interrupted; continue with: rnnkit train --resume RUN_DIR", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
