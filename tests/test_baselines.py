"""Baselines in every task: computed on exactly the model's splits, in metrics.json and the report, a weak model
flagged loudly, and the skipped ones named with the fix when their library is missing."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rnnkit.build import fit
from rnnkit.tasks import baselines

sklearn = pytest.importorskip("sklearn")

DIGITS = {"name": "dg", "task": "sequence_classification", "model": {"cell": "gru", "hidden_size": 8},
          "data": {"source": "embedded", "name": "digits", "test_fraction": 0.2, "val_fraction": 0.1},
          "training": {"epochs": 1, "batch_size": 64, "num_threads": 1, "device": "cpu"}}


def test_sequence_baselines_use_the_models_splits_and_a_weak_model_is_flagged(tmp_path, capsys):
    from rnnkit.tasks.sequence_classification import SequenceClassification

    run, metrics = fit(DIGITS, tmp_path / "r", quiet=True)
    base = metrics["baselines"]
    assert set(base) == {"majority", "logistic_regression_summary", "1nn"}
    from rnnkit.build import load_config  # the splits the model used, rebuilt from its config: the same seeded cuts

    task = SequenceClassification(load_config(run / "config.yaml"))
    task.setup()
    train_y, test_y = task.splits["train"].y.numpy(), task.splits["test"].y.numpy()
    top = np.bincount(train_y).argmax()
    assert base["majority"]["accuracy"] == pytest.approx(float((test_y == top).mean()))
    assert base["1nn"]["train_used"] == len(train_y) and metrics["test"]["count"] == len(test_y)
    assert metrics["beats_baselines"] is False and metrics["best_baseline"] == "1nn"  # one epoch of 8 units
    assert "does NOT beat the 1nn baseline" in capsys.readouterr().err
    page = (run / "report.html").read_text()
    assert "The model does not beat the 1nn baseline" in page and "logistic_regression_summary" in page


def test_summary_features_respect_lengths():
    X = np.array([[[1.0], [3.0], [100.0]], [[2.0], [2.0], [2.0]]])
    f = baselines.summary_features(X, np.array([2, 3]))
    np.testing.assert_allclose(f[0], [2.0, 1.0, 1.0, 3.0, 1.0, 3.0])  # mean std min max first last, step 3 unseen
    np.testing.assert_allclose(f[1], [2.0, 0.0, 2.0, 2.0, 2.0, 2.0])


def test_text_baselines_and_a_missing_library(tmp_path, monkeypatch):
    rows = ["text,label"] + [f"good great fine {i},pos" for i in range(30)] + [f"bad awful poor {i},neg"
                                                                               for i in range(30)]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    cfg = {"name": "t", "task": "text_classification", "model": {"cell": "gru", "hidden_size": 8, "embedding_dim": 8},
           "data": {"source": "csv", "path": str(tmp_path / "d.csv"), "test_fraction": 0.3, "val_fraction": 0.1},
           "training": {"epochs": 1, "batch_size": 16, "num_threads": 1, "device": "cpu"}}
    _, m = fit(cfg, tmp_path / "r", quiet=True)
    assert m["baselines"]["tfidf_logistic_regression"]["accuracy"] == 1.0  # the words give it away
    assert 0.3 < m["baselines"]["majority"]["accuracy"] < 0.7
    monkeypatch.setattr(baselines, "have", lambda module: module != "sklearn")
    _, m = fit(cfg, tmp_path / "r2", quiet=True)
    assert set(m["baselines"]) == {"majority"}
    assert m["baselines_skipped"]["tfidf_logistic_regression"] == "needs sklearn: pip install 'rnnkit[baselines]'"
    assert "Skipped: tfidf_logistic_regression" in (tmp_path / "r2" / "report.html").read_text()


def test_witten_bell_by_hand():
    # train "abab", test "ab", bigrams: a->b twice, b->a once; N1+(a.) = 1, N1+(b.) = 1
    train, test = np.array([0, 1, 0, 1]), np.array([0, 1])
    uni = np.array([3.0, 3.0]) / 6.0  # add-one counts 2+1, 2+1
    p_b_after_a = (2 + 1 * uni[1]) / (2 + 1)
    want = -(math.log2(uni[0]) + math.log2(p_b_after_a)) / 2
    assert baselines.ngram_bits(train, test, 2, order=2) == pytest.approx(want)
    assert baselines.unigram_bits(train, test, 2) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    text = np.tile(rng.integers(0, 20, 50), 40)  # a repeated pattern: the n-gram model finds it, unigram cannot
    assert baselines.ngram_bits(text[:1600], text[1600:], 20, 5) < 0.2 < baselines.unigram_bits(text[:1600],
                                                                                                  text[1600:], 20)


def test_language_model_baselines_in_metrics(tmp_path):
    cfg = {"name": "lm", "task": "language_model", "model": {"cell": "lstm", "hidden_size": 16, "embedding_dim": 8},
           "data": {"source": "embedded", "limit": 20000, "chunk_length": 32, "steps_per_epoch": 5,
                    "val_fraction": 0.1, "test_fraction": 0.1},
           "training": {"epochs": 1, "batch_size": 8, "num_threads": 1, "device": "cpu"}}
    _, m = fit(cfg, tmp_path / "lm", quiet=True)
    names = list(m["baselines"])
    assert names[0] == "unigram" and names[1].startswith("ngram_")
    assert m["baselines"][names[1]]["bpc"] < m["baselines"]["unigram"]["bpc"]
    assert m["baselines"]["unigram"]["bpc"] == pytest.approx(m["test"]["unigram_bpc"], rel=0.02)
    assert m["beats_baselines"] is False  # five steps of training


def test_forecasting_ets_and_theta(tmp_path, monkeypatch):
    pytest.importorskip("statsmodels")
    t = np.arange(240)
    series = (10 + 0.05 * t + 3 * np.sin(2 * np.pi * t / 12)) * (1 + 0.01 * np.random.default_rng(0).normal(size=240))
    cfg = {"name": "fc", "task": "forecasting", "model": {"cell": "gru", "hidden_size": 8},
           "data": {"source": "array", "values": series.tolist(), "lookback": 24, "horizon": 3, "season": 12,
                    "relative": True, "val_fraction": 0.1, "test_fraction": 0.2},
           "training": {"epochs": 1, "batch_size": 32, "num_threads": 1, "device": "cpu"}}
    _, m = fit(cfg, tmp_path / "fc", quiet=True)
    assert {"naive", "seasonal_naive", "mean", "ets", "theta"} <= set(m["baselines"]), m.get("baselines_skipped")
    assert m["baselines"]["ets"]["mase"] < m["baselines"]["naive"]["mase"]  # a seasonal series: ETS sees it
    assert m["beats_baselines"] is False
    from rnnkit.forecast import statistical

    monkeypatch.setattr(statistical, "THETA_MAX_VALUES", 1000)  # a test split too long for one Theta refit per origin
    _, m = fit(cfg, tmp_path / "fc_long", quiet=True)
    assert "theta" not in m["baselines"] and "ets" in m["baselines"]
    assert "test origins" in m["baselines_skipped"]["theta"] and "data.test_fraction" in m["baselines_skipped"]["theta"]
    page = (tmp_path / "fc_long" / "report.html").read_text()
    assert "test origins, each a refit" in page and f"The model does not beat the {m['best_baseline']} baseline" in page
    monkeypatch.setattr(statistical, "available", lambda: False)
    _, m = fit(cfg, tmp_path / "fc2", quiet=True)
    assert "ets" not in m["baselines"] and "statsmodels" in m["baselines_skipped"]["ets"]


@pytest.mark.parametrize("season", [12, 1])
def test_ets_forecasts_from_one_pass_are_those_of_the_series_cut_at_each_origin(season):
    pytest.importorskip("statsmodels")
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    from rnnkit.forecast import statistical

    t = np.arange(200)
    y = 50 + 0.1 * t + 5 * np.sin(2 * np.pi * t / 12) + np.random.default_rng(1).normal(0, 1, 200)
    origins, H = np.arange(150, 197, 3), 4
    got = statistical.ets_forecasts(y, 160, origins, H, season)
    train = y[:160]
    fits = [(spec, ETSModel(train, **spec).fit(disp=False)) for spec in statistical._specs(train, season)]
    spec, best = min(fits, key=lambda f: f[1].aicc)
    assert spec["seasonal"] == ("add" if season > 1 else None)  # the season is found when m says there is one
    for row, o in zip(got, origins, strict=True):  # the model run over the series up to each origin alone
        np.testing.assert_allclose(row, ETSModel(y[: o + 1], **spec).smooth(best.params).forecast(H), rtol=0,
                                   atol=1e-9)
    assert statistical.ets_forecasts(y, 160, origins[:0], H, season).shape == (0, H)


def test_baselines_can_be_turned_off(tmp_path):
    _, m = fit({**DIGITS, "training": {**DIGITS["training"], "baselines": False}}, tmp_path / "off", quiet=True)
    assert "baselines" not in m and "beats_baselines" not in m
