"""rnnkit tune: grid parsing, shuffled and rolling-origin folds, the end-to-end search, CLI errors."""

from __future__ import annotations

import csv
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from rnnkit.build import load_config
from rnnkit.cli import main
from rnnkit.config import ConfigError
from rnnkit.tune import fold_indices, grid, parse_param, subset, tune

TINY = {
    "name": "tune-test", "task": "adding",
    "model": {"cell": "gru", "hidden_size": 4},
    "data": {"num_steps": 6, "train_size": 120, "val_size": 20, "test_size": 20},
    "training": {"epochs": 1, "batch_size": 20, "num_threads": 1, "device": "cpu"},
}


def test_parse_param_and_grid():
    assert parse_param("model.hidden_size=16,32") == ("model.hidden_size", [16, 32])
    assert parse_param("model.cell=lstm,gru")[1] == ["lstm", "gru"]
    assert grid({"a": [1, 2], "b": ["x", "y"]}) == [{"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 2, "b": "x"},
                                                    {"a": 2, "b": "y"}]
    for bad in ("model.hidden_size", "=1,2", "model.hidden_size=", "a=1,1"):
        with pytest.raises(ConfigError):
            parse_param(bad)


@dataclass(frozen=True)
class Rows:
    X: torch.Tensor
    origins: np.ndarray
    series: object = None

    def __len__(self) -> int:
        return len(self.X)


def test_shuffled_folds_partition():
    split = Rows(torch.arange(23.0)[:, None], None)  # no origins: shuffled k-fold
    folds = fold_indices(split, 5, seed=0)
    vals = np.concatenate([v for _, v in folds])
    assert sorted(vals.tolist()) == list(range(23))  # every item validated exactly once
    for tr, va in folds:
        assert not set(tr) & set(va) and len(tr) + len(va) == 23 and len(va) in (4, 5)
    assert all((a[1] == b[1]).all() for a, b in zip(folds, fold_indices(split, 5, seed=0), strict=True))
    assert not all((a[1] == b[1]).all() for a, b in zip(folds, fold_indices(split, 5, seed=1), strict=True))


def test_rolling_origin_folds():
    origins = np.arange(100, 140)
    split = Rows(torch.arange(40.0)[:, None], origins[::-1].copy(), series="s")  # any order in, time order out
    folds = fold_indices(split, 3, seed=0, gap=3)
    assert len(folds) == 3
    sizes = []
    for tr, va in folds:
        o_tr, o_va = split.origins[tr], split.origins[va]
        assert o_tr.max() + 3 <= o_va.min()  # no training target reaches the validation block
        sizes.append(len(tr))
    assert sizes == sorted(sizes) and sizes[0] > 0  # the training window grows
    part = subset(split, folds[0][1])
    assert len(part) == len(folds[0][1]) and part.series == "s"
    np.testing.assert_array_equal(part.origins, split.origins[folds[0][1]])
    with pytest.raises(ConfigError, match="use fewer folds"):
        fold_indices(Rows(torch.zeros(3, 1), np.arange(3)), 5, seed=0)


def test_tune_end_to_end(tmp_path):
    res = tune(TINY, ["model.hidden_size=2,6"], folds=2, out=tmp_path / "t", overrides=["training.lr=0.01"])
    assert res.metric == "val_loss"
    assert [r["label"] for r in res.summary] == ["hidden_size=2", "hidden_size=6"]
    for r in res.summary:
        assert r["mean"] == pytest.approx(np.mean(r["scores"])) and len(r["scores"]) == 2
    best = min(res.summary, key=lambda r: r["mean"])
    assert res.best == best["setting"]
    cfg = load_config(tmp_path / "t" / "best.yaml")
    assert cfg.model.hidden_size == best["setting"]["model.hidden_size"] and cfg.training.lr == 0.01
    rows = list(csv.DictReader(open(tmp_path / "t" / "results.csv")))
    assert [(r["setting"], r["fold"]) for r in rows] == [("hidden_size=2", "1"), ("hidden_size=2", "2"),
                                                         ("hidden_size=6", "1"), ("hidden_size=6", "2")]
    assert (tmp_path / "t" / "tune.png").stat().st_size > 1000
    run = tmp_path / "t" / "hidden_size_6" / "fold2"
    import json

    # a fold trains and scores on the training part only: the test split is not even loaded into it
    assert json.loads((run / "run.json").read_text())["data"]["splits"] == {"train": 60, "val": 60}


def test_cli_tune_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default --out is runs/tune-<name>
    cfg = tmp_path / "c.yaml"
    import yaml

    cfg.write_text(yaml.safe_dump(TINY))
    assert main(["tune", str(cfg)]) == 2
    assert "give at least one --param" in capsys.readouterr().err
    assert main(["tune", str(cfg), "--param", "model.hidden_size=2,x"]) == 2  # validated before training
    assert "model.hidden_size must be an integer" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # an argument error, before the config is read
        main(["tune", str(cfg), "--param", "model.hidden_size=2", "--folds", "1"])
    assert e.value.code == 2 and "--folds: 1 is out of range; give 2 to" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="--folds must be >= 2"):  # the same bound in the Python API
        tune(TINY, ["model.hidden_size=2"], folds=1)
    assert main(["tune", str(cfg), "--param", "model.hidden_size=2", "--metric", "val_accuracy"]) == 2
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "f").write_text("x")
    assert main(["tune", str(cfg), "--param", "model.hidden_size=2", "--out", str(tmp_path / "busy")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_ranges_and_random_settings():
    from rnnkit.tune import Range, random_settings

    key, r = parse_param("training.lr=1e-4..1e-2")
    assert key == "training.lr" and r == Range(1e-4, 1e-2, False) and r.log
    assert parse_param("model.hidden_size=8..64")[1] == Range(8, 64, True)
    with pytest.raises(ConfigError, match="needs lo < hi"):
        parse_param("training.lr=0.1..0.01")
    with pytest.raises(ConfigError, match="give --trials N"):
        grid({"training.lr": r})
    with pytest.raises(ConfigError, match=r"--trials must be in \[1, 10000\]"):  # drawing 2e21 settings never ended
        tune(TINY, ["training.lr=1e-3..3e-2"], folds=2, trials=10**20)
    a = random_settings({"training.lr": r, "model.cell": ["gru", "lstm"]}, 6, seed=0)
    assert a == random_settings({"training.lr": r, "model.cell": ["gru", "lstm"]}, 6, seed=0)  # seeded
    assert len(a) == 6 and all(1e-4 <= s["training.lr"] <= 1e-2 for s in a)
    assert len(random_settings({"a": [1, 2]}, 5, seed=0)) == 2  # distinct while the lists allow


@pytest.mark.parametrize("search", ["random", "optuna"])
def test_tune_with_trials(tmp_path, search):
    if search == "optuna":
        pytest.importorskip("optuna")
    res = tune(TINY, ["training.lr=1e-3..3e-2", "model.hidden_size=2,4"], folds=2, out=tmp_path / search,
               trials=3, search=search)
    assert len(res.summary) == 3 and all(1e-3 <= r["setting"]["training.lr"] <= 3e-2 for r in res.summary)
    assert res.best in [r["setting"] for r in res.summary if not r["pruned"]]
    text = (tmp_path / search / "best.yaml").read_text()
    assert f"rnnkit tune ({search})" in text
    rows = list(csv.DictReader(open(tmp_path / search / "summary.csv")))
    assert len(rows) == 3 and {"folds", "pruned"} <= set(rows[0])
