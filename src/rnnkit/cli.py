"""The ``rnnkit`` command: demo, train, evaluate, predict, export, info, and the task verbs.

Every user mistake (bad config, bad data, missing file, corrupted checkpoint) prints one line
``rnnkit: error: ...`` on stderr and exits with status 2; a diverged training exits with 1.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import re
import shlex
import sys
from pathlib import Path

from rnnkit.config import MAX_BEAM, MAX_FORECAST, MAX_IG_STEPS, MAX_TRIALS
from rnnkit.errors import UsageError, UserError

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
    from rnnkit.build import fit

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
    from rnnkit.build import fit

    if args.resume is None and args.config is None:
        raise UsageError("give a CONFIG file to train, or --resume RUN_DIR to continue a run")
    if args.resume is not None and (args.config is not None or args.out is not None):
        raise UsageError("--resume continues a run from its own config.yaml; drop CONFIG and --out")
    if args.resume is None and args.from_checkpoint != "last":
        raise UsageError("--from applies to --resume RUN_DIR only")
    run_dir, metrics = fit(args.config, args.out, resume=args.resume, overrides=args.set or [],
                           command=_command(args.argv), quiet=args.quiet, resume_from=args.from_checkpoint)
    if metrics:
        _headline(run_dir, metrics)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from rnnkit.api import Run

    run = Run.load(args.run, checkpoint=args.checkpoint)
    m = run.evaluate(args.data, split=args.split, dynamic_lr=args.dynamic_lr)
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
    from rnnkit.tasks import require
    from rnnkit.tasks.common import write_predictions

    if args.output is not None and Path(args.output).suffix not in (".csv", ".json"):
        raise UsageError(f"--output {args.output}: use a .csv or .json file name")
    if (args.input is None) == (args.text is None):
        raise UsageError("give an input FILE or --text \"...\" (text classification runs), not both")
    run = Run.load(args.run, checkpoint=args.checkpoint)
    if args.text is not None:
        require(run, "text", "rnnkit predict --text")
    if args.beam is not None or args.n_best is not None:
        if not hasattr(run.task, "decode_options"):
            raise UsageError("--beam and --n-best apply to seq2seq runs")
        beam = args.beam or max(run.config.model.beam_size, args.n_best or 1)
        if (args.n_best or 1) > beam:
            raise UsageError(f"--n-best {args.n_best} cannot exceed the beam ({beam}); raise --beam")
        run.task.decode_options = {"beam_size": beam, "n_best": args.n_best or 1}
    records = run.predict(args.input if args.text is None else list(args.text))
    if args.output is None:
        import csv

        w = csv.DictWriter(sys.stdout, fieldnames=list(records[0]) if records else ["index"])
        w.writeheader()
        w.writerows(records)
    else:
        write_predictions(records, Path(args.output))
        print(f"{len(records)} predictions written to {args.output}", file=sys.stderr)
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from rnnkit.api import Run
    from rnnkit.explain import explain_texts, page

    if (args.input is None) == (args.text is None):
        raise UsageError("give --text \"...\" or a FILE with one text per line, not both")
    if Path(args.output).suffix not in (".html", ".json"):
        raise UsageError(f"--output {args.output}: use a .html or .json file name")
    run = Run.load(args.run, checkpoint=args.checkpoint)
    if args.text is not None:
        texts = list(args.text)
    else:
        from rnnkit.data.text import read_lines

        texts = read_lines(args.input)
    if run.config.task == "seq2seq":  # the attention matrices
        return _explain_attention(run, texts, Path(args.output))
    exps = explain_texts(run, texts, steps=args.steps)
    for i, e in enumerate(exps):
        top = sorted(zip(e.scores, e.tokens, strict=True), key=lambda st: -abs(st[0]))[:5]
        print(f"text {i}: {e.predicted} ({e.probability:.3f}); top tokens: "
              + ", ".join(f"{t} {s:+.3f}" for s, t in top))
    out = Path(args.output)
    out.write_text(page(exps) if out.suffix == ".html" else json.dumps([e.to_dict() for e in exps], indent=1) + "\n")
    print(f"explanations written to {out}", file=sys.stderr)
    return 0


def _explain_attention(run, texts: list[str], out: Path) -> int:
    """``rnnkit explain`` of a seq2seq run: each output token's attention over the source, as a heat map page
    (or JSON)."""
    import html

    from rnnkit.report import have_matplotlib, png
    from rnnkit.tasks.seq2seq import attention_figure

    items = run.task.attention(run.model, texts, run.device)
    if not items:
        raise UsageError(f"{run.path} was trained with model.attention: none; there is no attention to show")
    for i, it in enumerate(items):
        print(f"text {i}: {' '.join(it['output'][:-1])}")
    if out.suffix == ".json":
        out.write_text(json.dumps([{"source": it["source"], "output": it["output"],
                                    "weights": it["weights"].round(4).tolist()} for it in items], indent=1) + "\n")
    else:
        if not have_matplotlib():
            raise UsageError("the heat map needs matplotlib (pip install 'rnnkit[report]'); or use --output x.json")
        body = "".join(f"<h2>{html.escape(''.join(it['source']))}</h2>" + png(attention_figure(it)) for it in items)
        out.write_text(f"<!doctype html><meta charset='utf-8'><title>attention</title>{body}")
    print(f"attention written to {out}", file=sys.stderr)
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    import math
    import random

    from rnnkit.api import Run
    from rnnkit.tasks import require

    if not math.isfinite(args.temperature) or args.temperature < 0:
        raise UsageError(f"--temperature must be a finite number >= 0, got {args.temperature}")
    run = Run.load(args.run, checkpoint=args.checkpoint)
    require(run, "generate", "rnnkit generate")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    if args.seed is None:
        print(f"seed {seed} (repeat this text with --seed {seed})", file=sys.stderr)
    prime = args.prime if args.prime is not None else run.task.default_prime()
    sys.stdout.write(prime)
    for piece in run.task.sample(run.model, prime, args.length, args.temperature, args.top_k, seed):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


def cmd_forecast(args: argparse.Namespace) -> int:
    from rnnkit.api import Run
    from rnnkit.report import write_report
    from rnnkit.tasks import require
    from rnnkit.tasks.forecasting import forecast, write_forecast_csv

    if args.output is not None and Path(args.output).suffix != ".csv":
        raise UsageError(f"--output {args.output}: use a .csv file name")
    run = Run.load(args.run, checkpoint=args.checkpoint)
    require(run, "forecast", "rnnkit forecast")
    records = forecast(run, args.steps)
    write_forecast_csv(records, Path(args.output) if args.output else None)
    if (run.path / "run.json").is_file():  # the report gains the forecast in its plot
        run.task.evaluate(run.model, run.task.splits["test"], run.device)
        write_forecast_csv(records, run.path / "forecast.csv")
        write_report(run.path, task=run.task, model=run.model)
        print(f"{len(records)} steps forecast; plot in {run.path / 'report.html'}", file=sys.stderr)
    return 0


def cmd_backtest(args: argparse.Namespace) -> int:
    from rnnkit.backtest import KEYS, backtest

    out = Path(args.out) if args.out else Path("runs") / (Path(args.config).stem + "-backtest")
    res = backtest(args.config, out, folds=args.folds, stride=args.stride, overrides=args.set or [],
                   quiet=args.quiet, command=_command(args.argv))
    print("overall   " + "  ".join(f"{k.upper():>8}" for k in KEYS))
    for name, m in [("model", res["overall"]["model"]), *res["overall"]["baselines"].items()]:
        print(f"{name:<15}" + "  ".join(f"{m[k]:8.4g}" for k in KEYS))
    print(f"{len(res['folds'])} folds, stride {res['stride']}, horizon {res['horizon']}: {out / 'backtest.csv'}")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from rnnkit.tune import print_summary, tune

    if not args.param:
        raise UsageError("give at least one --param key=v1,v2,... (e.g. --param model.hidden_size=16,32,64)")
    res = tune(args.config, args.param, folds=args.folds, out=args.out, overrides=args.set or [],
               metric=args.metric, quiet=args.quiet, trials=args.trials, search=args.search)
    print_summary(res)
    return 0


def cmd_diagnose(args: argparse.Namespace) -> int:
    from rnnkit.diagnostics import gate_statistics
    from rnnkit.diagnostics.runs import diagnose_run, gradient_figure

    if args.plot is not None and Path(args.plot).suffix not in (".png", ".pdf", ".svg"):
        raise UsageError(f"--plot {args.plot}: use a .png, .pdf or .svg file name")
    reports = []
    for run in args.runs:
        g, split = diagnose_run(run, args.split, args.batch_size, args.checkpoint)
        reports.append((Path(run).name, g))
        if args.json:
            print(json.dumps({"run": run, "split": split, **g.to_dict()}))
            continue
        print(f"{run}: {args.checkpoint} checkpoint, {len(g.layers[0].hidden) if g.layers else 0} {split} sequences, "
              f"summed loss {g.loss:.4g}")
        print(f"  {g.verdict}")
        for r in gate_statistics(g.layers):
            if r["gate"] == "retention":  # a diagonal cell: what each unit keeps of its state per step
                print(f"  {r['layer']} retention dh_t/dh_(t-1): {r['above']:.0%} of units x steps keep > 0.9, "
                      f"{r['kept_99']:.0%} > 0.99 (memory of 100+ steps), mean {r['mean']:.3f}")
                continue
            print(f"  {r['layer']} {r['gate']} gate: {r['saturated']:.0%} saturated ({r['below']:.0%} < 0.1, "
                  f"{r['above']:.0%} > 0.9), mean {r['mean']:.2f}")
    if args.plot is not None:
        gradient_figure(reports, args.title or "").savefig(args.plot)
        print(f"plot written to {args.plot}", file=sys.stderr)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from rnnkit.training import checkpoint as ckpt

    run_dir = Path(args.run)
    if not (run_dir / "run.json").is_file():
        raise ckpt.CheckpointError(f"{run_dir} is not a run folder (no run.json); give a folder made by rnnkit train")
    info = _json_object(run_dir / "run.json")
    metrics = _json_object(run_dir / "metrics.json") if (run_dir / "metrics.json").is_file() else {}
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


def cmd_config(args: argparse.Namespace) -> int:
    """``rnnkit config show [CONFIG | --task NAME]``: the fully resolved config, every default filled in."""
    from rnnkit.build import load_config

    if (args.config is None) == (args.task is None):
        raise UsageError("give a CONFIG file or --task NAME (the defaults of that task), not both")
    raw = {"task": args.task} if args.config is None else args.config
    cfg = load_config(raw, args.set or [], files=args.config is not None)  # a task's defaults name no file
    sys.stdout.write(f"# rnnkit {_version()}: the resolved config (every key, defaults filled in)\n" + cfg.to_yaml())
    return 0


def _version() -> str:
    from rnnkit._version import __version__

    return __version__


def cmd_doctor(args: argparse.Namespace) -> int:
    """Versions, threads, the native kernel's state (building it if needed) and CUDA; always exits 0."""
    import platform

    import torch

    from rnnkit.layers import native

    print(f"rnnkit {_version()}, torch {torch.__version__}, Python {platform.python_version()} "
          f"({sys.executable})")
    print(f"threads: torch {torch.get_num_threads()} of {os.cpu_count()} CPUs")
    why = native.why_unavailable()
    if why is None and native.enabled():
        print(f"native kernel: ok ({native.build_dir()})")
    else:
        why = native.why_unavailable() or "unknown"
        print(f"native kernel: unavailable ({why}); layers run the same math in the Python scan, slower")
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        print(f"CUDA: {torch.version.cuda} on {names}; cuDNN {torch.backends.cudnn.version()}")
    else:
        print(f"CUDA: not available (torch built with CUDA {torch.version.cuda or 'none'})")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from rnnkit.export import export_run

    out, how = export_run(args.run, args.format, args.output, args.checkpoint)
    print(f"exported {args.run} ({args.format}) to {out}")
    print(how)
    return 0


def _json_object(path: Path) -> dict:
    """A run folder's JSON file as a mapping; a damaged one is a one-line CheckpointError naming the file."""
    from rnnkit.training import checkpoint as ckpt

    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ckpt.CheckpointError(f"{path} is damaged (not valid JSON: {getattr(e, 'msg', e)}); it is rewritten "
                                   f"when the run finishes: rnnkit train --resume {path.parent}") from None
    if not isinstance(value, dict):
        raise ckpt.CheckpointError(f"{path} is damaged (a JSON {type(value).__name__}, not an object); it is "
                                   f"rewritten when the run finishes: rnnkit train --resume {path.parent}")
    return value


def _whole(lo: int, hi: int):
    """An argparse type: a whole number in ``[lo, hi]``. The bounds keep a huge value from overflowing torch's
    int64 (a traceback) or running for ever (a forecast of 10**20 steps)."""
    def whole(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not lo <= value <= hi:
            shown = text if len(text) < 30 else text[:27] + "..."
            raise argparse.ArgumentTypeError(f"{shown} is out of range; give {lo} to {hi:,}")
        return value
    return whole


SEED = _whole(0, 2**32 - 1)  # as training.seed
COUNT = _whole(1, 1_000_000)


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (``rnnkit: error: ...``, exit 2), as every other user error."""

    def error(self, message: str):  # type: ignore[override]
        sys.stderr.write(f"rnnkit: error: {' '.join(message.split())} (see {self.prog} --help)\n")
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    p = _Parser(prog="rnnkit", formatter_class=fmt,
                                description="Train, evaluate and use recurrent networks (RNN, LSTM, GRU).",
                                epilog="examples:\n  rnnkit demo\n  rnnkit train examples/digits.yaml\n"
                                       "  rnnkit info runs/digits\n\nrun 'rnnkit COMMAND --help' for details")
    p.add_argument("--version", action="version", version=f"rnnkit {_version()}")
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
    s.add_argument("--from", dest="from_checkpoint", default="last", choices=["last", "best"],
                   help="with --resume: the checkpoint to continue from (default: last)")
    s.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("evaluate", help="metrics of a trained run on its test split or on a file",
                       formatter_class=fmt, epilog="examples:\n  rnnkit evaluate runs/digits\n"
                       "  rnnkit evaluate runs/digits --split val\n"
                       "  rnnkit evaluate runs/digits --data new.npz --json\n"
                       "  rnnkit evaluate runs/austen --split val --dynamic-lr 0.01")
    s.add_argument("run", help="run folder")
    s.add_argument("--data", help=".npz or .csv file with labels (default: the run's own data)")
    s.add_argument("--split", default="test", choices=["train", "val", "test"], help="split of the run's data")
    s.add_argument("--checkpoint", default="best", choices=["best", "last"])
    s.add_argument("--json", action="store_true", help="print all metrics as JSON")
    s.add_argument("--dynamic-lr", type=float, metavar="LR",
                   help="language models: dynamic evaluation, SGD at LR after each scored chunk "
                   "(docs/language_model.md)")
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("predict", help="predicted class and per-class probabilities for new sequences",
                       formatter_class=fmt, epilog="examples:\n  rnnkit predict runs/digits new.npz\n"
                       "  rnnkit predict runs/digits new.npz --output predictions.csv\n"
                       "  rnnkit predict runs/digits new.csv --output predictions.json\n\n"
                       "an .npz needs X (N, T, D) and optionally lengths; y is not needed")
    s.add_argument("run", help="run folder")
    s.add_argument("input", nargs="?", help=".npz or .csv file of sequences (text runs: CSV/TSV/JSONL, or one text "
                   "per line)")
    s.add_argument("--text", action="append", metavar="TEXT", help="text runs: a text to classify (repeatable)")
    s.add_argument("--beam", type=_whole(1, MAX_BEAM),
                   help="seq2seq: beam size (default: the run's model.beam_size)")
    s.add_argument("--n-best", type=_whole(1, MAX_BEAM), dest="n_best",
                   help="seq2seq: outputs per input, with their scores")
    s.add_argument("--output", help=".csv or .json file (default: CSV on stdout)")
    s.add_argument("--checkpoint", default="best", choices=["best", "last"])
    s.set_defaults(func=cmd_predict)

    s = sub.add_parser("explain", help="per-token importance of a text classifier's decision (HTML heat map)",
                       formatter_class=fmt, epilog="examples:\n  rnnkit explain runs/fine-foods --text \"Great taste, "
                       "will buy again\"\n  rnnkit explain runs/fine-foods reviews.txt --output explain.json\n\n"
                       "integrated gradients over the embeddings; see docs/text.md")
    s.add_argument("run", help="run folder of a text_classification run")
    s.add_argument("input", nargs="?", help="file with one text per line")
    s.add_argument("--text", action="append", metavar="TEXT", help="a text to explain (repeatable)")
    s.add_argument("--output", default="explain.html", help=".html heat map or .json scores (default: explain.html)")
    s.add_argument("--steps", type=_whole(1, MAX_IG_STEPS), default=50, help="integration steps (default 50)")
    s.add_argument("--checkpoint", default="best", choices=["best", "last"])
    s.set_defaults(func=cmd_explain)

    s = sub.add_parser("generate", help="sample text from a language model run, streamed as it is drawn",
                       formatter_class=fmt, epilog="examples:\n  rnnkit generate runs/austen\n"
                       "  rnnkit generate runs/austen --prime \"It is a truth\" --length 300 --temperature 0.7\n"
                       "  rnnkit generate runs/austen --top-k 5 --seed 1   # the same seed gives the same text\n\n"
                       "--length counts tokens: characters (level: char) or words (level: word)")
    s.add_argument("run", help="run folder of a task: language_model run")
    s.add_argument("--prime", help="text to read before sampling (default: a line break)")
    s.add_argument("--length", type=_whole(0, 10_000_000), default=500, help="tokens to sample (default 500)")
    s.add_argument("--temperature", type=float, default=1.0, help="< 1: safer, > 1: wilder, 0: greedy (default 1)")
    s.add_argument("--top-k", type=COUNT, help="sample only among the K likeliest tokens")
    s.add_argument("--seed", type=SEED, help="random seed (default: a fresh one, printed on stderr)")
    s.add_argument("--checkpoint", default="best", choices=["best", "last"])
    s.set_defaults(func=cmd_generate)

    s = sub.add_parser("forecast", help="continue a forecasting run's series past its last observation",
                       formatter_class=fmt, epilog="examples:\n  rnnkit forecast runs/forecast-demo --steps 11\n"
                       "  rnnkit forecast runs/co2 --steps 24 --output co2_forecast.csv\n\n"
                       "CSV columns: origin, step, date, forecast[, lower_P, upper_P]; see docs/forecasting.md")
    s.add_argument("run", help="run folder of a task: forecasting run")
    s.add_argument("--steps", type=_whole(1, MAX_FORECAST), required=True,
                   help="steps to forecast (beyond the horizon: fed back)")
    s.add_argument("--output", help=".csv file (default: CSV on stdout)")
    s.add_argument("--checkpoint", default="best", choices=["best", "last"])
    s.set_defaults(func=cmd_forecast)

    s = sub.add_parser("backtest", help="rolling-origin evaluation of a forecasting config (retrain per fold)",
                       formatter_class=fmt, epilog="examples:\n  rnnkit backtest examples/sunspots.yaml\n"
                       "  rnnkit backtest examples/co2.yaml --folds 4 --stride 24 --out runs/co2-bt\n\n"
                       "expanding window: fold k trains on everything before its cutoff; see docs/forecasting.md")
    s.add_argument("config", help="YAML config with task: forecasting")
    s.add_argument("--folds", type=COUNT, default=5, help="number of cutoffs (default 5)")
    s.add_argument("--stride", type=COUNT, help="steps between cutoffs (default: the test part split into folds)")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value (repeatable)")
    s.add_argument("--out", help="backtest folder (default: runs/<config>-backtest); must not exist yet")
    s.add_argument("--quiet", action="store_true", help="no per-fold lines")
    s.set_defaults(func=cmd_backtest)

    s = sub.add_parser("tune", help="choose hyper-parameters (e.g. hidden size) by k-fold cross-validation",
                       formatter_class=fmt, epilog="examples:\n"
                       "  rnnkit tune examples/digits.yaml --param model.hidden_size=16,32,64,128 --folds 5\n"
                       "  rnnkit tune examples/adding.yaml --param model.hidden_size=8,32 "
                       "--param training.lr=0.003,0.01 --folds 3\n"
                       "  rnnkit tune examples/digits.yaml --param training.lr=1e-4..1e-2 "
                       "--param model.hidden_size=16,32,64 --trials 12\n\n"
                       "folds are cut from the training split (rolling-origin for forecasting); the test\n"
                       "split is never used. writes results.csv, summary.csv, tune.png and best.yaml;\n"
                       "see docs/long_range.md")
    s.add_argument("config", help="YAML config file")
    s.add_argument("--param", action="append", metavar="KEY=V1,V2", help="a grid axis (repeatable; the grid is "
                   "the product)")
    s.add_argument("--folds", type=_whole(2, 1_000_000), default=5, help="number of folds (default 5)")
    s.add_argument("--trials", type=_whole(1, MAX_TRIALS), help="try this many settings instead of the whole grid: "
                   "Optuna (TPE, pruning) when installed, else random; ranges key=lo..hi then allowed")
    s.add_argument("--search", choices=("auto", "optuna", "random"), default="auto",
                   help="with --trials: optuna, random, or auto (optuna when installed)")
    s.add_argument("--metric", help="val_<metric> to compare (default: training.monitor, else val_loss)")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value (repeatable)")
    s.add_argument("--out", help="folder for the results (default: runs/tune-<name>); must not exist yet")
    s.add_argument("--quiet", action="store_true", help="no line per fold")
    s.set_defaults(func=cmd_tune)

    s = sub.add_parser("diagnose", help="gradient through time (vanishing/exploding verdict) and gate saturation",
                       formatter_class=fmt, epilog="examples:\n  rnnkit diagnose runs/adding\n"
                       "  rnnkit diagnose runs/rnn runs/lstm --plot grad.png   # both on one log-scale plot\n\n"
                       "see docs/diagnostics.md")
    s.add_argument("runs", nargs="+", metavar="RUN", help="run folder(s)")
    s.add_argument("--split", choices=["train", "val", "test"], help="data split (default: val, else test)")
    s.add_argument("--batch-size", type=COUNT, default=16, help="sequences traced (default 16)")
    s.add_argument("--checkpoint", default="best", choices=["best", "last"])
    s.add_argument("--plot", help="write ||dL/dh_t|| against t (log scale) to this .png/.pdf/.svg")
    s.add_argument("--title", help="title of the plot")
    s.add_argument("--json", action="store_true", help="print the numbers as JSON lines")
    s.set_defaults(func=cmd_diagnose)

    s = sub.add_parser("doctor", help="versions, threads, the native kernel's state and CUDA",
                       formatter_class=fmt, epilog="examples:\n  rnnkit doctor")
    s.set_defaults(func=cmd_doctor)

    s = sub.add_parser("config", help="the fully resolved config of a file or a task, every default filled in",
                       formatter_class=fmt, epilog="examples:\n  rnnkit config show examples/digits.yaml\n"
                       "  rnnkit config show --task forecasting\n"
                       "  rnnkit config show examples/co2.yaml --set model.hidden_size=32")
    s.add_argument("action", choices=["show"], help="show: print it as YAML")
    s.add_argument("config", nargs="?", help="YAML config file")
    s.add_argument("--task", help="a task's defaults instead of a file")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a value (repeatable)")
    s.set_defaults(func=cmd_config)

    s = sub.add_parser("export", help="the trained model as ONNX or a torch.export program (dynamic batch/time)",
                       formatter_class=fmt, epilog="examples:\n  rnnkit export runs/digits\n"
                       "  rnnkit export runs/fine-foods --format pt2 --output fine_foods.pt2\n\n"
                       "checks the exported graph against the model on the run's own inputs before writing;\n"
                       "--format onnx needs pip install 'rnnkit[export]'; see docs/layers.md")
    s.add_argument("run", help="run folder")
    s.add_argument("--format", default="onnx", choices=["onnx", "pt2"], help="onnx (default) or pt2")
    s.add_argument("--output", help="file to write (default: RUN/model.onnx or RUN/model.pt2)")
    s.add_argument("--checkpoint", default="best", choices=["best", "last"])
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("info", help="summary of a run folder: config, checkpoints, metrics",
                       formatter_class=fmt, epilog="examples:\n  rnnkit info runs/digits")
    s.add_argument("run", help="run folder")
    s.set_defaults(func=cmd_info)
    return p


def main(argv: list[str] | None = None) -> int:
    from rnnkit.training import TrainingDiverged

    argv = sys.argv[1:] if argv is None else list(argv)
    if any("\x00" in a for a in argv):  # only an in-process caller can pass one; no path or value may hold it
        print("rnnkit: error: an argument contains a NUL byte (\\x00); remove it", file=sys.stderr)
        return 2
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        return args.func(args)
    except UserError as e:
        print(f"rnnkit: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"rnnkit: error: file not found: {e.filename or e}; check the path", file=sys.stderr)
        return 2
    except (IsADirectoryError, NotADirectoryError, PermissionError) as e:
        what = {IsADirectoryError: "is a folder, not a file", NotADirectoryError: "has a file where a folder "
                "should be", PermissionError: "cannot be written or read (permission denied)"}[type(e)]
        print(f"rnnkit: error: {e.filename or e} {what}; give another path", file=sys.stderr)
        return 2
    except TrainingDiverged as e:
        print(f"rnnkit: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:
        where = getattr(e, "run_dir", None)
        hint = f"; continue with: rnnkit train --resume {where}" if where is not None else ""
        print(f"rnnkit: interrupted{hint}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `rnnkit info RUN | head`: the reader left; stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at interpreter exit
        return 0
    except OSError as e:
        if e.errno not in _PATH_ERRORS:
            return _internal_error(e)
        name = str(e.filename or "a file")
        shown = name if len(name) <= 80 else name[:40] + "..." + name[-20:]
        print(f"rnnkit: error: {shown}: {_PATH_ERRORS[e.errno]}", file=sys.stderr)
        return 2
    except Exception as e:
        if _out_of_memory(e):
            asked = re.search(r"allocate (\d+) bytes", str(e))
            size = f" (an allocation of {int(asked.group(1)) / 2**30:.1f} GiB failed)" if asked else ""
            print(f"rnnkit: error: out of memory{size}; lower training.batch_size or training.eval_batch_size, "
                  "data.max_length, or the model's size (checkpoints already written are whole)", file=sys.stderr)
            return 2
        return _internal_error(e)


def _out_of_memory(e: BaseException) -> bool:
    """Python's MemoryError, torch's OutOfMemoryError (a GPU), or the CPU allocator's refusal (a RuntimeError)."""
    return isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError" or (
        isinstance(e, RuntimeError) and "can't allocate memory" in str(e))


# the machine's answers about a path that are the user's to mend, not a bug of rnnkit (files written before them
# are whole: checkpoints and outputs are written to a temporary name and renamed)
_PATH_ERRORS = {
    errno.ENAMETOOLONG: "the name is too long for the file system (at most 255 bytes a part); give a shorter path",
    errno.ENOSPC: "no space left on the device; free some space or give a path on another disk",
    errno.EDQUOT: "the disk quota is exceeded; free some space or give a path on another disk",
    errno.EROFS: "the file system is read-only; give a path where files can be written",
    errno.ELOOP: "too many levels of symbolic links; give the real path",
    errno.EFBIG: "the file is too large for the file system; give a path on another disk",
}


def _internal_error(e: Exception) -> int:
    """A bug, not a user error: say so, keep the traceback. Called while ``e`` is being handled."""
    if os.environ.get("RNNKIT_DEBUG") == "1":
        raise  # the exception being handled, with its traceback
    where = _write_traceback()
    print(f"rnnkit: internal error (a bug in rnnkit, not in your input): {type(e).__name__}: "
          f"{' '.join(str(e).split())[:300]}; the full traceback is in {where} (RNNKIT_DEBUG=1 shows it); "
          "please report it", file=sys.stderr)
    return 1


def _write_traceback() -> str:
    """Write the current exception's traceback to a new file and return its path."""
    import tempfile
    import traceback

    fd, path = tempfile.mkstemp(prefix="rnnkit-traceback-", suffix=".txt")
    with os.fdopen(fd, "w") as f:
        f.write(f"rnnkit {_version()} {' '.join(sys.argv)}\n\n")
        traceback.print_exc(file=f)
    return path


if __name__ == "__main__":
    sys.exit(main())
