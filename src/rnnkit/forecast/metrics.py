"""Forecast accuracy on the original scale and the baselines every forecast is compared with.

All functions take ``y`` (N, H) true values and ``pred`` (N, H) forecasts for N origins and H steps ahead.
``mase`` divides the MAE by the in-sample MAE of the seasonal-naive one-step forecast on the training
part (Hyndman & Koehler 2006), so MASE < 1 beats what seasonal naive achieved in-sample.
"""

from __future__ import annotations

import numpy as np


def mase_scale(train: np.ndarray, m: int) -> float:
    """Mean |y[i] - y[i-m]| over the training part ``train`` (T,); NaN when too short or constant."""
    if len(train) <= m:
        return float("nan")
    d = float(np.mean(np.abs(train[m:] - train[:-m])))
    return d if d > 0 else float("nan")


def point_metrics(y: np.ndarray, pred: np.ndarray, scale: float) -> dict:
    """MAE, RMSE, MAPE (%, zeros of y skipped), sMAPE (%, 0/0 counted as 0) and MASE over all N x H values."""
    e = pred - y
    nz = y != 0
    denom = np.abs(y) + np.abs(pred)
    smape = np.divide(2 * np.abs(e), denom, out=np.zeros_like(e), where=denom > 0)
    mae = float(np.mean(np.abs(e)))
    return {"mae": mae, "rmse": float(np.sqrt(np.mean(e**2))),
            "mape": float(100 * np.mean(np.abs(e[nz] / y[nz]))) if nz.any() else float("nan"),
            "smape": float(100 * np.mean(smape)), "mase": mae / scale}


def interval_metrics(y: np.ndarray, lo: np.ndarray, hi: np.ndarray, level: float) -> dict:
    """Empirical coverage of the [lo, hi] intervals (nominal ``level``) and their mean width."""
    inside = (y >= lo) & (y <= hi)
    return {"coverage": float(inside.mean()), "interval_level": float(level), "interval_width": float((hi - lo).mean())}


def baseline_forecasts(history: np.ndarray, origins: np.ndarray, horizon: int, m: int, train_mean: float) -> dict:
    """Forecasts (N, H) from each origin t of the full series ``history`` (T,): ``naive`` y[t],
    ``seasonal_naive`` y[t + h - m * ceil(h / m)] (the last value of the same season), ``mean`` the training mean."""
    h = np.arange(1, horizon + 1)
    t = np.asarray(origins, np.int64)[:, None]
    back = t + h - m * np.ceil(h / m).astype(np.int64)
    if back.size and back.min() < 0:
        back = np.maximum(back, 0)  # too little history for one season: fall back to the first value
    return {"naive": np.repeat(history[t], horizon, 1), "seasonal_naive": history[back],
            "mean": np.full((len(t), horizon), train_mean)}


def score_baselines(y: np.ndarray, history: np.ndarray, origins: np.ndarray, m: int, train_mean: float,
                    scale: float) -> dict:
    """:func:`point_metrics` of each baseline on the same origins and horizon as the model."""
    preds = baseline_forecasts(history, origins, y.shape[1], m, train_mean)
    return {name: point_metrics(y, p, scale) for name, p in preds.items()}


def pool(parts: list[dict], counts: list[int]) -> dict:
    """Metrics of several folds pooled by their value counts (RMSE through the mean squared error)."""
    w = np.asarray(counts, np.float64) / max(sum(counts), 1)
    out = {}
    for k in parts[0]:
        vals = np.asarray([p[k] for p in parts], np.float64)
        out[k] = float(np.sqrt(np.sum(w * vals**2))) if k == "rmse" else float(np.sum(w * vals))
    return out


__all__ = ["baseline_forecasts", "interval_metrics", "mase_scale", "point_metrics", "pool", "score_baselines"]
