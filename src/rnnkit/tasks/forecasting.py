"""Time-series forecasting: a series (CSV, array or the embedded sunspots) -> honest multi-step forecasts.

Data (:mod:`rnnkit.data.series`): the series is put on a regular calendar, gaps are reported and filled only
as ``data.fill`` says, then split *by time* into train | val | test (test last). The scaler is fitted on the
train part only. Windows of ``lookback`` steps end at a forecast origin t; the targets are the next
``horizon`` values. Validation and test windows may read history from earlier parts, never the future.

Model: rnnkit RNN/LSTM/GRU over the window -> last state -> Linear head emitting ``S`` steps x ``K`` numbers:
``strategy: direct`` S = horizon; ``recursive`` S = 1, fed back ``horizon`` times. K is 1 for ``mse``/``mae``,
one per quantile for ``quantile`` (pinball loss), 2 for ``gaussian`` (mean and scale, negative log-likelihood).
With ``data.relative`` the target inputs and outputs are offsets from the window's last value (for trends).

Evaluation inverts the scaling and scores MAE, RMSE, MAPE, sMAPE and MASE, plus interval coverage, next to
the naive, seasonal-naive and training-mean baselines on exactly the same windows.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rnnkit.config import MAX_FORECAST, Config, ConfigError, DataConfig, ModelConfig, absent
from rnnkit.layers import Dropout
from rnnkit.tasks import register_task
from rnnkit.tasks.base import ExportSpec, StepResult, Task


@dataclass
class ForecastModelConfig(ModelConfig):
    loss: Literal["mse", "mae", "quantile", "gaussian"] = "mse"
    quantiles: list = field(default_factory=lambda: [0.1, 0.5, 0.9])  # loss: quantile (must hold 0.5)
    interval: float = 0.8  # loss: gaussian: level of the prediction interval
    head_dropout: float = 0.0
    shrink: float = 0.0  # with relative outputs or a seasonal base: forecasts move this share of the way from the
    #   network's back to the base it corrects (the last adjusted value, or seasonal naive), when predicting only;
    #   1 is the base alone. A combination of the network and the simple forecast, chosen by backtest

    def check(self) -> None:
        super().check()
        if isinstance(self.shrink, bool) or not isinstance(self.shrink, int | float) or not 0 <= self.shrink <= 1:
            raise ConfigError(f"model.shrink must be a number in [0, 1], got {self.shrink!r}")
        q = self.quantiles
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in q):
            raise ConfigError(f"model.quantiles must be a list of numbers in (0, 1), got {q}")
        if self.loss == "quantile" and (0.5 not in q or any(not 0 < v < 1 for v in q) or sorted(set(q)) != q):
            raise ConfigError(f"model.quantiles must be increasing values in (0, 1) including 0.5, got {q}")
        if not 0 < self.interval < 1:
            raise ConfigError(f"model.interval must be in (0, 1), got {self.interval}")
        if not 0.0 <= self.head_dropout < 1.0:
            raise ConfigError(f"model.head_dropout must be in [0, 1), got {self.head_dropout}")


@dataclass
class ForecastDataConfig(DataConfig):
    modality: ClassVar[str] = "series"
    source: str = "embedded"  # csv, array, embedded, or any registered series source
    name: str = "sunspots"  # embedded series
    values: list | None = None  # source: array: the series itself
    date_col: str | None = None  # csv: the date column (ISO dates or whole years); null: rows are steps
    target: str | None = None  # csv: the column to forecast; null: the only remaining column
    covariates: list = field(default_factory=list)  # csv: extra input columns (past values only)
    freq: Literal["D", "W", "M", "Q", "Y"] | None = None  # null: inferred from the dates
    resample: Literal["W", "M", "Q", "Y"] | None = None  # average the values into this frequency
    fill: Literal["interpolate", "ffill", "error"] = "error"  # what to do with gaps (NaN, missing dates)
    lookback: int = 24  # input window length
    horizon: int = 1  # steps forecast from each origin
    strategy: Literal["direct", "recursive"] = "direct"
    scaler: Literal["standard", "minmax", "none"] = "standard"
    transform: Literal["none", "log", "boxcox"] = "none"  # of the target before scaling (fitted on train, inverted)
    relative: bool = False  # target inputs/outputs relative to the window's last value
    deseasonalize: Literal["none", "difference", "additive", "multiplicative", "ets"] = "none"  # difference:
    #   outputs are offsets from the value one season before each step (the network corrects seasonal naive;
    #   lookback >= season); additive / multiplicative: a seasonal profile fitted on the training part (classical
    #   decomposition, after data.transform) is removed from the target before the network and put back on every
    #   forecast; ets: a multiplicative season updated online by exponential smoothing (ETS(A,N,M) fitted on the
    #   training part, needs statsmodels), so it follows a season that drifts
    season: int | None = None  # seasonal period m (MASE, seasonal naive); null: from the frequency
    test_fraction: float = 0.2  # the last part of the series
    test_start: object = None  # int position or date string ('1921'): test targets start here
    test_end: object = None  # int position or date string: ... and end before here

    def check(self) -> None:
        from rnnkit.data.series import EMBEDDED_SERIES

        self.check_source()
        if self.source == "csv" and (not self.path or absent(self.path)):
            raise ConfigError(f"data.path: give the CSV file for source: csv (not found: {self.path})")
        if self.source == "array" and not self.values:
            raise ConfigError("data.values: give the series as a list of numbers for source: array")
        if self.source == "embedded" and self.name not in EMBEDDED_SERIES:
            raise ConfigError(f"data.name: unknown embedded series '{self.name}'; use {', '.join(EMBEDDED_SERIES)}")
        if self.source != "csv" and (self.date_col or self.target or self.covariates):
            raise ConfigError("data.date_col/target/covariates only apply to source: csv")
        if self.standardize:
            raise ConfigError("data.standardize does not apply to forecasting; use data.scaler: standard")
        if self.normalize != "none":
            raise ConfigError("data.normalize does not apply to forecasting; use data.scaler")
        if not 0.0 <= self.val_fraction < 1.0 or not 0.0 <= self.test_fraction < 1.0:
            raise ConfigError("data.val_fraction and data.test_fraction must be in [0, 1)")
        for key in ("lookback", "horizon", "season", "limit"):
            if getattr(self, key) is not None and getattr(self, key) <= 0:
                raise ConfigError(f"data.{key} must be > 0, got {getattr(self, key)}")
        for key in ("test_start", "test_end"):
            v = getattr(self, key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | str)):
                raise ConfigError(f"data.{key} must be a position (integer) or a date string such as '1921'")


def _rnn_features(rnn: nn.Module, x: torch.Tensor, directions: int) -> torch.Tensor:
    """x (B, L, D) -> (B, dirs*H): the final state of the top layer in each direction."""
    _, state = rnn(x)
    h = state[0] if isinstance(state, tuple) else state  # (layers*dirs, B, H)
    return torch.cat(list(h[-directions:]), dim=-1)


class Forecaster(nn.Module):
    """x (B, L, D) -> (B, S, K): S forecast steps of K numbers each (point, quantiles or mean/scale)."""

    def __init__(self, m: ForecastModelConfig, input_size: int, steps: int, outputs: int) -> None:
        super().__init__()
        from rnnkit.tasks.common import make_rnn

        self.steps, self.outputs, self.directions = steps, outputs, 2 if m.bidirectional else 1
        self.rnn = make_rnn(m, input_size)
        self.drop = Dropout(m.head_dropout)
        self.head = nn.Linear(self.directions * m.hidden_size, steps * outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = _rnn_features(self.rnn, x, self.directions)
        return self.head(self.drop(feats)).unflatten(-1, (self.steps, self.outputs))  # no fixed batch size


class RelativeInput(nn.Module):
    """The forecaster with ``data.relative`` and/or ``data.deseasonalize``: with ``relative`` the window is read
    relative to its last target value; the outputs are offsets from a base that is added back — the window's last
    value, or with ``season`` m (seasonal differencing) the value one season before each forecast step, so the
    network learns corrections to seasonal naive (``base=False``: the outputs are the forecast itself). In eval
    mode only (the training loss always sees the network's own outputs): with ``shrink`` w > 0 the offsets are
    scaled by 1 - w: the point offset (column ``centre``: the mean, or the median quantile) is scaled and every
    other column moves with it, so an interval keeps its width; with ``sort`` the quantile columns are sorted
    (monotone rearrangement, Chernozhukov et al. 2010: separate heads can cross where data are thin, and a sorted
    set is never further from the true quantiles). x (B, L, D) -> (B, S, K) on the scaled level (what the
    exported graph computes)."""

    def __init__(self, model: nn.Module, gaussian: bool, relative: bool = True, season: int | None = None,
                 shrink: float = 0.0, centre: int = 0, base: bool = True, sort: bool = False) -> None:
        super().__init__()
        self.model, self.gaussian, self.relative, self.season = model, gaussian, relative, season
        self.shrink, self.centre, self.base, self.sort = float(shrink), centre, base, sort

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self._offsets(x) if self.base else self.model(x)
        if self.sort and not self.model.training:
            out = out.sort(dim=-1).values
        return out

    def _offsets(self, x: torch.Tensor) -> torch.Tensor:
        last = x[:, -1:, :1]  # (B, 1, 1) the window's last target value
        inp = torch.cat([x[:, :, :1] - last, x[:, :, 1:]], 2) if self.relative else x
        out = self.model(inp)
        if self.shrink and not self.model.training:
            c = self.centre
            move = self.shrink * out[..., c : c + 1]
            out = torch.cat([out[..., :1] - move, out[..., 1:]], 2) if self.gaussian else out - move
        if self.season:  # step h (1-based) adds y one season before it: x[:, L - m + (h - 1) % m]
            m, steps = self.season, out.shape[1]
            index = torch.arange(steps, device=x.device) % m + (x.shape[1] - m)
            base = x[:, index, :1]  # (B, S, 1)
        else:
            base = last
        if self.gaussian:
            return torch.cat([out[..., :1] + base, out[..., 1:]], 2)
        return out + base


@dataclass(frozen=True)
class Windows:
    """Scaled windows: X (N, L, D) float32, Y (N, H) float32 (NaN past the end), ``origins`` (N,) positions in
    ``series`` (the filled series on the original scale, for baselines, dates and plots); with
    ``deseasonalize: ets``, ``season`` (T,) the online seasonal states of ``series`` (``Scaler.ets_states``)."""

    X: torch.Tensor
    Y: torch.Tensor
    origins: np.ndarray
    series: object
    season: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.X)


@register_task("forecasting")
class Forecasting(Task):
    verbs = ("forecast", "backtest")
    model_config = ForecastModelConfig
    data_config = ForecastDataConfig
    metrics = ("loss", "mae", "rmse", "mape", "smape", "mase")

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        self.series = None
        self.scaler = None
        self.input_size, self.season, self.train_mean, self.mase_scale = 1, 1, 0.0, float("nan")
        self.bounds: dict[str, int] = {}
        self.calendar: dict = {}  # freq, anchor, name, covariates of the training series
        self.future: list[dict] | None = None  # set by forecast(), drawn in the report

    @classmethod
    def check_config(cls, cfg: Config) -> None:
        if cfg.data.strategy == "recursive" and cfg.data.covariates:
            raise ConfigError("data.strategy: recursive feeds forecasts back and cannot forecast covariates; "
                              "use strategy: direct with covariates")
        if cfg.model.shrink and not cfg.data.relative and cfg.data.deseasonalize == "none":
            raise ConfigError("model.shrink moves forecasts towards the base the network corrects; set data.relative: "
                              "true or a data.deseasonalize, or leave model.shrink at 0")

    # ---- data ------------------------------------------------------------------------------------------
    @property
    def train_horizon(self) -> int:
        return 1 if self.cfg.data.strategy == "recursive" else self.cfg.data.horizon

    def read(self, source=None):
        """The configured series (``source`` None), a CSV path, an array (T,) / (T, 1+C) or a Series, filled."""
        from rnnkit.data.series import Series, fill_gaps, from_array, read_csv_series
        from rnnkit.data.sources import load_part

        d = self.cfg.data
        if source is None:
            s = load_part("series", d)
        elif isinstance(source, Series):
            s = source
        elif isinstance(source, str | Path):
            s = read_csv_series(source, d.date_col, d.target, d.covariates, d.freq, d.resample,
                                d.options.get("delimiter", ","))
        else:
            a = np.asarray(source, dtype=np.float64)
            s = from_array(a[:, 0], a[:, 1:]) if a.ndim == 2 else from_array(a)
        s = fill_gaps(s, d.fill)
        if d.limit is not None:
            s = s.take(slice(0, d.limit))
        return s

    def _position(self, s, value, key: str) -> int:
        from rnnkit.data import DataError
        from rnnkit.data.series import parse_dates, to_periods

        if isinstance(value, int):
            pos = value if value >= 0 else len(s) + value
        else:
            if s.periods is None:
                raise DataError(f"data.{key}: '{value}' is a date but the series has none; give a position")
            day = parse_dates([str(value)], f"data.{key}")
            pos = int(to_periods(day, s.freq, s.anchor)[0][0] - s.periods[0])
        if not 0 < pos <= len(s):
            raise DataError(f"data.{key}: {value} is outside the series ({len(s)} steps, {s.dates()[0]} .. "
                            f"{s.dates()[-1]}); quote dates ('1921')")
        return pos

    def setup(self) -> None:
        from rnnkit.data import DataError
        from rnnkit.data.series import SEASON, Scaler
        from rnnkit.forecast.metrics import mase_scale

        d = self.cfg.data
        s = self.read()
        T, L, H = len(s), d.lookback, d.horizon
        test_lo = T - round(T * d.test_fraction)
        if d.test_start is not None:
            test_lo = self._position(s, d.test_start, "test_start")
        test_hi = T if d.test_end is None else self._position(s, d.test_end, "test_end")
        val_lo = test_lo - round(d.val_fraction * (T if d.test_start is None else test_lo))
        n_train = val_lo - L - self.train_horizon + 1
        if n_train < 1:
            raise DataError(f"series too short: {T} steps leave {val_lo} for training, but lookback {L} + horizon "
                            f"{self.train_horizon} needs at least {L + self.train_horizon}; lower data.lookback, "
                            "data.horizon or the val/test fractions")
        if d.val_fraction > 0 and test_lo - val_lo < H:
            raise DataError(f"the validation part ({test_lo - val_lo} steps) is shorter than the horizon {H}; raise "
                            "data.val_fraction, or set it to 0 with training.monitor: train_loss")
        if test_hi - test_lo < H:
            raise DataError(f"the test part ({test_hi - test_lo} steps) is shorter than the horizon {H}; raise "
                            "data.test_fraction or move data.test_start")
        self.series, self.bounds = s, {"train_end": val_lo, "val_end": test_lo, "test_end": test_hi}
        cols = np.concatenate([s.y[:, None], s.X], 1)
        if d.transform != "none" and not np.all(s.y > 0):
            at = int(np.argmin(s.y))
            raise DataError(f"data.transform: {d.transform} needs a positive series, but it reaches {s.y[at]:g} at "
                            f"{s.dates(np.array([at]))[0] if s.periods is not None else f'step {at}'}; use "
                            "data.transform: none (or shift the series above 0)")
        self.season = d.season or (SEASON[s.freq] if s.freq else 1)
        seasonal = d.deseasonalize if d.deseasonalize in ("additive", "multiplicative", "ets") else "none"
        self.scaler = Scaler(d.scaler, target=d.transform, seasonal=seasonal)
        if seasonal != "none":
            self._check_profile(s, val_lo)
        try:
            self.scaler.fit(cols[:val_lo], self._phase(s, np.arange(val_lo)), self.season)
        except (ValueError, np.linalg.LinAlgError) as exc:
            if seasonal != "ets":
                raise
            raise DataError(f"data.deseasonalize: ets could not fit exponential smoothing to the training part "
                            f"({str(exc)[:100]}); use deseasonalize: multiplicative") from exc
        self.input_size = cols.shape[1]
        if d.deseasonalize == "difference" and d.lookback < self.season:
            raise ConfigError(f"data.deseasonalize: difference reads the value one season (m = {self.season}) back in "
                              f"the window, but data.lookback is {d.lookback}; set data.lookback >= {self.season}")
        if self.season >= val_lo:
            raise DataError(f"data.season {self.season} is not shorter than the training part of the series "
                            f"({val_lo} steps); give a longer series or a shorter season")
        self.train_mean, self.mase_scale = float(s.y[:val_lo].mean()), mase_scale(s.y[:val_lo], self.season)
        self.calendar = {"freq": s.freq, "anchor": s.anchor, "name": s.name, "covariates": s.covariates}
        ranges = {"train": (L - 1, val_lo - self.train_horizon), "val": (val_lo - 1, test_lo - H),
                  "test": (test_lo - 1, test_hi - H)}
        self.splits = {}
        for name, (lo, hi) in ranges.items():
            lo = max(lo, L - 1)
            if hi > lo and not (name == "val" and d.val_fraction == 0):
                horizon = self.train_horizon if name == "train" else H
                self.splits[name] = self.make_windows(s, np.arange(lo, hi), horizon)
        if "test" not in self.splits:
            raise DataError(f"no test window: the test part needs {L} steps of history before it; lower "
                            "data.lookback or move data.test_start later")

    def _check_profile(self, s, val_lo: int) -> None:
        """Refuse a seasonal profile that cannot be fitted on the training part (one line naming the fix)."""
        from rnnkit.data import DataError
        from rnnkit.data.series import profile_min_steps

        d, m = self.cfg.data, self.season
        if m < 2:
            raise ConfigError(f"data.deseasonalize: {d.deseasonalize} needs a seasonal period m >= 2 (m = {m}); set "
                              "data.season")
        if val_lo < profile_min_steps(m):
            raise DataError(f"data.deseasonalize: {d.deseasonalize} fits a seasonal profile (m = {m}) on the training "
                            f"part, which needs at least {profile_min_steps(m)} steps but has {val_lo}; give a longer "
                            "series or lower data.val_fraction/test_fraction")
        if d.deseasonalize in ("multiplicative", "ets") and d.transform != "none":
            raise ConfigError(f"data.deseasonalize: {d.deseasonalize} after data.transform: {d.transform}: the "
                              "transform already makes a multiplicative season additive; use deseasonalize: additive")
        if d.deseasonalize in ("multiplicative", "ets") and not np.all(s.y[:val_lo] > 0):
            raise DataError(f"data.deseasonalize: {d.deseasonalize} divides by the season, so the training part must "
                            "be positive; use deseasonalize: additive")
        if d.deseasonalize == "ets":
            from rnnkit.forecast import statistical
            from rnnkit.tasks.baselines import EXTRA

            if not statistical.available():
                raise ConfigError(f"data.deseasonalize: ets fits exponential smoothing with statsmodels: {EXTRA}")

    def _phase(self, s, positions: np.ndarray) -> np.ndarray:
        """Each position's phase in the season (0 .. m-1): from the calendar when the series has dates (so new
        history lines up with the training series), else counted from the series' first value."""
        first = int(s.periods[0]) if s.periods is not None else 0
        return (first + np.asarray(positions, np.int64)) % self.season

    def _target_phase(self, data: Windows, steps: int) -> np.ndarray:
        """(N, steps) the phases of the values forecast from ``data``'s origins."""
        return self._phase(data.series, data.origins[:, None] + 1 + np.arange(steps))

    def _inverse(self, data: Windows, z: np.ndarray) -> np.ndarray:
        """Scaled targets or forecasts (N, steps) from ``data``'s origins -> the original scale."""
        if data.season is not None:
            first = self._phase(data.series, np.zeros(1))[0]
            return self.scaler.inverse(z, factors=self.scaler.ets_ahead(data.season, first, data.origins, z.shape[1]))
        return self.scaler.inverse(z, phase=self._target_phase(data, z.shape[1]))

    def make_windows(self, s, origins: np.ndarray, horizon: int) -> Windows:
        """Windows at ``origins``; with ``deseasonalize: ets`` each input is divided by its season as known just
        before it, and each target by the season as known at its window's origin (nothing later)."""
        from rnnkit.data.series import windows

        cols, phase, prior, post = np.concatenate([s.y[:, None], s.X], 1), self._phase(s, np.arange(len(s))), None, None
        if self.scaler.seasonal == "ets":
            prior, post = self.scaler.ets_states(s.y, phase)
        z = self.scaler.transform(cols, phase, prior)
        X, Y = windows(z, origins, self.cfg.data.lookback, horizon)
        if post is not None:
            ahead = np.asarray(origins, np.int64)[:, None] + np.arange(1, horizon + 1)
            y = np.concatenate([s.y, np.full(horizon, np.nan)])[ahead]
            f = self.scaler.ets_ahead(post, phase[0], origins, horizon)
            Y = ((y / f - self.scaler.shift[0]) / self.scaler.scale[0]).astype(np.float32)
        return Windows(torch.from_numpy(X), torch.from_numpy(Y), origins, s, post)

    def as_input(self, data, where: str = "input", labels: bool = True) -> Windows:
        """A CSV path, array or Series -> windows: every full window (``labels``) or one at the last value."""
        from rnnkit.data import DataError

        if isinstance(data, Windows):
            return data
        s = self.read(data)
        L, H = self.cfg.data.lookback, self.cfg.data.horizon
        if 1 + s.X.shape[1] != self.input_size:
            raise DataError(f"{where} has {s.X.shape[1]} covariates but the model was trained with "
                            f"{self.input_size - 1}; give the same columns")
        if len(s) < L + (H if labels else 0):
            raise DataError(f"{where} has {len(s)} steps; the model needs at least lookback {L}"
                            + (f" + horizon {H}" if labels else "") + " steps")
        origins = np.arange(L - 1, len(s) - H) if labels else np.array([len(s) - 1])
        return self.make_windows(s, origins, H)

    def state(self) -> dict:
        return {"scaler": self.scaler.state(), "input_size": self.input_size, "season": self.season,
                "train_mean": self.train_mean, "mase_scale": self.mase_scale, "calendar": self.calendar,
                "bounds": self.bounds}

    def load_state(self, state: dict) -> None:
        from rnnkit.data.series import Scaler

        self.scaler, self.input_size = Scaler.from_state(state["scaler"]), state["input_size"]
        self.season, self.train_mean, self.mase_scale = state["season"], state["train_mean"], state["mase_scale"]
        self.calendar, self.bounds = state["calendar"], state["bounds"]

    def summary(self) -> dict:
        from rnnkit.data.series import gaps

        s, d = self.series, self.cfg.data
        dates = s.dates()
        out = {"series": s.name, "steps": len(s), "freq": s.freq, "start": dates[0], "end": dates[-1],
               "covariates": s.covariates, "season": self.season, "lookback": d.lookback, "horizon": d.horizon,
               "strategy": d.strategy, "windows": {k: len(v) for k, v in self.splits.items()},
               "test_starts": dates[self.bounds["val_end"]], "gaps_left": gaps(s)["missing"]}
        if self.scaler is not None and self.scaler.seasonal != "none":  # by phase, on the transformed scale
            out["seasonal_profile"] = {"kind": self.scaler.seasonal,
                                       "by_phase": np.round(self.scaler.profile, 4).tolist()}
            if self.scaler.seasonal == "ets":  # the profile is the season at the end of the training part
                out["seasonal_profile"] |= {k: round(self.scaler.ets[k], 4) for k in ("alpha", "gamma")}
        return out | {"notes": s.notes}

    # ---- model and training ----------------------------------------------------------------------------
    @property
    def num_outputs(self) -> int:
        m = self.cfg.model
        return {"quantile": len(m.quantiles), "gaussian": 2}.get(m.loss, 1)

    def build_model(self) -> nn.Module:
        return Forecaster(self.cfg.model, self.input_size, self.train_horizon, self.num_outputs)

    def make_batch(self, data: Windows, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return data.X[idx], data.Y[idx]

    def _wrap(self, model: nn.Module) -> nn.Module:
        """The model with relative inputs / a seasonal base as the config says, and sorted quantiles (itself
        without any of these)."""
        d, m = self.cfg.data, self.cfg.model
        base = d.relative or d.deseasonalize != "none"
        if not base and m.loss != "quantile":
            return model
        season = self.season if d.deseasonalize == "difference" else None
        centre = m.quantiles.index(0.5) if m.loss == "quantile" else 0
        return RelativeInput(model, m.loss == "gaussian", d.relative, season, m.shrink, centre, base,
                             sort=m.loss == "quantile")

    def _run(self, model: nn.Module, X: torch.Tensor) -> torch.Tensor:
        """X (B, L, D) scaled -> outputs (B, S, K) on the scaled level (relative inputs handled here)."""
        return self._wrap(model)(X)

    def export_spec(self, model: nn.Module, data: Windows | None) -> ExportSpec:
        L = self.cfg.data.lookback
        x = data.X[:8] if data is not None and len(data) else torch.randn(4, L, self.input_size)
        module = self._wrap(model)
        what = {"quantile": "quantiles", "gaussian": "mean and scale"}.get(self.cfg.model.loss, "point forecast")
        return ExportSpec(module, (x.float(),), ["x"], ["forecast"], {"x": {0: "batch", 1: "time"}},
                          f"x (batch, lookback={L}, {self.input_size}) float32 windows on the run's scaled level "
                          f"(the scaler is in the run's state) -> (batch, {self.train_horizon} steps, {what})")

    def _loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Summed loss of outputs (B, S, K) against targets (B, S)."""
        m = self.cfg.model
        if m.loss == "mse":
            return F.mse_loss(out[..., 0], y, reduction="sum")
        if m.loss == "mae":
            return F.l1_loss(out[..., 0], y, reduction="sum")
        if m.loss == "gaussian":
            sigma = F.softplus(out[..., 1]) + 1e-3
            return F.gaussian_nll_loss(out[..., 0], y, sigma**2, full=True, reduction="sum")
        q = torch.tensor(m.quantiles, dtype=out.dtype, device=out.device)
        e = y[..., None] - out  # (B, S, Q)
        return torch.maximum(q * e, (q - 1) * e).sum() / len(m.quantiles)

    def _point_interval(self, out: torch.Tensor):
        """Outputs (B, S, K) of :meth:`_run` in eval mode -> point (B, S) and interval bounds (B, S) or None.
        Quantiles arrive sorted: the wrapped model sorts them (:class:`RelativeInput`), after an ensemble has
        averaged its members."""
        m = self.cfg.model
        if m.loss == "quantile":
            return out[..., m.quantiles.index(0.5)], out[..., 0], out[..., -1]
        if m.loss == "gaussian":
            z = float(torch.special.ndtri(torch.tensor((1 + m.interval) / 2, dtype=torch.float64)))
            sigma = F.softplus(out[..., 1]) + 1e-3
            return out[..., 0], out[..., 0] - z * sigma, out[..., 0] + z * sigma
        return out[..., 0], None, None

    @property
    def interval_level(self) -> float | None:
        m = self.cfg.model
        return {"quantile": m.quantiles[-1] - m.quantiles[0], "gaussian": m.interval}.get(m.loss)

    def step(self, model: nn.Module, batch, device: torch.device) -> StepResult:
        X, Y = (t.to(device, non_blocking=True) for t in batch)
        out = self._run(model, X).float()
        Y = Y[:, : out.shape[1]]  # recursive: the model's one step (validation windows hold the whole horizon)
        return StepResult(self._loss(out, Y), Y.numel())

    def rollout(self, model: nn.Module, X: torch.Tensor, steps: int) -> torch.Tensor:
        """Outputs (N, steps, K) from windows X (N, L, D), feeding point forecasts back after every S steps."""
        from rnnkit.data import DataError

        outs, done, L = [], 0, X.shape[1]
        while done < steps:
            out = self._run(model, X).float()
            outs.append(out)
            done += out.shape[1]
            if done < steps:
                if X.shape[2] > 1:
                    raise DataError(f"forecasting {steps} steps with covariates needs their future values; "
                                    f"ask for at most horizon {out.shape[1]} steps")
                point = self._point_interval(out)[0]
                X = torch.cat([X, point[..., None].to(X.dtype)], 1)[:, -L:]
        return torch.cat(outs, 1)[:, :steps]

    # ---- evaluation and prediction ---------------------------------------------------------------------
    @torch.no_grad()
    def _outputs(self, model: nn.Module, data: Windows, device: torch.device, steps: int):
        """-> summed loss (on the known targets), point, lower, upper (N, steps) on the original scale."""
        model.eval()
        bs, loss, parts = self.cfg.training.eval_batch_size, 0.0, []
        for i in range(0, len(data), bs):
            X, Y = data.X[i : i + bs].to(device), data.Y[i : i + bs, :steps].to(device)
            out = self.rollout(model, X, steps)
            known = ~torch.isnan(Y).any(1)
            if known.any():
                loss += float(self._loss(out[known], Y[known]))
            parts.append([t.cpu().double().numpy() if t is not None else None for t in self._point_interval(out)])
        pred, lo, hi = (None if parts[0][j] is None else self._inverse(data, np.concatenate([p[j] for p in parts]))
                        for j in range(3))
        return loss, pred, lo, hi

    def evaluate(self, model: nn.Module, data: Windows, device: torch.device) -> dict:
        from rnnkit.forecast.metrics import interval_metrics, point_metrics, score_baselines

        H = self.cfg.data.horizon
        loss, pred, lo, hi = self._outputs(model, data, device, H)
        y = self._inverse(data, data.Y.double().numpy())
        out = {"loss": loss / max(y.size, 1), **point_metrics(y, pred, self.mase_scale)}
        if lo is not None:
            out.update(interval_metrics(y, lo, hi, self.interval_level))
        out["mae_by_horizon"] = np.abs(pred - y).mean(0).tolist()
        out["count"], out["horizon"], out["season"] = int(y.size), H, self.season
        base = score_baselines(y, data.series.y, data.origins, self.season, self.train_mean, self.mase_scale)
        out["beats_naive"] = out["mae"] < base["naive"]["mae"]
        out["beats_seasonal_naive"] = out["mae"] < base["seasonal_naive"]["mae"]
        out["baselines"] = base
        return out

    def _records(self, data: Windows, pred, lo, hi) -> list[dict]:
        s, level = data.series, self.interval_level
        origin_dates, rows = s.dates(), []
        p0 = s.periods[0] if s.periods is not None else None
        for i, t in enumerate(data.origins.tolist()):
            for h in range(pred.shape[1]):
                when = (s.dates(np.array([p0 + t + h + 1]))[0] if p0 is not None else str(t + h + 1))
                rec = {"origin": origin_dates[t], "step": h + 1, "date": when, "forecast": round(float(pred[i, h]), 6)}
                if lo is not None:
                    pct = round(100 * level)
                    rec[f"lower_{pct}"], rec[f"upper_{pct}"] = round(float(lo[i, h]), 6), round(float(hi[i, h]), 6)
                if t + h + 1 < len(s):
                    rec["actual"] = float(s.y[t + h + 1])
                rows.append(rec)
        return rows

    def predict(self, model: nn.Module, data: Windows, device: torch.device) -> list[dict]:
        """One record per origin and step: origin, step, date, forecast, [lower_P, upper_P], [actual]."""
        _, pred, lo, hi = self._outputs(model, data, device, self.cfg.data.horizon)
        return self._records(data, pred, lo, hi)

    def forecast(self, model: nn.Module, steps: int, device: torch.device, history=None) -> list[dict]:
        """Continue ``history`` (default: the configured series, which :meth:`setup` must have loaded) for
        ``steps`` steps past its last observation (beyond the horizon, forecasts are fed back)."""
        if not 1 <= steps <= MAX_FORECAST:
            raise ConfigError(f"steps to forecast must be in [1, {MAX_FORECAST}], got {steps}")
        data = self.as_input(history if history is not None else self.series, labels=False)
        _, pred, lo, hi = self._outputs(model, data, device, steps)
        self.future = self._records(data, pred, lo, hi)
        return self.future

    def combine(self, outputs: list) -> torch.Tensor:  # noqa: D102 - see Objective.combine
        from rnnkit.training.ensemble import mean

        if self.cfg.model.loss == "gaussian":
            raise NotImplementedError  # a mixture of Gaussians is not one Gaussian: refused in the config check
        return mean(outputs)

    def finalize_metrics(self, metrics: dict) -> dict:
        """Lift the test baselines to ``metrics["baselines"]``, add ETS and Theta (statsmodels, when installed) on
        the same test origins, and judge the model on MASE against the best baseline (a warning when it loses)."""
        from rnnkit.tasks import baselines

        for split in ("val", "test"):
            if split in metrics and "baselines" in metrics[split]:
                metrics["baselines" if split == "test" else "val_baselines"] = metrics[split].pop("baselines")
        test, data = metrics.get("test", {}), self.splits.get("test")
        if test and data is not None and len(data) and self.cfg.training.baselines:
            metrics["baselines"].update(self._statistical(data, metrics))
        if test and "baselines" in metrics:  # naive, seasonal naive and the mean are always there
            baselines.judge(metrics, "mase", False, "MASE")
        return metrics

    def _statistical(self, data: Windows, metrics: dict) -> dict:
        """ETS and Theta scored on ``data``'s origins and horizon (``baselines_skipped`` says why when not)."""
        from rnnkit.forecast import statistical
        from rnnkit.forecast.metrics import point_metrics
        from rnnkit.tasks import baselines

        if not statistical.available():
            metrics["baselines_skipped"] = {n: f"needs statsmodels: {baselines.EXTRA}" for n in ("ets", "theta")}
            return {}
        y = self._inverse(data, data.Y.double().numpy())
        history, H, out = data.series.y, y.shape[1], {}
        fit_end = self.bounds["val_end"]  # train + val: all the network saw (val chose its best epoch)
        for name, run in (("ets", lambda: statistical.ets_forecasts(history, fit_end, data.origins, H, self.season)),
                          ("theta", lambda: statistical.theta_forecasts(history, data.origins, H, self.season))):
            try:
                out[name] = point_metrics(y, run(), self.mase_scale)
            except statistical.TooMuchWork as exc:
                metrics.setdefault("baselines_skipped", {})[name] = str(exc)
            except Exception as exc:  # a baseline that cannot be fitted is reported, not fatal
                metrics.setdefault("baselines_skipped", {})[name] = f"could not be fitted: {str(exc)[:120]}"
        return out

    # ---- report ----------------------------------------------------------------------------------------
    def report_sections(self, run_dir: Path, metrics: dict, model: nn.Module | None = None) -> list:
        from rnnkit.report import Section, have_matplotlib, png, table

        test, base = metrics.get("test"), metrics.get("baselines")
        if not test or not base:
            return []
        keys = ["mae", "rmse", "mape", "smape", "mase"]
        rows = [["model", *[test[k] for k in keys]]] + [[n, *[b[k] for k in keys]] for n, b in base.items()]
        sections = []
        if not test.get("beats_seasonal_naive", True):
            sections.append(Section("WARNING: the model does not beat seasonal naive",
                                    '<p style="color:#b00;font-size:1.3em;font-weight:bold">On the test split the '
                                    f"model's MAE {test['mae']:.4g} is not below the seasonal-naive MAE "
                                    f"{base['seasonal_naive']['mae']:.4g} (m = {test['season']}): its forecasts "
                                    "are worth less than repeating last season's value.</p>"))
        flag, best = "", metrics.get("best_baseline")
        if metrics.get("beats_baselines") is False and best in base:
            flag = ('<p style="color:#b00;font-size:1.3em;font-weight:bold">The model does not beat the '
                    f"{best} baseline on the test split (MASE {test['mase']:.4g} against {base[best]['mase']:.4g}): "
                    "a simpler model does as well on this data.</p>")
        extra = "".join(f"<p>Skipped: {n} ({why}).</p>" for n, why in (metrics.get("baselines_skipped") or {}).items())
        if "coverage" in test:
            extra += (f"<p>{round(100 * test['interval_level'])} % prediction intervals cover "
                     f"{100 * test['coverage']:.1f} % of the test values (mean width "
                     f"{test['interval_width']:.4g}).</p>")
        sections.append(Section("Forecast accuracy (test) against baselines",
                                flag + table(rows, ["forecast", *[k.upper() for k in keys]])
                                + f"<p>{test['count']} values: every test origin x horizon {test['horizon']}; MASE "
                                f"scaled by the in-sample seasonal-naive MAE (m = {test['season']}).</p>" + extra))
        data = self.splits.get("test")
        if model is not None and data is not None and len(data):
            device = next(model.parameters()).device
            _, pred, lo, hi = self._outputs(model, data, device, self.cfg.data.horizon)
            from rnnkit.tasks.common import write_predictions

            write_predictions(self._records(data, pred, lo, hi), run_dir / "test_forecasts.csv")
            if have_matplotlib():
                sections.append(Section("Forecasts", png(self.forecast_figure(data, pred, lo, hi))
                                        + "<p>All test forecasts with intervals: <code>test_forecasts.csv</code>.</p>"))
        return sections

    def forecast_figure(self, data: Windows, pred: np.ndarray, lo: np.ndarray | None, hi: np.ndarray | None):
        """The series with the test forecasts (pred, lo, hi: (origins, horizon)) and any future forecast."""
        from rnnkit.report import figure

        s = data.series
        fig = figure(9.6, 3.8, grid=(1, 1), left=0.9)
        ax = fig.add_subplot()
        ax.plot(np.arange(len(s)), s.y, color="0.45", lw=1, label="history")
        level = f"{round(100 * self.interval_level)} % interval" if lo is not None else ""
        if len(data.origins) < 3:  # few origins (a test split one horizon long): each origin's whole path
            for i, origin in enumerate(data.origins):
                x = origin + 1 + np.arange(pred.shape[1])
                ax.plot(x, pred[i], "-o" if len(x) == 1 else "-", ms=3, color=f"C{i}", lw=1.2,
                        label=f"test forecast, 1-{pred.shape[1]} ahead")
                if lo is not None:
                    ax.fill_between(x, lo[i], hi[i], color=f"C{i}", alpha=0.2, label=level)
        else:  # the 1-step and the last-step forecasts of every origin
            for h, style in ((0, "-"), (pred.shape[1] - 1, "--"))[: 1 if pred.shape[1] == 1 else 2]:
                x = data.origins + h + 1
                ax.plot(x, pred[:, h], style, color="C0" if h == 0 else "C1", lw=1.2,
                        label=f"test forecast, {h + 1} ahead")
                if lo is not None:
                    ax.fill_between(x, lo[:, h], hi[:, h], color="C0" if h == 0 else "C1", alpha=0.2,
                                    label=f"{level}, {h + 1} ahead")
        if self.future:
            x = len(s) + np.arange(len(self.future))
            ax.plot(x, [r["forecast"] for r in self.future], color="C3", lw=1.4, label="forecast")
            keys = [k for k in self.future[0] if k.startswith(("lower_", "upper_"))]
            if keys:
                ax.fill_between(x, [r[keys[0]] for r in self.future], [r[keys[1]] for r in self.future], color="C3",
                                alpha=0.2)
        ticks = np.linspace(0, len(s) - 1 + (len(self.future) if self.future else 0), 8).astype(int)
        if s.periods is not None:
            ax.set_xticks(ticks, s.dates(s.periods[0] + ticks), fontsize=8)
        ax.axvline(data.origins[0] + 0.5, color="k", lw=0.6, ls=":")
        ax.set_title(f"{s.name}: history, test forecasts and intervals")
        ax.legend(fontsize=7, loc="upper left")
        return fig


def write_forecast_csv(records: list[dict], path: Path | None) -> None:
    """Forecast records as CSV to ``path`` (or stdout)."""
    import csv

    f = open(path, "w", newline="") if path is not None else sys.stdout  # noqa: SIM115
    try:
        w = csv.DictWriter(f, fieldnames=list(records[0]))
        w.writeheader()
        w.writerows(records)
    finally:
        if path is not None:
            f.close()


def forecast(run, steps: int) -> list[dict]:
    """Continue a trained run's series ``steps`` steps past its last observation (reloads the data)."""
    task: Forecasting = run.task
    state = task.state()
    task.setup()
    task.load_state(state)
    return task.forecast(run.model, steps, run.device)


__all__ = ["ForecastDataConfig", "ForecastModelConfig", "Forecaster", "Forecasting", "Windows", "forecast",
           "write_forecast_csv"]
