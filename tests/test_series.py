"""rnnkit.data.series and rnnkit.forecast.metrics: calendar, gaps, resampling, scaling, windows, metrics."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from rnnkit.data import DataError
from rnnkit.data.series import Scaler, fill_gaps, from_array, gaps, load_embedded_series, read_csv_series, windows
from rnnkit.forecast.metrics import baseline_forecasts, mase_scale, point_metrics, pool


def write(tmp_path, text: str):
    p = tmp_path / "s.csv"
    p.write_text(text)
    return p


def test_missing_dates_become_reported_gaps(tmp_path):
    p = write(tmp_path, "date,v\n2000-01-01,1\n2000-02-01,2\n2000-04-01,4\n2000-05-01,\n2000-06-01,6\n")
    s = read_csv_series(p, "date")
    assert s.freq == "M" and len(s) == 6 and s.dates()[2] == "2000-03"
    assert gaps(s) == {"missing": 2, "runs": 2, "longest": 1, "first": "2000-03"}
    with pytest.raises(DataError, match="2 missing values .* data.fill: interpolate or ffill"):
        fill_gaps(s, "error")
    assert fill_gaps(s, "interpolate").y.tolist() == [1, 2, 3, 4, 5, 6]
    filled = fill_gaps(s, "ffill")
    assert filled.y.tolist() == [1, 2, 2, 4, 4, 6] and "filled by ffill" in filled.notes[-1]


def test_resample_weekly_to_monthly_means(tmp_path):
    p = write(tmp_path, "date,v\n2001-01-06,1\n2001-01-13,3\n2001-01-20,NA\n2001-01-27,5\n2001-02-03,10\n"
                  "2001-02-10,20\n2001-04-07,7\n")
    s = read_csv_series(p, "date", "v")
    assert s.freq == "W" and len(s) == 14  # 6 Jan .. 7 Apr, weekly, gaps as NaN
    m = read_csv_series(p, "date", "v", resample_to="M")
    assert m.dates() == ["2001-01", "2001-02", "2001-03", "2001-04"]
    np.testing.assert_array_equal(m.y, [3.0, 15.0, np.nan, 7.0])


def test_years_as_numbers_and_leading_gap_trimmed(tmp_path):
    p = write(tmp_path, "YEAR,x\n1700.0,\n1701.0,2\n1702.0,3\n")
    s = fill_gaps(read_csv_series(p, "YEAR"), "interpolate")
    assert s.freq == "Y" and s.dates() == ["1701", "1702"] and "trimmed 1" in s.notes[0]


@pytest.mark.parametrize("text,match", [
    ("date,v\n2000-01-01,1\n2000-01-01,2\n2000-01-02,3\n", "repeated D periods"),
    ("date,v\n2000-01-01,1\nsoon,2\n", "row 3: cannot read 'soon' as a date"),
    ("date,v\n2000-01-01,abc\n2000-01-02,1\n", "row 2: column 'v' holds 'abc'"),
    ("date,a,b\n2000-01-01,1,2\n", "cannot tell the target among a, b"),
])
def test_bad_csv_is_one_clear_error(tmp_path, text, match):
    with pytest.raises(DataError, match=match):
        read_csv_series(write(tmp_path, text), "date")


@pytest.mark.parametrize("cell,match", [
    ("inf", "the target holds 1 values beyond \\+-1e\\+30 \\(first inf at 2000-03\\)"),
    ("1e309", "first inf at 2000-03"),  # float() of it is inf
    ("-1e300", "first -1e\\+300 at 2000-03"),  # finite, but the float32 forecasts scaled back overflowed
])
def test_infinite_or_huge_values_are_refused_not_trained_into_nan(tmp_path, cell, match):
    """A sweep found a series with ``inf`` trained into a NaN loss (exit 1, "lower training.lr"), and one value
    of 1e300 into NaN metrics; NaN stays a gap."""
    p = write(tmp_path, f"date,v,x\n2000-01-01,1,0\n2000-02-01,,0\n2000-03-01,{cell},0\n2000-04-01,4,0\n")
    s = read_csv_series(p, "date", "v", ["x"])
    with pytest.raises(DataError, match=match):
        fill_gaps(s, "interpolate")
    p = write(tmp_path, "date,v,x\n2000-01-01,1,0\n2000-02-01,2,-inf\n")
    with pytest.raises(DataError, match="covariate 'x' holds 1 values beyond"):
        fill_gaps(read_csv_series(p, "date", "v", ["x"]), "interpolate")
    assert fill_gaps(from_array([1.0, np.nan, 1e30]), "interpolate").y.tolist() == [1.0, 5e29, 1e30]


def test_embedded_sunspots():
    s = load_embedded_series("sunspots")
    assert len(s) == 309 and s.dates()[0] == "1700" and s.dates()[-1] == "2008"
    assert s.y[0] == 5.0 and gaps(s)["missing"] == 0


def test_scaler_and_windows():
    v = np.array([[1.0, 10], [3.0, 10]])
    sc = Scaler("standard").fit(v)
    np.testing.assert_allclose(sc.transform(v), [[-1, 0], [1, 0]])  # constant column: scale 1, no division by 0
    mm = Scaler("minmax").fit(v)
    np.testing.assert_allclose(mm.inverse(mm.transform(v)[:, 0]), v[:, 0])
    z = np.arange(10, dtype=np.float64)[:, None]
    X, Y = windows(z, np.array([2, 8]), lookback=3, horizon=2)
    assert X[:, :, 0].tolist() == [[0, 1, 2], [6, 7, 8]]
    assert Y[0].tolist() == [3, 4] and Y[1, 0] == 9 and np.isnan(Y[1, 1])  # past the end: NaN
    with pytest.raises(DataError, match="needs 3 steps of history"):
        windows(z, np.array([1]), 3, 1)


def test_metrics_and_baselines_by_hand():
    y, p = np.array([[2.0, 0.0]]), np.array([[1.0, 1.0]])
    m = point_metrics(y, p, scale=2.0)
    assert m["mae"] == 1.0 and m["rmse"] == 1.0 and m["mase"] == 0.5
    assert m["mape"] == 50.0  # the zero is skipped
    assert m["smape"] == pytest.approx(100 * (2 / 3 + 2) / 2)
    hist = np.array([1.0, 2, 3, 4, 5, 6, 7])
    b = baseline_forecasts(hist, np.array([4]), horizon=3, m=2, train_mean=9.0)
    assert b["naive"].tolist() == [[5, 5, 5]]
    assert b["seasonal_naive"].tolist() == [[4, 5, 4]]  # same phase of the last full season
    assert b["mean"].tolist() == [[9, 9, 9]]
    assert mase_scale(hist, 2) == 2.0 and np.isnan(mase_scale(np.ones(5), 1))
    pooled = pool([{"mae": 1.0, "rmse": 1.0}, {"mae": 4.0, "rmse": 3.0}], [3, 1])
    assert pooled["mae"] == 1.75 and pooled["rmse"] == pytest.approx(np.sqrt(0.75 + 9 / 4))


def test_from_array_checks_shape():
    assert len(from_array([1, 2, 3])) == 3
    with pytest.raises(DataError, match="1-D"):
        from_array([[1, 2], [3, 4]])


def test_import_stays_light():
    code = ("import sys, rnnkit.data.series, rnnkit.forecast.metrics, rnnkit.tasks.forecasting; "
            "print([m for m in ('yaml', 'matplotlib', 'rich') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_series_csv_saved_with_a_byte_order_mark_keeps_its_column_names(tmp_path):
    """The CSV reader shared with the sequence files drops a UTF-8 byte-order mark (Excel writes one), so the
    first column is still 'date', not '\\ufeffdate'."""
    p = tmp_path / "s.csv"
    p.write_text("date,value\n2000-01,1\n2000-02,2\n2000-03,3\n", encoding="utf-8-sig")
    s = read_csv_series(p, date_col="date", target="value")
    assert s.y.tolist() == [1.0, 2.0, 3.0] and s.freq == "M"


@pytest.mark.parametrize("bad", ["inf", "1e309", "nan", "1700.5"])
def test_dates_that_are_not_whole_years_are_data_errors(tmp_path, bad):
    p = write(tmp_path, f"date,v\n1700,1\n{bad},2\n1702,3\n")
    with pytest.raises(DataError, match=f"row 3: .*'{bad}'"):
        read_csv_series(p, "date")


@pytest.mark.parametrize("bad", ["1e18", "10000", "-12000"])
def test_years_beyond_four_digits_are_data_errors_not_wrapped_dates(tmp_path, bad):
    """numpy turns year 10**18 into a date of the year -10 109 397 110 662 183; the reader names the row instead."""
    p = write(tmp_path, f"date,v\n1700,1\n{bad},2\n1702,3\n")
    with pytest.raises(DataError, match=f"row 3: year {bad} is outside -9999 to 9999"):
        read_csv_series(p, "date")
