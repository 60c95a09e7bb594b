"""The forecasting task end to end: time splits, scaling without leaks, baselines in metrics.json, intervals,
strategies, the Python API, and the forecast / backtest commands (tiny synthetic series, seconds each)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import yaml

import rnnkit
from rnnkit.build import load_config
from rnnkit.cli import main
from rnnkit.config import ConfigError
from rnnkit.data import DataError
from rnnkit.tasks.forecasting import Forecasting

t = np.arange(240)
SERIES = (10 + 0.05 * t + 3 * np.sin(2 * np.pi * t / 12) + np.random.default_rng(0).normal(0, 0.2, 240)).tolist()


def config(**data) -> dict:
    d = {"source": "array", "values": SERIES, "lookback": 24, "horizon": 3, "season": 12, "relative": True,
         "val_fraction": 0.1, "test_fraction": 0.2} | data
    return {"name": "fc", "task": "forecasting", "model": {"cell": "gru", "hidden_size": 16}, "data": d,
            "training": {"epochs": 40, "lr": 0.01, "batch_size": 32, "num_threads": 1, "device": "cpu", "seed": 0}}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    cfg = config()
    cfg["model"] |= {"loss": "quantile", "quantiles": [0.1, 0.5, 0.9]}
    return rnnkit.train(cfg, out=tmp_path_factory.mktemp("fc") / "run")


def test_splits_are_ordered_in_time_and_scaler_sees_only_train():
    task = Forecasting(load_config(config(lookback=12, horizon=3)))
    task.setup()
    b, H = task.bounds, 3
    assert b == {"train_end": 168, "val_end": 192, "test_end": 240}
    tr, va, te = task.splits["train"], task.splits["val"], task.splits["test"]
    assert tr.origins.max() + H < b["train_end"]  # every training target lies before validation
    assert va.origins.min() == b["train_end"] - 1 and va.origins.max() + H < b["val_end"]
    assert te.origins.min() == b["val_end"] - 1 and te.origins.max() + H == 239
    assert task.scaler.shift[0] == pytest.approx(np.mean(SERIES[:168]))  # fitted on the train part only
    np.testing.assert_allclose(task.scaler.inverse(te.Y[:, 0].double().numpy()), np.array(SERIES)[te.origins + 1],
                               rtol=1e-5)


def test_metrics_json_has_model_and_baselines_and_beats_them(run):
    m = json.loads((run.path / "metrics.json").read_text())
    assert {"naive", "seasonal_naive", "mean"} <= set(m["baselines"])  # and ETS, Theta with statsmodels
    for part in (m["test"], *m["baselines"].values()):
        assert {"mae", "rmse", "mape", "smape", "mase"} <= set(part)
    test = m["test"]
    assert test["count"] == (48 - 3 + 1) * 3 and test["horizon"] == 3 and len(test["mae_by_horizon"]) == 3
    # seasonal naive is off by one season of trend (12 x 0.05 = 0.6) plus noise; the model learns the trend
    assert test["mase"] < m["baselines"]["seasonal_naive"]["mase"] < m["baselines"]["naive"]["mase"]
    assert test["beats_seasonal_naive"] and 0.5 <= test["coverage"] <= 1
    assert test["interval_level"] == pytest.approx(0.8)
    page = (run.path / "report.html").read_text()
    assert "Forecast accuracy (test) against baselines" in page and "<h2>Forecasts" in page
    assert "does not beat seasonal naive" not in page
    rows = list(csv.DictReader(open(run.path / "test_forecasts.csv")))
    assert len(rows) == 46 * 3 and {"lower_80", "upper_80", "actual"} <= set(rows[0])


def test_api_evaluate_predict_and_forecast(run):
    again = rnnkit.Run.load(run.path)
    assert again.evaluate()["mae"] == pytest.approx(run.metrics["test"]["mae"], rel=1e-6)
    recs = again.predict(np.array(SERIES[:100]))  # continue the first 100 values for the horizon
    assert [r["step"] for r in recs] == [1, 2, 3] and abs(recs[0]["forecast"] - SERIES[100]) < 1.5
    from rnnkit.tasks.forecasting import forecast

    out = forecast(again, 7)  # beyond the horizon: blocks of 3 are fed back
    assert [r["date"] for r in out] == [str(240 + i) for i in range(7)]
    assert all(r["lower_80"] <= r["forecast"] <= r["upper_80"] for r in out)
    with pytest.raises(ConfigError, match=r"steps to forecast must be in \[1, 1000000\], got 10000000000"):
        forecast(again, 10**10)  # it ran for ever


def test_cli_forecast_writes_csv_and_report(run, tmp_path, capsys):
    assert main(["forecast", str(run.path), "--steps", "5", "--output", str(tmp_path / "f.csv")]) == 0
    rows = list(csv.DictReader(open(tmp_path / "f.csv")))
    assert len(rows) == 5 and rows[0]["origin"] == "239"
    assert (run.path / "forecast.csv").is_file()
    for steps in ("0", "10000000000000000000000"):  # a huge count is refused before it overflows or runs for ever
        with pytest.raises(SystemExit) as e:
            main(["forecast", str(run.path), "--steps", steps])
        assert e.value.code == 2 and f"--steps: {steps} is out of range; give 1 to 1,000,000" in capsys.readouterr().err


@pytest.mark.parametrize("loss", ["gaussian", "mse"])
def test_recursive_and_gaussian(tmp_path, loss):
    cfg = config(strategy="recursive", horizon=4)
    cfg["model"]["loss"] = loss
    cfg["training"]["epochs"] = 3
    r = rnnkit.train(cfg, out=tmp_path / "r")
    assert r.model.head.out_features == (2 if loss == "gaussian" else 1)  # one step, fed back
    test = r.metrics["test"]
    assert test["horizon"] == 4 and len(test["mae_by_horizon"]) == 4
    assert ("coverage" in test) == (loss == "gaussian")


def test_not_beating_seasonal_naive_is_loud(tmp_path, capsys):
    cfg = config(relative=False)
    cfg["training"]["epochs"] = 1
    r = rnnkit.train(cfg, out=tmp_path / "bad")
    assert not r.metrics["test"]["beats_seasonal_naive"]
    assert "the model does NOT beat the" in capsys.readouterr().err
    assert "WARNING: the model does not beat seasonal naive" in (r.path / "report.html").read_text()


def test_backtest_expanding_folds(tmp_path):
    cfg = config(horizon=2)
    cfg["training"]["epochs"] = 2
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "bt"
    assert main(["backtest", str(tmp_path / "c.yaml"), "--folds", "3", "--stride", "10", "--out", str(out),
                 "--quiet"]) == 0
    res = json.loads((out / "backtest.json").read_text())
    assert res["cutoffs"] == [192, 202, 212] and [f["origins"] for f in res["folds"]] == [10, 10, 10]
    for k, c in enumerate(res["cutoffs"]):  # each fold trained only on data before its cutoff
        m = json.loads((out / f"fold-{k}" / "run.json").read_text())["data"]
        assert m["test_starts"] == str(c)
    maes = [f["mae"] for f in res["folds"]]
    assert res["overall"]["model"]["mae"] == pytest.approx(np.mean(maes))
    assert {"naive", "seasonal_naive", "mean"} <= set(res["overall"]["baselines"])
    assert len((out / "backtest.csv").read_text().splitlines()) == 4
    from rnnkit.backtest import backtest

    assert backtest(cfg, tmp_path / "huge", folds=10**20, stride=1000)["cutoffs"] == [192]  # it never ended


def test_user_mistakes_are_one_line_errors(tmp_path, capsys):
    with pytest.raises(DataError, match="series too short: 30 steps"):
        Forecasting(load_config(config(values=SERIES[:30]))).setup()
    with pytest.raises(ConfigError, match="recursive .* covariates"):
        load_config(config(source="csv", path=__file__, strategy="recursive", covariates=["x"]))
    with pytest.raises(ConfigError, match="model.quantiles"):
        load_config({**config(), "model": {"loss": "quantile", "quantiles": [0.1, 0.9]}})
    p = tmp_path / "gap.csv"
    p.write_text("date,v\n" + "".join(f"{2000 + i},{'' if i == 50 else v}\n" for i, v in enumerate(SERIES)))
    cfg = config(source="csv", path=str(p), date_col="date", values=None)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "1 missing values in 1 gaps" in err and "first at 2050" in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()
    assert main(["train", str(tmp_path / "c.yaml"), "--set", "data.test_start=1999", "--out", str(tmp_path / "y"),
                 "--set", "data.fill=interpolate"]) == 2
    assert "outside the series" in capsys.readouterr().err
