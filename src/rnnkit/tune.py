"""``rnnkit tune``: choose hyper-parameters (e.g. the number of hidden units) by k-fold cross-validation.

    rnnkit tune examples/digits.yaml --param model.hidden_size=16,32,64,128 --folds 5
    rnnkit tune examples/adding.yaml --param model.hidden_size=8,32 --param training.lr=0.003,0.01 --folds 3

For every setting of the grid (the product of the ``--param`` lists) and every fold, the task's training
split is cut into ``folds`` parts: the model trains on all but one (with the config's schedule, early
stopping and best checkpoint, the held-out part acting as the validation set) and is scored on the one
left out. The config's own validation split is set aside and the test split is never touched, so the
chosen setting can still be tested honestly afterwards (``rnnkit train <out>/best.yaml``).

* shuffled k-fold (seeded by ``training.seed``) for sequence data: classification, the long-range tasks;
* rolling-origin folds for forecasting (any split whose items carry ``origins``): the training windows in
  time order are cut into ``folds + 1`` blocks; fold f trains on blocks 1..f and validates on block f+1,
  dropping training windows whose targets reach into the validation block;
* a task may define ``cv_folds(k) -> [(train, val), ...]`` to cut its own folds.

Written to ``--out`` (default ``runs/tune-<name>``): ``results.csv`` (setting, fold, score, seconds),
``summary.csv`` (mean, std per setting), ``tune.png`` (mean +- std per setting), ``best.yaml`` (the config
with the best setting) and one run folder per setting and fold (checkpoints, metrics.csv).
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rnnkit.build import load_config
from rnnkit.config import MAX_TRIALS, Config, ConfigError
from rnnkit.errors import RunExists


@dataclass(frozen=True)
class Range:
    """A continuous search axis ``key=lo..hi`` (for ``--trials``): integers uniform, floats log-uniform when
    ``0 < lo`` and ``hi >= 10 lo`` (learning rates, weight decay), else uniform."""

    lo: float
    hi: float
    integer: bool

    @property
    def log(self) -> bool:
        return not self.integer and self.lo > 0 and self.hi >= 10 * self.lo

    def sample(self, rng: np.random.Generator) -> float | int:
        if self.integer:
            return int(rng.integers(int(self.lo), int(self.hi) + 1))
        if self.log:
            return _short(float(np.exp(rng.uniform(np.log(self.lo), np.log(self.hi)))))
        return _short(float(rng.uniform(self.lo, self.hi)))


def _short(x: float) -> float:
    """Four significant digits: readable labels and folder names, and no false precision."""
    return float(f"{x:.4g}")


def parse_param(text: str) -> tuple[str, list | Range]:
    """``"model.hidden_size=16,32"`` -> ``("model.hidden_size", [16, 32])`` (each value parsed as YAML);
    ``"training.lr=1e-4..1e-2"`` -> a :class:`Range` (random search and Optuna only)."""
    import yaml

    key, eq, values = text.partition("=")
    if not eq or not key.strip() or not values.strip():
        raise ConfigError(f"--param expects key.sub=v1,v2,... or key.sub=lo..hi, got '{text}'")
    if ".." in values and "," not in values:
        lo_text, _, hi_text = values.partition("..")
        def number(t: str) -> int | float:
            t = t.strip()
            return int(t) if t.lstrip("+-").isdigit() else float(t)

        try:
            lo, hi = number(lo_text), number(hi_text)
            lo, hi = (float(lo), float(hi)) if isinstance(lo, float) or isinstance(hi, float) else (lo, hi)
        except ValueError:
            raise ConfigError(f"--param {key}: cannot parse the range '{values}' (lo..hi, numbers)") from None
        if not lo < hi:
            raise ConfigError(f"--param {key}: the range '{values}' needs lo < hi")
        return key.strip(), Range(lo, hi, isinstance(lo, int) and isinstance(hi, int))
    try:
        parsed = [yaml.safe_load(v) for v in values.split(",")]
    except yaml.YAMLError:
        raise ConfigError(f"--param {key}: cannot parse the values '{values}'") from None
    if len(set(map(str, parsed))) != len(parsed):
        raise ConfigError(f"--param {key}: a value is listed twice in '{values}'")
    return key.strip(), parsed


def grid(params: dict[str, list]) -> list[dict]:
    """The product of the value lists: ``[{key: value, ...}, ...]``."""
    ranges = [k for k, v in params.items() if isinstance(v, Range)]
    if ranges:
        raise ConfigError(f"--param {ranges[0]} is a range (lo..hi): give --trials N for a random search")
    keys = list(params)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*params.values())]


def random_settings(params: dict[str, list | Range], trials: int, seed: int) -> list[dict]:
    """``trials`` settings drawn at random (seeded): a value of each list, a sample of each range; distinct while
    the lists allow."""
    rng, out, seen = np.random.default_rng(seed), [], set()
    for _ in range(trials * 20):
        s = {k: (v.sample(rng) if isinstance(v, Range) else v[int(rng.integers(len(v)))]) for k, v in params.items()}
        if json.dumps(s, sort_keys=True) not in seen:
            seen.add(json.dumps(s, sort_keys=True))
            out.append(s)
        if len(out) == trials:
            break
    return out


def label(setting: dict) -> str:
    return ", ".join(f"{k.split('.')[-1]}={v}" for k, v in setting.items())


def slug(setting: dict) -> str:
    return "-".join(f"{k.split('.')[-1]}_{v}" for k, v in setting.items()).replace("/", "_")


def lower_is_better(metric: str) -> bool:
    """The training engine's rule, so that tune and the best checkpoint agree on every metric."""
    from rnnkit.training.engine import lower_is_better as engine_rule

    return engine_rule(metric)


# ---- folds ---------------------------------------------------------------------------------------------


def subset(split: Any, idx: np.ndarray) -> Any:
    """Rows ``idx`` of a split dataclass: every tensor/array field with one row per item is indexed."""
    if not dataclasses.is_dataclass(split):
        raise ConfigError(f"rnnkit tune cannot cut folds of a {type(split).__name__}; give the task a "
                          "cv_folds(k) method")
    n, changes = len(split), {}
    for f in dataclasses.fields(split):
        v = getattr(split, f.name)
        if isinstance(v, torch.Tensor) and v.dim() and v.shape[0] == n:
            changes[f.name] = v[torch.from_numpy(idx)]
        elif isinstance(v, np.ndarray) and v.ndim and v.shape[0] == n:
            changes[f.name] = v[idx]
    return dataclasses.replace(split, **changes)


def fold_indices(split: Any, k: int, seed: int, gap: int = 1) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train rows, validation rows) per fold: rolling-origin when the split has ``origins``, else shuffled."""
    n = len(split)
    origins = getattr(split, "origins", None)
    if origins is not None:
        order = np.argsort(np.asarray(origins), kind="stable")
        blocks = np.array_split(order, k + 1)
        if min(map(len, blocks)) == 0:
            raise ConfigError(f"--folds {k}: the training part has only {n} windows; use fewer folds")
        out = []
        for f in range(k):
            val = blocks[f + 1]
            train = np.concatenate(blocks[: f + 1])
            train = train[np.asarray(origins)[train] + gap <= np.asarray(origins)[val].min()]
            if len(train) == 0:
                raise ConfigError(f"--folds {k}: fold {f + 1} has no training window left; use fewer folds")
            out.append((train, val))
        return out
    if n < k:
        raise ConfigError(f"--folds {k}: the training split has only {n} items; use fewer folds")
    perm = np.random.default_rng(seed).permutation(n)
    parts = np.array_split(perm, k)
    return [(np.sort(np.concatenate(parts[:f] + parts[f + 1 :])), np.sort(parts[f])) for f in range(k)]


def fold_task(cls: type, k: int, fold: int) -> type:
    """A subclass of task ``cls`` whose ``setup`` replaces train/val with fold ``fold`` of ``k``."""

    def setup(self) -> None:
        cls.setup(self)
        if hasattr(self, "cv_folds"):
            train, val = self.cv_folds(k)[fold]
        else:
            pool = self.splits["train"]
            tr, va = fold_indices(pool, k, self.cfg.training.seed, int(getattr(self, "train_horizon", 1)))[fold]
            train, val = subset(pool, tr), subset(pool, va)
        self.splits = {"train": train, "val": val}  # the test split is never used while tuning

    return type(f"{cls.__name__}Fold{fold}", (cls,), {"setup": setup})


# ---- the search ----------------------------------------------------------------------------------------


@dataclass
class TuneResult:
    out: Path
    metric: str  # e.g. "val_loss": the fold score
    rows: list[dict]  # one per setting and fold: setting, fold, score, seconds
    summary: list[dict]  # one per setting: setting (dict), label, mean, std, scores
    best: dict  # the best setting
    best_config: Config


def train_fold(cfg: Config, fold: int, k: int, run_dir: Path, metric: str) -> float:
    """Train one fold with the engine and return ``metric`` of its best checkpoint on the held-out part."""
    from rnnkit.tasks import get_task
    from rnnkit.training.engine import Trainer

    task = fold_task(get_task(cfg.task), k, fold)(cfg)  # this fold's split of the training data
    trainer = Trainer(cfg.training, callbacks=cfg.callbacks, command=f"rnnkit tune (fold {fold + 1}/{k})",
                      quiet=True, report=False)
    m = trainer.fit(task, task, run_dir, config=cfg)["val"]
    return float(m[metric.removeprefix("val_")])


def tune(config: Config | dict | str | Path, params: dict[str, list] | Sequence[str], folds: int = 5,
         out: str | Path | None = None, overrides: Sequence[str] = (), metric: str | None = None,
         quiet: bool = True, trials: int | None = None, search: str = "auto") -> TuneResult:
    """Cross-validate every setting of ``params`` (``{"model.hidden_size": [16, 32]}`` or
    ``["model.hidden_size=16,32"]``); see the module docstring. ``metric``: ``val_<metric>`` of the task
    (default: ``training.monitor`` when it is a validation metric, else ``val_loss``). ``trials``: try that many
    settings instead of the whole grid — chosen by Optuna's TPE sampler, with trials pruned after a fold whose
    running mean is worse than the median of earlier trials, when Optuna is installed (``search="auto"`` or
    ``"optuna"``), else (or with ``search="random"``) drawn at random."""
    from rnnkit.config import read_yaml
    from rnnkit.tasks import get_task

    if not isinstance(params, dict):
        params = dict(parse_param(p) for p in params)
    if not params:
        raise ConfigError("give at least one --param key=v1,v2,...")
    if folds < 2:
        raise ConfigError(f"--folds must be >= 2, got {folds}")
    base = config.to_dict() if isinstance(config, Config) else dict(config) if isinstance(config, dict) else \
        read_yaml(Path(config))
    cfg0 = load_config(base, overrides)
    task = get_task(cfg0.task)
    metric = metric or (cfg0.training.monitor if cfg0.training.monitor.startswith("val_") else "val_loss")
    if metric.removeprefix("val_") not in task.metrics:
        raise ConfigError(f"metric '{metric}' is not one of " + ", ".join(f"val_{m}" for m in task.metrics))
    if search not in ("auto", "optuna", "random"):
        raise ConfigError(f"search must be auto, optuna or random, got {search!r}")
    if trials is not None and not 1 <= trials <= MAX_TRIALS:
        raise ConfigError(f"--trials must be in [1, {MAX_TRIALS}], got {trials}")
    use_optuna = trials is not None and search != "random" and _have_optuna()
    if search == "optuna" and not use_optuna:
        raise ConfigError("search: optuna needs --trials N and Optuna installed (pip install optuna)")
    if use_optuna:
        settings = []  # chosen while searching
        probe = random_settings(params, 1, cfg0.training.seed)  # validate the keys and value types once
    else:
        settings = grid(params) if trials is None else random_settings(params, trials, cfg0.training.seed)
        probe = settings
    configs = [_config(base, overrides, s) for s in probe]  # validate before training anything
    out = Path(out) if out is not None else Path("runs") / f"tune-{cfg0.name}"
    from rnnkit.training.lock import folder_taken, run_lock

    if folder_taken(out):
        raise RunExists(f"tune folder {out} already exists; choose another with --out DIR")
    with run_lock(out, "tune folder"):  # one writer per folder, for the whole search
        if use_optuna:
            return _optuna_search(params, trials, base, overrides, out, folds, metric, quiet, cfg0)
        return _search(configs, base, out, folds, metric, quiet, cfg0, "grid" if trials is None else "random")


def _have_optuna() -> bool:
    import importlib.util

    return importlib.util.find_spec("optuna") is not None


def _config(base: dict, overrides: Sequence[str], s: dict) -> tuple[dict, list[str], Config]:
    sets = [*overrides, *(f"{k}={json.dumps(v)}" for k, v in s.items())]
    return s, sets, load_config(base, sets)


def _folds(s: dict, cfg: Config, out: Path, folds: int, metric: str, quiet: bool, rows: list,
           after_fold=None) -> list[float]:
    """Train one setting's folds; ``after_fold(f, scores)`` may return True to stop (a pruned trial)."""
    scores = []
    for f in range(folds):
        t0 = time.perf_counter()
        score = train_fold(cfg, f, folds, out / slug(s) / f"fold{f + 1}", metric)
        rows.append({"setting": label(s), "fold": f + 1, metric: score, "seconds": time.perf_counter() - t0})
        scores.append(score)
        if not quiet:
            print(f"{label(s)}  fold {f + 1}/{folds}: {metric} {score:.4f}  ({rows[-1]['seconds']:.0f} s)",
                  flush=True)
        if after_fold is not None and after_fold(f, scores):
            if not quiet:
                print(f"{label(s)}  pruned after fold {f + 1}", flush=True)
            break
    return scores


def _row(s: dict, sets: list[str], scores: list[float], folds: int) -> dict:
    return {"setting": s, "label": label(s), "overrides": sets, "mean": float(np.mean(scores)),
            "std": float(np.std(scores, ddof=1)) if len(scores) > 1 else float("nan"), "scores": scores,
            "pruned": len(scores) < folds}


def _optuna_search(params: dict, trials: int, base: dict, overrides: Sequence[str], out: Path, folds: int,
                   metric: str, quiet: bool, cfg0: Config) -> TuneResult:
    """TPE over ``params`` (lists categorical, ranges continuous), a median pruner after each fold."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    direction = "minimize" if lower_is_better(metric) else "maximize"
    study = optuna.create_study(direction=direction, sampler=optuna.samplers.TPESampler(seed=cfg0.training.seed),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0))
    rows, summary = [], []
    for _ in range(trials):
        trial = study.ask()
        s = {}
        for k, v in params.items():
            if isinstance(v, Range):
                s[k] = (trial.suggest_int(k, int(v.lo), int(v.hi)) if v.integer
                        else _short(trial.suggest_float(k, v.lo, v.hi, log=v.log)))
            else:
                s[k] = v[trial.suggest_categorical(k, list(range(len(v))))]  # by index: any YAML value

        def report(f: int, scores: list[float], trial=trial) -> bool:
            trial.report(float(np.mean(scores)), f)
            return f < folds - 1 and trial.should_prune()

        _, sets, cfg = _config(base, overrides, s)
        scores = _folds(s, cfg, out, folds, metric, quiet, rows, report)
        row = _row(s, sets, scores, folds)
        summary.append(row)
        study.tell(trial, row["mean"] if not row["pruned"] else None,
                   state=optuna.trial.TrialState.PRUNED if row["pruned"] else optuna.trial.TrialState.COMPLETE)
    return _finish(summary, rows, base, out, folds, metric, cfg0, "optuna")


def _search(configs: list, base: dict, out: Path, folds: int, metric: str, quiet: bool, cfg0: Config,
            how: str = "grid") -> TuneResult:
    """Train every setting's folds into ``out`` (see :func:`tune`)."""
    rows, summary = [], []
    for s, sets, cfg in configs:
        summary.append(_row(s, sets, _folds(s, cfg, out, folds, metric, quiet, rows), folds))
    return _finish(summary, rows, base, out, folds, metric, cfg0, how)


def _finish(summary: list, rows: list, base: dict, out: Path, folds: int, metric: str, cfg0: Config,
            how: str) -> TuneResult:
    complete = [r for r in summary if not r["pruned"]] or summary
    pick = min if lower_is_better(metric) else max
    best = pick(complete, key=lambda r: r["mean"])
    best_cfg = load_config(base, best["overrides"])
    best_cfg.name = f"{cfg0.name}-tuned"
    (out / "best.yaml").write_text(f"# rnnkit tune ({how}): best of {len(summary)} settings x {folds} folds by mean "
                                   f"{metric}: {best['label']} ({best['mean']:.4g} +- {best['std']:.4g})\n"
                                   + best_cfg.to_yaml())
    _write_csv(out / "results.csv", rows)
    _write_csv(out / "summary.csv", [{"setting": r["label"], f"mean_{metric}": r["mean"], f"std_{metric}": r["std"],
                                      "folds": len(r["scores"]), "pruned": r["pruned"]} for r in summary])
    _plot(out / "tune.png", summary, metric, best)
    return TuneResult(out, metric, rows, summary, best["setting"], best_cfg)


def _write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _plot(path: Path, summary: list[dict], metric: str, best: dict) -> None:
    from rnnkit.report import figure, have_matplotlib

    if not have_matplotlib():
        return
    fig = figure(max(4.0, 0.9 * len(summary) + 1.5), 3.4)
    ax = fig.add_subplot()
    x = np.arange(len(summary))
    ax.errorbar(x, [r["mean"] for r in summary], yerr=[r["std"] for r in summary], fmt="o", capsize=4,
                label="mean +- std over folds")
    for i, r in enumerate(summary):
        ax.scatter([i] * len(r["scores"]), r["scores"], s=8, color="grey", alpha=0.6, zorder=0)
    ax.scatter([summary.index(best)], [best["mean"]], s=120, facecolors="none", edgecolors="red", label="best")
    ax.set_xticks(x, [r["label"] for r in summary], rotation=30 if len(summary) > 4 else 0, ha="right"
                  if len(summary) > 4 else "center", fontsize=8)
    ax.set_ylabel(metric)
    ax.legend(fontsize=8)
    fig.savefig(path)


def print_summary(res: TuneResult) -> None:
    w = max(len(r["label"]) for r in res.summary)
    print(f"{'setting'.ljust(w)}  mean {res.metric}  std")
    for r in res.summary:
        mark = "  <- best" if r["setting"] == res.best else f"  (pruned after {len(r['scores'])})" if r.get(
            "pruned") else ""
        print(f"{r['label'].ljust(w)}  {r['mean']:>{len(res.metric) + 5}.4f}  {r['std']:.4f}{mark}")
    print(f"best config: {res.out / 'best.yaml'}  (train it: rnnkit train {res.out / 'best.yaml'})")
    print(f"plot: {res.out / 'tune.png'}")


__all__ = ["Range", "TuneResult", "fold_indices", "grid", "parse_param", "print_summary", "random_settings", "subset",
           "tune"]
