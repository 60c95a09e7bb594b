"""Time series for forecasting: reading (CSV, arrays, the embedded sunspots), calendar, gaps, scaling, windows.

A :class:`Series` is one target ``y`` (T,) with optional covariates ``X`` (T, C), all float64 with NaN for
missing values, on a regular calendar: ``periods`` (T,) int64 counts steps of the frequency ``freq``
(``D`` day, ``W`` week, ``M`` month, ``Q`` quarter, ``Y`` year) so a missing date is a missing integer.

    s = read_csv_series("co2_weekly.csv", date_col="date", target="co2")   # 59 NaN, freq W inferred
    s = read_csv_series("co2_weekly.csv", "date", "co2", resample_to="M")  # monthly means
    gaps(s)                                                                  # {"missing": ..., "runs": ...}
    s = fill_gaps(s, "interpolate")

:class:`Scaler` (standard / min-max / none) is fitted on the training part only; :func:`windows` cuts
``(lookback, horizon)`` windows at chosen forecast origins. Only the standard library and NumPy are used.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from rnnkit.data.errors import DataError, csv_rows
from rnnkit.data.sources import register_source
from rnnkit.errors import ConfigError

FREQS = ("D", "W", "M", "Q", "Y")
SEASON = {"D": 7, "W": 52, "M": 12, "Q": 4, "Y": 1}  # default seasonal period m of each frequency
MAX_VALUE = 1e30  # |value| of a series; float32, which forecasts are made in, ends at 3.4e38
MISSING = {"", "na", "nan", "null", "none", "n/a", "-"}

#: embedded series: name -> (file in rnnkit/data/embedded/, date column, target column, description)
EMBEDDED_SERIES = {
    "sunspots": ("sunspots_yearly.csv", "YEAR", "SUNACTIVITY",
                 "yearly mean sunspot numbers 1700-2008 (309 values, public domain, SIDC via statsmodels)"),
}


@dataclass
class Series:
    """``y`` (T,) float64 target; ``X`` (T, C) float64 covariates; ``periods`` (T,) int64 or None (no dates);
    ``freq`` one of FREQS or None; ``anchor`` the first day of a weekly calendar (datetime64[D] as int)."""

    y: np.ndarray
    X: np.ndarray
    periods: np.ndarray | None = None
    freq: str | None = None
    anchor: int = 0
    name: str = "y"
    covariates: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was done to the data (resampled, filled, trimmed)

    def __len__(self) -> int:
        return len(self.y)

    def take(self, sl: slice) -> Series:
        return replace(self, y=self.y[sl], X=self.X[sl], periods=None if self.periods is None else self.periods[sl],
                       notes=list(self.notes))

    def dates(self, periods: np.ndarray | None = None) -> list[str]:
        """ISO date strings of ``periods`` (default: the series' own); step numbers when undated."""
        p = self.periods if periods is None else np.asarray(periods)
        if p is None:
            return [str(i) for i in range(len(self.y))]
        return [period_date(int(k), self.freq, self.anchor) for k in p]


# ---- calendar ------------------------------------------------------------------------------------------


def period_date(k: int, freq: str, anchor: int = 0) -> str:
    """The ISO date of period ``k`` of ``freq`` (year ``1700``, month ``1958-03``, day ``1958-03-29``)."""
    if freq == "Y":
        return str(np.datetime64(k, "Y"))
    if freq in ("M", "Q"):
        return str(np.datetime64(k * (3 if freq == "Q" else 1), "M"))
    return str(np.datetime64(anchor + 7 * k if freq == "W" else k, "D"))


def parse_dates(raw: list[str], where: str) -> np.ndarray:
    """Date strings -> datetime64[D] (T,). Whole numbers such as ``1700`` or ``1700.0`` are years."""
    out = np.empty(len(raw), "datetime64[D]")
    for i, s in enumerate(raw):
        s = s.strip()
        try:
            v = float(s)
        except ValueError:
            v = None
        if v is not None:  # a number: a whole year, else not a date (DataError is a ValueError: raised outside)
            if not np.isfinite(v) or v != int(v):
                raise DataError(f"{where}, row {i + 2}: '{s}' is not a date (give ISO YYYY-MM-DD or a whole year)")
            if abs(v) > 9999:  # numpy would wrap a larger year round to a nonsense date
                raise DataError(f"{where}, row {i + 2}: year {s[:30]} is outside -9999 to 9999; give ISO "
                                "YYYY-MM-DD dates or years of four digits")
            out[i] = np.datetime64(f"{int(v):04d}", "D")
            continue
        try:
            out[i] = np.datetime64(s[:10], "D")
        except ValueError:
            raise DataError(f"{where}, row {i + 2}: cannot read '{s}' as a date; use ISO YYYY-MM-DD, YYYY-MM or "
                            "a year") from None
    return out


def infer_freq(days: np.ndarray) -> str:
    """The frequency of sorted datetime64[D] dates from the median spacing."""
    if len(days) < 2:
        raise DataError("a series needs at least 2 dates to infer its frequency; set data.freq")
    d = float(np.median(np.diff(np.unique(days.astype(np.int64)))))
    for freq, lo, hi in (("D", 1, 1), ("W", 7, 7), ("M", 28, 31), ("Q", 89, 92), ("Y", 365, 366)):
        if lo <= d <= hi:
            return freq
    raise DataError(f"cannot infer the frequency of dates {d:g} days apart; set data.freq (D, W, M, Q, Y) or "
                    "data.resample")


def to_periods(days: np.ndarray, freq: str, anchor: int | None = None) -> tuple[np.ndarray, int]:
    """datetime64[D] -> (period numbers of ``freq``, weekly anchor day)."""
    if freq == "Y":
        return days.astype("datetime64[Y]").astype(np.int64), 0
    if freq in ("M", "Q"):
        m = days.astype("datetime64[M]").astype(np.int64)
        return (m // 3 if freq == "Q" else m), 0
    d = days.astype(np.int64)
    if freq == "D":
        return d, 0
    anchor = int(d.min()) if anchor is None else anchor
    return (d - anchor) // 7, anchor


def _regular(y: np.ndarray, X: np.ndarray, periods: np.ndarray, where: str, freq: str) -> tuple:
    """Sort by period, refuse duplicates and insert NaN rows for missing periods."""
    order = np.argsort(periods, kind="stable")
    y, X, periods = y[order], X[order], periods[order]
    dup = np.flatnonzero(np.diff(periods) == 0)
    if len(dup):
        raise DataError(f"{where}: {len(dup)} repeated {freq} periods (first near row {order[dup[0]] + 2}); "
                        f"set data.resample: {freq} to average them")
    grid = np.arange(periods[0], periods[-1] + 1)
    full_y = np.full(len(grid), np.nan)
    full_X = np.full((len(grid), X.shape[1]), np.nan)
    full_y[periods - grid[0]], full_X[periods - grid[0]] = y, X
    return full_y, full_X, grid


# ---- reading -------------------------------------------------------------------------------------------


def _number(s: str, where: str, row: int, col: str) -> float:
    if s.strip().lower() in MISSING:
        return np.nan
    try:
        return float(s)
    except ValueError:
        raise DataError(f"{where}, row {row}: column '{col}' holds '{s}', not a number; fix the file or mark it "
                        "missing (empty or NA)") from None


def read_csv_series(path: str | Path, date_col: str | None = None, target: str | None = None,
                    covariates: list[str] | tuple[str, ...] = (), freq: str | None = None,
                    resample_to: str | None = None, delimiter: str = ",") -> Series:
    """A CSV with a header: optional date column, one target column, optional covariate columns.

    ``target`` None: the only column left after the date and covariates. Dates put the rows on a regular
    calendar (missing dates become NaN rows, reported by :func:`gaps`); without dates rows are steps.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"file not found: {path}; check data.path")
    rows = csv_rows(path, delimiter)
    if len(rows) < 2:
        raise DataError(f"{path}: needs a header row and at least one data row")
    header, body = [h.strip() for h in rows[0]], [r for r in rows[1:] if any(c.strip() for c in r)]
    for c in [date_col, target, *covariates]:
        if c is not None and c not in header:
            raise DataError(f"{path}: no column '{c}' (columns: {', '.join(header)}); fix data.date_col, "
                            "data.target or data.covariates")
    if target is None:
        rest = [h for h in header if h != date_col and h not in covariates]
        if len(rest) != 1:
            raise DataError(f"{path}: cannot tell the target among {', '.join(rest)}; set data.target")
        target = rest[0]
    for i, r in enumerate(body):
        if len(r) != len(header):
            raise DataError(f"{path}, row {i + 2}: {len(r)} fields but the header has {len(header)}")
    col = {h: i for i, h in enumerate(header)}
    y = np.array([_number(r[col[target]], str(path), i + 2, target) for i, r in enumerate(body)])
    X = np.array([[_number(r[col[c]], str(path), i + 2, c) for c in covariates] for i, r in enumerate(body)],
                 dtype=np.float64).reshape(len(body), len(covariates))
    s = Series(y, X, name=target, covariates=list(covariates))
    if date_col is None:
        if resample_to is not None:
            raise DataError("data.resample needs dates; set data.date_col")
        return s
    days = parse_dates([r[col[date_col]] for r in body], f"{path}, column '{date_col}'")
    return calendar(s, days, freq, resample_to, str(path))


def calendar(s: Series, days: np.ndarray, freq: str | None, resample_to: str | None, where: str) -> Series:
    """Put ``s`` on a regular calendar of ``freq`` (inferred when None), or average it into ``resample_to``."""
    if resample_to is not None:
        periods, anchor = to_periods(days, resample_to)
        keys, inv = np.unique(periods, return_inverse=True)
        X = np.stack([_mean_by(c, inv, len(keys)) for c in s.X.T] + [np.zeros(len(keys))], 1)[:, :-1]
        y, X, grid = _regular(_mean_by(s.y, inv, len(keys)), X, keys, where, resample_to)
        note = f"resampled to {resample_to} (mean of the values in each period)"
        return replace(s, y=y, X=X, periods=grid, freq=resample_to, anchor=anchor, notes=s.notes + [note])
    freq = freq or infer_freq(np.sort(days))
    periods, anchor = to_periods(days, freq)
    if freq == "W" and np.any((days.astype(np.int64) - anchor) % 7):
        raise DataError(f"{where}: dates are not 7 days apart; set data.resample: W (or M) to average them")
    y, X, grid = _regular(s.y, s.X, periods, where, freq)
    return replace(s, y=y, X=X, periods=grid, freq=freq, anchor=anchor)


def _mean_by(v: np.ndarray, inv: np.ndarray, k: int) -> np.ndarray:
    """Mean of the non-NaN ``v`` in each of ``k`` groups (NaN for a group with none)."""
    ok = ~np.isnan(v)
    total, count = np.zeros(k), np.zeros(k)
    np.add.at(total, inv[ok], v[ok])
    np.add.at(count, inv[ok], 1)
    return np.divide(total, count, out=np.full(k, np.nan), where=count > 0)


def from_array(values, covariates=None, name: str = "y") -> Series:
    """An undated series from ``values`` (T,) and optional covariates (T, C)."""
    y = np.asarray(values, dtype=np.float64)
    if y.ndim != 1 or len(y) == 0:
        raise DataError(f"a series must be a non-empty 1-D array of numbers, got shape {y.shape}")
    X = np.zeros((len(y), 0)) if covariates is None else np.asarray(covariates, dtype=np.float64).reshape(len(y), -1)
    return Series(y, X, name=name, covariates=[f"x{i}" for i in range(X.shape[1])])


def load_embedded_series(name: str = "sunspots") -> Series:
    """An embedded series (no download): ``"sunspots"``, yearly 1700-2008. Provenance: embedded/README.md."""
    if name not in EMBEDDED_SERIES:
        raise DataError(f"unknown embedded series '{name}'; use one of {', '.join(EMBEDDED_SERIES)}")
    file, date_col, target, _ = EMBEDDED_SERIES[name]
    with resources.as_file(resources.files("rnnkit.data") / "embedded" / file) as path:
        if not path.is_file():
            raise DataError(f"embedded series '{name}' is missing ({file}); reinstall rnnkit")
        return read_csv_series(path, date_col, target)


# ---- gaps ----------------------------------------------------------------------------------------------


def gaps(s: Series) -> dict:
    """Missing values of the target and covariates: count, runs, longest run, the first missing date."""
    miss = np.isnan(s.y) | np.isnan(s.X).any(1)
    idx = np.flatnonzero(miss)
    starts = idx[np.r_[True, np.diff(idx) > 1]] if len(idx) else idx
    ends = idx[np.r_[np.diff(idx) > 1, True]] if len(idx) else idx
    return {"missing": int(len(idx)), "runs": int(len(starts)),
            "longest": int((ends - starts).max() + 1) if len(idx) else 0,
            "first": s.dates()[int(idx[0])] if len(idx) else None}


def fill_gaps(s: Series, how: str) -> Series:
    """``error``: refuse any gap; ``interpolate`` (linear) or ``ffill``. Leading/trailing target gaps are trimmed.
    Every series passes here, so here values no forecast can hold are refused: infinite ones (a file's ``inf`` or
    ``1e309``, a generated series that overflowed: the loss was NaN at the first step) and those beyond
    ``MAX_VALUE`` (the network's float32 outputs overflowed when scaled back, so every metric was NaN)."""
    names = list(s.covariates) + [f"column {j}" for j in range(len(s.covariates), s.X.shape[1])]
    columns = [("the target", s.y)] + [(f"covariate '{names[j]}'", c) for j, c in enumerate(s.X.T)]
    for what, v in columns:
        bad = np.flatnonzero(np.abs(v) > MAX_VALUE)  # NaN (a gap) compares False, without a warning
        if bad.size:
            raise DataError(f"series '{s.name}': {what} holds {bad.size} values beyond +-{MAX_VALUE:g} (first "
                            f"{v[bad[0]]:g} at {s.dates()[int(bad[0])]}); rescale the series, or leave those cells "
                            "empty to mark them missing")
    g = gaps(s)
    if not g["missing"]:
        return s
    if how == "error":
        raise DataError(f"series '{s.name}' has {g['missing']} missing values in {g['runs']} gaps (longest "
                        f"{g['longest']} steps, first at {g['first']}); set data.fill: interpolate or ffill")
    ok = np.flatnonzero(~np.isnan(s.y))
    if not len(ok):
        raise DataError(f"series '{s.name}' has no values at all")
    notes = list(s.notes)
    if ok[0] > 0 or ok[-1] < len(s) - 1:
        notes.append(f"trimmed {ok[0]} missing steps at the start and {len(s) - 1 - ok[-1]} at the end")
        s = s.take(slice(ok[0], ok[-1] + 1))
    cols = [s.y] + list(s.X.T)
    filled = [_fill(c, how) for c in cols]
    notes.append(f"{g['missing']} missing values in {g['runs']} gaps (longest {g['longest']}, first at "
                 f"{g['first']}) filled by {how}")
    X = np.stack(filled[1:], 1) if s.X.shape[1] else s.X
    return replace(s, y=filled[0], X=X, notes=notes)


def _fill(v: np.ndarray, how: str) -> np.ndarray:
    ok = ~np.isnan(v)
    if ok.all():
        return v
    if not ok.any():
        raise DataError("a covariate column has no values at all; drop it from data.covariates")
    i = np.arange(len(v))
    if how == "interpolate":
        return np.interp(i, i[ok], v[ok])  # constant beyond the first/last value
    last = np.maximum.accumulate(np.where(ok, i, -1))
    out = v[np.maximum(last, 0)]
    out[last < 0] = v[ok][0]  # nothing to carry forward yet: back-fill the first value
    return out


# ---- scaling and windows -------------------------------------------------------------------------------


@dataclass
class Scaler:
    """Per-column affine scaling ``z = (v - shift) / scale``, fitted on the training part only; before it, an
    optional transform of the target (column 0): ``log``, or ``boxcox`` with its λ fitted on the training part
    by maximum likelihood, then optionally a seasonal profile removed from the target (``seasonal``: ``additive``
    subtracts, ``multiplicative`` divides by the profile's value at each step's phase; the profile comes from a
    classical decomposition of the training part, :func:`seasonal_profile`). :meth:`inverse` undoes all three, so
    forecasts, quantiles and intervals come back on the original scale (each step is monotone, so quantiles map
    to quantiles). With a seasonal profile, :meth:`fit`, :meth:`transform` and :meth:`inverse` take ``phase``:
    each value's position in the season (0 .. m-1), shaped like the target values.

    ``seasonal: ets`` divides by a season that is *updated online* instead of one fixed profile: the smoothing
    weights and initial states of an ETS(A,N,M) model are fitted on the training part (statsmodels), then
    :func:`ets_season` runs that filter over any series, so the season follows a drift the training years did
    not show. The factors depend on what was known at the forecast origin, so :meth:`transform` and
    :meth:`inverse` take them explicitly (``factors``: from :meth:`ets_states` for the values themselves, from
    :meth:`ets_ahead` for the steps ahead of origins) rather than a phase."""

    kind: str = "standard"  # standard | minmax | none
    shift: np.ndarray = field(default_factory=lambda: np.zeros(0))
    scale: np.ndarray = field(default_factory=lambda: np.ones(0))
    target: str = "none"  # none | log | boxcox: the target's transform before the scaling
    lam: float = 1.0  # the Box-Cox λ
    seasonal: str = "none"  # none | additive | multiplicative | ets: a season removed after the transform
    profile: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (m,) the profile by phase (ets: at the end
    #   of the training part, for the summary)
    ets: dict = field(default_factory=dict)  # seasonal: ets: alpha, gamma, level0, seasons0 (by phase), first

    def fit(self, v: np.ndarray, phase: np.ndarray | None = None, season: int = 1) -> Scaler:
        """``v`` (N, K) -> fitted on each column; ``phase`` (N,) and the period ``season`` with a seasonal profile."""
        if self.target == "boxcox":
            self.lam = boxcox_lambda(v[:, 0])
        v = self._forward_target(v)
        if self.seasonal == "ets":
            self.ets = fit_ets_season(v[:, 0], phase, season)
            prior, post = self.ets_states(v[:, 0], phase)
            self.profile = post[-season:][np.argsort(np.asarray(phase)[-season:])]
            v = self._deseason(v, None, prior)
        elif self.seasonal != "none":
            self.profile = seasonal_profile(v[:, 0], phase, season, self.seasonal)
            v = self._deseason(v, phase)
        if self.kind == "standard":
            self.shift, self.scale = v.mean(0), v.std(0)
        elif self.kind == "minmax":
            self.shift, self.scale = v.min(0), v.max(0) - v.min(0)
        else:
            self.shift, self.scale = np.zeros(v.shape[1]), np.ones(v.shape[1])
        self.scale = np.where(self.scale > 1e-12, self.scale, 1.0)
        return self

    def _forward_target(self, v: np.ndarray) -> np.ndarray:
        if self.target == "none":
            return v
        v = np.array(v, np.float64)
        y = v[:, 0]
        if self.target == "log":
            v[:, 0] = np.log(y)
        else:
            v[:, 0] = np.log(y) if abs(self.lam) < 1e-8 else (y**self.lam - 1.0) / self.lam
        return v

    def _profile_at(self, phase: np.ndarray | None, factors: np.ndarray | None = None) -> np.ndarray:
        if factors is not None:
            return np.asarray(factors, np.float64)
        if self.seasonal == "ets":
            raise ValueError("this scaler removes an online season: give its factors (ets_states, ets_ahead)")
        if phase is None:
            raise ValueError("this scaler removes a seasonal profile: give each value's phase")
        return self.profile[np.asarray(phase, np.int64)]

    def _deseason(self, v: np.ndarray, phase: np.ndarray | None, factors: np.ndarray | None = None) -> np.ndarray:
        if self.seasonal == "none":
            return v
        v, p = np.array(v, np.float64), self._profile_at(phase, factors)
        v[:, 0] = v[:, 0] - p if self.seasonal == "additive" else v[:, 0] / p
        return v

    def ets_states(self, y: np.ndarray, phase: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The online season of ``y`` (T,) (``phase`` (T,)), one run of the fitted filter -> (prior, post), each
        (T,): each value's seasonal factor as known one step before it (s_{t-m}: what the inputs are divided by),
        and its phase's state after it (what :meth:`ets_ahead` reads)."""
        prior, post, _ = ets_season(y, phase, **self.ets)
        return prior, post

    def ets_ahead(self, post: np.ndarray, first_phase: int, origins: np.ndarray, steps: int) -> np.ndarray:
        """(N, steps) the seasonal factor of step h = 1 .. steps ahead of each origin t: the latest state of that
        step's phase at or before t, from ``post`` (:meth:`ets_states`) of a series whose first value has phase
        ``first_phase`` (what the targets and forecasts from t are divided and multiplied by: nothing after t)."""
        m, h = len(self.ets["seasons0"]), np.arange(1, steps + 1)
        at = np.asarray(origins, np.int64)[:, None] + h - m * -(-h // m)  # (N, steps): t + h - m ceil(h / m)
        before = np.asarray(self.ets["seasons0"])[(int(first_phase) + at) % m]  # before the series: initial states
        return np.where(at >= 0, post[np.maximum(at, 0)], before)

    def transform(self, v: np.ndarray, phase: np.ndarray | None = None,
                  factors: np.ndarray | None = None) -> np.ndarray:
        return (self._deseason(self._forward_target(v), phase, factors) - self.shift) / self.scale

    def inverse(self, z: np.ndarray, col: int = 0, phase: np.ndarray | None = None,
                factors: np.ndarray | None = None) -> np.ndarray:
        """Column ``col`` back to the original scale (any shape; ``phase`` the target's phases, or with
        ``seasonal: ets`` its ``factors``, the same shape)."""
        v = z * self.scale[col] + self.shift[col]
        if col != 0:
            return v
        if self.seasonal != "none":
            p = self._profile_at(phase, factors)
            v = v + p if self.seasonal == "additive" else v * p
        if self.target == "none":
            return v
        if self.target == "log" or abs(self.lam) < 1e-8:
            return np.exp(np.minimum(v, 700.0))
        return np.maximum(self.lam * v + 1.0, 1e-12) ** (1.0 / self.lam)

    def state(self) -> dict:
        return {"kind": self.kind, "shift": self.shift.tolist(), "scale": self.scale.tolist(), "target": self.target,
                "lam": self.lam, "seasonal": self.seasonal, "profile": self.profile.tolist(), "ets": self.ets}

    @classmethod
    def from_state(cls, s: dict) -> Scaler:
        return cls(s["kind"], np.asarray(s["shift"], np.float64), np.asarray(s["scale"], np.float64),
                   s.get("target", "none"), float(s.get("lam", 1.0)), s.get("seasonal", "none"),
                   np.asarray(s.get("profile", []), np.float64), dict(s.get("ets", {})))


def profile_min_steps(m: int) -> int:
    """The fewest steps :func:`seasonal_profile` needs for period m: the moving average's two half-windows and one
    season where the trend is defined."""
    return 2 * (m // 2) + m


def seasonal_profile(y: np.ndarray, phase: np.ndarray, m: int, kind: str) -> np.ndarray:
    """The seasonal profile (m,) of ``y`` (T,) by classical decomposition: the trend is the centred moving average
    over one season (a 2 x m average for even m), the profile at phase k the mean of ``y / trend``
    (``multiplicative``) or ``y - trend`` (``additive``) over the steps of phase k, normalised to mean 1 or 0.
    Needs every phase at least once where the trend is defined (about 2 m steps)."""
    y, phase = np.asarray(y, np.float64), np.asarray(phase, np.int64)
    w = np.r_[0.5, np.ones(m - 1), 0.5] / m if m % 2 == 0 else np.ones(m) / m
    half = len(w) // 2
    trend = np.convolve(y, w, mode="valid")  # centred at steps half .. T - half - 1
    inner = slice(half, len(y) - half)
    if len(trend) < 1 or len(np.unique(phase[inner])) < m:
        raise ValueError(f"a seasonal profile of period {m} needs at least {profile_min_steps(m)} steps, got {len(y)}")
    detrended = y[inner] / trend if kind == "multiplicative" else y[inner] - trend
    profile = np.array([detrended[phase[inner] == k].mean() for k in range(m)])
    return profile / profile.mean() if kind == "multiplicative" else profile - profile.mean()


def fit_ets_season(y: np.ndarray, phase: np.ndarray, m: int) -> dict:
    """Fit ETS(A,N,M) (additive errors, no trend, a multiplicative season of period m; statsmodels) to positive
    ``y`` (T,) -> the parameters of :func:`ets_season`: smoothing weights ``alpha`` (level) and ``gamma``
    (season), the initial ``level0``, the initial seasonal states by phase ``seasons0`` (m,) and the ``first``
    value. No trend, as in ES-RNN: the network forecasts the level's movement (a damped trend chosen by AICc
    lost both backtest comparisons where it was tried, docs/benchmarks.md)."""
    import warnings

    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    y = np.asarray(y, np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = ETSModel(y, error="add", trend=None, seasonal="mul", seasonal_periods=m).fit(disp=False)
    p = dict(zip(fit.param_names, np.asarray(fit.params, np.float64), strict=True))
    init = np.array([p[f"initial_seasonal.{k}"] for k in range(m)])  # statsmodels: lag 1 first
    seasons0 = np.empty(m)
    seasons0[(int(phase[0]) + np.arange(m)) % m] = init[::-1]  # position -m + k has phase (phase0 + k) mod m
    return {"alpha": float(p["smoothing_level"]), "gamma": float(p["smoothing_seasonal"]),
            "level0": float(p["initial_level"]), "seasons0": seasons0.tolist(), "first": float(y[0])}


def ets_season(y: np.ndarray, phase: np.ndarray, alpha: float, gamma: float, level0: float, seasons0: list,
               first: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run the ETS(A,N,M) filter with fixed parameters over ``y`` (T,) -> (prior, post, level), each (T,): the
    seasonal state of each step's phase before and after seeing its value, and the level after it. With
    e_t = y_t - l_{t-1} s_{t-m}: l_t = l_{t-1} + alpha e_t / s_{t-m} and s_t = s_{t-m} + gamma e_t / l_{t-1}.
    The initial seasons are taken by phase; the initial level is scaled by ``y[0] / first`` (1 on the training
    series, so a new history of another size starts near its own level). The level and seasons are kept above
    1e-3 of their scale."""
    y, phase = np.asarray(y, np.float64), np.asarray(phase, np.int64)
    season = np.asarray(seasons0, np.float64).copy()  # by phase: the latest state
    level = level0 * (y[0] / first if first > 0 and y[0] > 0 else 1.0)
    floor = 1e-3 * abs(level) + 1e-12
    prior, post, levels = np.empty(len(y)), np.empty(len(y)), np.empty(len(y))
    for t, (v, k) in enumerate(zip(y.tolist(), phase.tolist(), strict=True)):
        s = season[k]
        e = v - level * s
        prior[t] = s
        season[k] = max(s + gamma * e / level, 1e-3)
        level = max(level + alpha * e / s, floor)
        post[t], levels[t] = season[k], level
    return prior, post, levels


def boxcox_lambda(y: np.ndarray) -> float:
    """The Box-Cox λ in [-1, 2] that maximises the profile log-likelihood of positive ``y``,
    ``-n/2 log var(y(λ)) + (λ - 1) Σ log y`` (a grid of 0.01, then the best point's neighbourhood)."""
    logy = np.log(np.asarray(y, np.float64))

    def llf(lam: float) -> float:
        t = logy if abs(lam) < 1e-8 else (np.exp(lam * logy) - 1.0) / lam
        return -0.5 * len(t) * np.log(max(t.var(), 1e-300)) + (lam - 1.0) * logy.sum()

    grid = np.round(np.arange(-1.0, 2.0001, 0.01), 4)
    best = float(grid[np.argmax([llf(g) for g in grid])])
    fine = np.arange(best - 0.01, best + 0.01001, 0.0005)
    return float(fine[np.argmax([llf(g) for g in fine])])


def windows(z: np.ndarray, origins: np.ndarray, lookback: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows of the scaled columns ``z`` (T, D) (column 0 the target) at forecast ``origins`` (N,).

    Returns inputs (N, lookback, D) = ``z[t-lookback+1 .. t]`` and targets (N, horizon) = ``z[t+1 .. t+horizon, 0]``
    (NaN beyond the end of the series, for forecasting past the last observation).
    """
    origins = np.asarray(origins, np.int64)
    steps = origins[:, None] + np.arange(-lookback + 1, 1)[None, :]
    if len(origins) and steps.min() < 0:
        raise DataError(f"a window reaches before the start of the series; it needs {lookback} steps of history")
    ahead = origins[:, None] + np.arange(1, horizon + 1)[None, :]
    padded = np.concatenate([z[:, 0], np.full(horizon, np.nan)])
    return z[steps].astype(np.float32), padded[ahead].astype(np.float32)


@register_source("embedded", modality="series")
def embedded_series_source(d: Any) -> Series:
    """A series shipped inside the package (``data.name``)."""
    return load_embedded_series(d.name)


@register_source("array", modality="series")
def array_series_source(d: Any) -> Series:
    """The series given in the config itself (``data.values``, a list of numbers)."""
    return from_array(d.values)


@register_source("csv", modality="series")
def csv_series_source(d: Any, *, delimiter: str = ",") -> Series:
    """A CSV with ``data.date_col``, ``data.target`` and ``data.covariates`` columns."""
    return read_csv_series(d.path, d.date_col, d.target, d.covariates, d.freq, d.resample, delimiter)


def seasonal_series(n: int, period: int, growth: float, amplitude: float, noise: float,
                    rng: np.random.Generator) -> np.ndarray:
    """A positive series (n,) with a trend and a multiplicative season, like the monthly airline passengers:
    ``y_t = 100 exp(growth t + w_t) s_(t mod period) exp(e_t)``. The seasonal factors ``s`` are
    ``exp(amplitude f)`` for a random two-harmonic shape f of unit peak (so the swing grows with the level), ``w`` a
    slow random walk of the log level (steps of ``noise / 4``) and ``e`` white noise of standard deviation
    ``noise``, both on the log scale."""
    k = np.arange(period)
    phase = rng.uniform(0, 2 * np.pi, 2)
    shape = np.sin(2 * np.pi * k / period + phase[0]) + 0.5 * np.sin(4 * np.pi * k / period + phase[1])
    shape /= np.abs(shape).max()
    t = np.arange(n)
    walk = np.cumsum(rng.normal(0.0, noise / 4, n))
    log_y = np.log(100.0) + growth * t + walk + amplitude * shape[t % period] + rng.normal(0.0, noise, n)
    return np.exp(log_y)


@register_source("seasonal", modality="series")
def seasonal_source(d: Any, *, n: int = 144, growth: float = 0.01, amplitude: float = 0.2, noise: float = 0.04,
                    start: str = "1990-01", seed: int = 0) -> Series:
    """A generated monthly series (:func:`seasonal_series`): ``n`` months from ``start`` with a trend of ``growth``
    a month (on the log scale) and a multiplicative season of peak ``amplitude``; the size of the airline-passenger
    series (144 months) by default. The kind of short seasonal series where a network with no transform and no
    seasonal adjustment forecasts no better than seasonal naive, and exponential smoothing does well."""
    for key, value, low in (("n", n, 24), ("noise", noise, 0.0), ("amplitude", amplitude, 0.0)):
        if value < low:
            raise ConfigError(f"data.options.{key} must be >= {low} for source: seasonal, got {value}")
    try:
        first = int(np.datetime64(start, "M").astype(np.int64))
    except ValueError:
        raise ConfigError(f"data.options.start must be a month such as '1990-01', got {start!r}") from None
    with np.errstate(over="ignore"):
        y = seasonal_series(n, SEASON["M"], growth, amplitude, noise, np.random.default_rng(seed))
    if not (np.abs(y) <= MAX_VALUE).all():
        raise ConfigError(f"data.options: growth {growth}, amplitude {amplitude} and noise {noise} over {n} months "
                          f"take the series past {MAX_VALUE:g}; choose smaller ones (the defaults: 0.01, 0.2, 0.04)")
    return Series(y, np.zeros((n, 0)), periods=np.arange(first, first + n, dtype=np.int64), freq="M",
                  name="seasonal")


__all__ = ["EMBEDDED_SERIES", "FREQS", "SEASON", "Scaler", "Series", "calendar", "fill_gaps", "from_array",
           "gaps", "infer_freq", "load_embedded_series", "parse_dates", "period_date", "read_csv_series",
           "profile_min_steps", "seasonal_profile", "seasonal_series", "to_periods", "windows"]
