"""Statistical forecasting baselines from statsmodels (optional: ``pip install 'rnnkit[baselines]'``): ETS and Theta.

Both forecast from every origin the network is scored on, using only the series up to that origin:

* **ETS** (exponential smoothing, state space; Hyndman et al.): the form is chosen by AICc on the series before
  the test part (the training and validation parts: all the network saw, since validation chose its best epoch)
  among additive errors with no trend or a damped additive trend, and no, additive or (for a positive series)
  multiplicative seasonality of period m; its parameters are fitted once, on that part. At each origin
  the fitted model is run over the series up to the origin (its states updated, its parameters fixed) and
  forecasts the horizon.
* **Theta** (Assimakopoulos & Nikolopoulos 2000, as statsmodels' ``ThetaModel``: classical multiplicative
  deseasonalising where it tests seasonal, then SES with drift): refitted at every origin on the series up to it
  (two parameters, in closed form and one-dimensional search: cheap), since statsmodels cannot run a fitted
  Theta model over new data.

statsmodels rather than statsforecast: it needs no numba (whose compilation would cost tens of seconds on
the first run of every process) and brings scipy and pandas only.
"""

from __future__ import annotations

import warnings

import numpy as np


def available() -> bool:
    """Whether statsmodels imports."""
    try:
        import statsmodels  # noqa: F401
    except ImportError:
        return False
    return True


def _specs(y: np.ndarray, m: int) -> list[dict]:
    seasonal = [None]
    if m > 1 and len(y) >= 2 * m + 2:
        seasonal.append("add")
        if np.all(y > 0):
            seasonal.append("mul")
    out = []
    for trend in (None, "add"):
        for season in seasonal:
            out.append({"error": "add", "trend": trend, "damped_trend": trend is not None, "seasonal": season,
                        "seasonal_periods": m if season else None})
    return out


def ets_forecasts(history: np.ndarray, train_end: int, origins: np.ndarray, horizon: int, m: int) -> np.ndarray:
    """Forecasts (N, H) from each origin (an index into ``history``) of the ETS model fitted on
    ``history[:train_end]`` (the caller passes the end of the part before the test split)."""
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    y_train = np.asarray(history[:train_end], np.float64)
    best, best_fit = None, None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for spec in _specs(y_train, m):
            try:
                fit = ETSModel(y_train, **spec).fit(disp=False)
            except Exception:  # a form that cannot be fitted to this series is simply not a candidate
                continue
            if np.isfinite(fit.aicc) and (best_fit is None or fit.aicc < best_fit.aicc):
                best, best_fit = spec, fit
        if best is None:
            raise ValueError("no ETS form could be fitted to the training part")
        out = np.empty((len(origins), horizon))
        for i, t in enumerate(np.asarray(origins, np.int64)):
            res = ETSModel(np.asarray(history[: t + 1], np.float64), **best).smooth(best_fit.params)
            out[i] = res.forecast(horizon)
    return out


def theta_forecasts(history: np.ndarray, origins: np.ndarray, horizon: int, m: int) -> np.ndarray:
    """Forecasts (N, H) from each origin of statsmodels' Theta model refitted on the series up to it."""
    from statsmodels.tsa.forecasting.theta import ThetaModel

    out = np.empty((len(origins), horizon))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, t in enumerate(np.asarray(origins, np.int64)):
            y = np.asarray(history[: t + 1], np.float64)
            season = m if m > 1 and len(y) >= 2 * m else None
            deseason = season is not None and bool(np.all(y > 0))
            fit = ThetaModel(y, period=season, deseasonalize=deseason).fit()
            out[i] = np.asarray(fit.forecast(horizon))
    return out


__all__ = ["available", "ets_forecasts", "theta_forecasts"]
