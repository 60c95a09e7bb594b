"""``rnnkit backtest``: rolling-origin backtest (expanding window): retrain at each cutoff, forecast the next block,
score, pool.

Fold k has cutoff ``c_k = c_0 + k * stride`` (``c_0``: where the config's test part starts). Its model is
trained (and validated) on the series before ``c_k`` only, then forecasts ``horizon`` steps from every origin
``c_k - 1 .. c_k + stride - 2``, so every fold scores ``stride`` origins (fewer at the end of the series).
Each fold is an ordinary run folder ``OUT/fold-k``; ``OUT/backtest.json`` and ``OUT/backtest.csv`` hold the
metrics of every fold and of all folds pooled (weighted by their value counts), model and baselines.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from rnnkit.errors import RunExists

KEYS = ("mae", "rmse", "mape", "smape", "mase")


def backtest(config, out: str | Path, folds: int = 5, stride: int | None = None, overrides=(), quiet: bool = True,
             command: str = "") -> dict:
    """Run the backtest of ``config`` (YAML path, mapping or Config) into the new folder ``out``, holding its lock
    (one writer per folder)."""
    from rnnkit.training.lock import folder_taken, run_lock

    out = Path(out)
    if folder_taken(out):
        raise RunExists(f"backtest folder {out} already exists; choose another with --out DIR")
    with run_lock(out, "backtest folder"):
        return _backtest(config, out, folds, stride, overrides, quiet, command)


def _backtest(config, out: Path, folds: int, stride: int | None, overrides, quiet: bool, command: str) -> dict:
    from rnnkit.build import fit, load_config
    from rnnkit.config import ConfigError
    from rnnkit.forecast.metrics import pool
    from rnnkit.tasks import get_task, providers
    from rnnkit.tasks.forecasting import Forecasting

    cfg = load_config(config, overrides)
    if "backtest" not in get_task(cfg.task).verbs:
        need = " or ".join(providers("backtest"))
        raise ConfigError(f"rnnkit backtest needs a config with task: {need} (the config has task: {cfg.task})")
    if folds < 1 or (stride is not None and stride < 1):
        raise ConfigError("--folds and --stride must be >= 1")
    out = Path(out)
    probe = Forecasting(cfg)
    series = probe.read()
    T, H, d = len(series), cfg.data.horizon, cfg.data
    first = T - round(T * d.test_fraction) if d.test_start is None else probe._position(series, d.test_start,
                                                                                           "test_start")
    stride = stride or max(1, (T - first - H + 1) // folds)
    cutoffs = [c for c in (first + k * stride for k in range(min(folds, T))) if c + H <= T]  # folds may be huge
    if not cutoffs:
        raise ConfigError(f"no fold fits: the first cutoff {first} + horizon {H} is past the end ({T} steps); "
                          "raise data.test_fraction")
    dates = series.dates()
    rows, parts, counts, base_parts = [], [], [], {}
    for k, c in enumerate(cutoffs):
        raw = cfg.to_dict()
        raw["name"] = f"{cfg.name}-fold{k}"
        raw["data"].update(test_start=c, test_end=min(c + stride - 1 + H, T))
        _, m = fit(raw, out / f"fold-{k}", quiet=True, command=command or f"backtest fold {k}")
        test = m["test"]
        n_origins = test["count"] // H
        row = {"fold": k, "train_until": dates[c - 1], "first_target": dates[c], "origins": n_origins,
               "values": test["count"]}
        row |= {k2: test[k2] for k2 in KEYS}
        row |= {f"{b}_{k2}": v[k2] for b, v in m["baselines"].items() for k2 in KEYS}
        if "coverage" in test:
            row["coverage"] = test["coverage"]
        rows.append(row)
        parts.append({k2: test[k2] for k2 in KEYS + (("coverage",) if "coverage" in test else ())})
        counts.append(test["count"])
        for b, v in m["baselines"].items():
            base_parts.setdefault(b, []).append(v)
        if not quiet:
            print(f"fold {k}: trained until {dates[c - 1]}, {n_origins} origins: MASE {test['mase']:.3f} (seasonal "
                  f"naive {m['baselines']['seasonal_naive']['mase']:.3f})")
    overall = {"model": pool(parts, counts), "baselines": {b: pool(v, counts) for b, v in base_parts.items()}}
    result = {"folds": rows, "overall": overall, "horizon": H, "stride": stride, "cutoffs": cutoffs,
              "series_steps": T}
    (out / "backtest.json").write_text(json.dumps(result, indent=1) + "\n")
    with open(out / "backtest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return result


__all__ = ["backtest"]
