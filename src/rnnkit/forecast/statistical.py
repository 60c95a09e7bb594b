"""Statistical forecasting baselines from statsmodels (optional: ``pip install 'rnnkit[baselines]'``): ETS and Theta.

Both forecast from every origin the network is scored on, using only the series up to that origin:

* **ETS** (exponential smoothing, state space; Hyndman et al.): the form is chosen by AICc on the series before
  the test part (the training and validation parts: all the network saw, since validation chose its best epoch)
  among additive errors with no trend or a damped additive trend, and no, additive or (for a positive series)
  multiplicative seasonality of period m; its parameters are fitted once, on that part. The fitted model is
  run over the series (its states updated, its parameters fixed), and from each origin's states it forecasts
  the horizon: what it would forecast from the series up to that origin alone.
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
        # The filter is causal, so one pass over the series up to the last origin holds the states at every
        # origin; each forecast is simulated (without errors) from its origin's states. This is what a model run
        # over history[:t + 1] alone forecasts, to the last bit, and costs one pass instead of one per origin
        # (statsmodels builds a results object with a numerical Hessian on every pass: 0.5 s each on a weekly
        # series of 2 000 values, so minutes for a test split of 450 origins).
        origins = np.asarray(origins, np.int64)
        out = np.empty((len(origins), horizon))
        if not len(origins):
            return out
        last = int(origins.max())
        res = ETSModel(np.asarray(history[: last + 1], np.float64), **best).smooth(best_fit.params)
        zeros = np.zeros((horizon, 1))
        for i, t in enumerate(origins):
            out[i] = res.simulate(horizon, anchor=int(t) if t < last else "end", random_errors=zeros)
    return out


# Theta refits on the whole history at every origin, so its cost is the sum of those lengths: about 1-2 x 10^-5 s
# a value on one core of the 2-core machine (a weekly series of 2 000 values with 450 test origins, 10^6 values:
# 10 s). 10^7 values is a couple of minutes; an hourly series of 20 000 values with 4 000 test origins (7 x 10^7:
# about 20 minutes, after a training of seconds) is skipped instead, and says so. A count, not a clock, so the
# same run skips it on every machine.
THETA_MAX_VALUES = 10_000_000


class TooMuchWork(ValueError):
    """A baseline whose cost on this test split is out of proportion: skipped, with the reason."""


def theta_forecasts(history: np.ndarray, origins: np.ndarray, horizon: int, m: int) -> np.ndarray:
    """Forecasts (N, H) from each origin of statsmodels' Theta model refitted on the series up to it; raises
    :class:`TooMuchWork` when those refits would read more than ``THETA_MAX_VALUES`` values in all."""
    from statsmodels.tsa.forecasting.theta import ThetaModel

    work = int(np.sum(np.asarray(origins, np.int64) + 1))
    if work > THETA_MAX_VALUES:
        raise TooMuchWork(f"{len(origins)} test origins, each a refit on the whole series up to it: {work:.2g} values "
                          f"read, over the {THETA_MAX_VALUES:.0g} allowed (minutes of fitting); a shorter test split "
                          "(data.test_fraction or data.test_start) scores it")
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


__all__ = ["THETA_MAX_VALUES", "TooMuchWork", "available", "ets_forecasts", "theta_forecasts"]
