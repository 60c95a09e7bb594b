"""The adding problem and the copy-memory task: data layout, baselines, config checks, training, API and CLI."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import rnnkit
from rnnkit.build import fit, load_config
from rnnkit.cli import main
from rnnkit.config import ConfigError
from rnnkit.tasks import get_task
from rnnkit.tasks.long_range import adding_data, copy_data, steps_to_solve

ADDING = {
    "name": "adding-test", "task": "adding",
    "model": {"cell": "lstm", "hidden_size": 16, "forget_bias": 1.0},
    "data": {"num_steps": 10, "train_size": 1000, "val_size": 200, "test_size": 200},
    "training": {"epochs": 6, "batch_size": 25, "lr": 0.01, "num_threads": 1, "device": "cpu"},
}
COPY = {
    "name": "copy-test", "task": "copy",
    "model": {"cell": "gru", "hidden_size": 8},
    "data": {"num_steps": 5, "train_size": 64, "val_size": 16, "test_size": 16, "num_symbols": 4, "copy_length": 3},
    "training": {"epochs": 1, "batch_size": 16, "num_threads": 1, "device": "cpu"},
}


def test_adding_data_layout_and_baseline():
    X, y = adding_data(20000, 30, np.random.default_rng(0))
    assert X.shape == (20000, 30, 2) and X.dtype == np.float32 and y.shape == (20000,)
    marks = X[:, :, 1]
    assert (marks.sum(1) == 2).all()
    assert (marks[:, :15].sum(1) == 1).all() and (marks[:, 15:].sum(1) == 1).all()  # one per half
    np.testing.assert_allclose(y, (X[:, :, 0] * marks).sum(1), rtol=1e-6)
    assert ((1.0 - y) ** 2).mean() == pytest.approx(1 / 6, abs=0.005)  # predicting 1 scores 0.167


def test_copy_data_layout():
    x, y = copy_data(50, 7, 8, 10, np.random.default_rng(0))
    assert x.shape == y.shape == (50, 27)  # T + 20
    assert ((x[:, :10] >= 1) & (x[:, :10] <= 8)).all()
    assert (x[:, 16] == 9).all() and (np.delete(x, [*range(10), 16], axis=1) == 0).all()  # blanks, delimiter
    assert (y[:, :17] == 0).all() and (y[:, 17:] == x[:, :10]).all()


def test_splits_fixed_by_data_seed():
    def test_split(**data):
        cfg = load_config({**ADDING, "data": {**ADDING["data"], **data}})
        task = get_task("adding")(cfg)
        task.setup()
        return task.splits["test"].X

    a, b = test_split(), test_split(train_size=500)
    assert torch.equal(a, b)  # the training size does not move the test set
    assert not torch.equal(a, test_split(seed=7))


@pytest.mark.parametrize("model,data,match", [
    ({"cell": "lstm", "init": "identity"}, {}, "needs cell: rnn"),
    ({}, {"num_steps": 0}, "num_steps must be >= 1"),
    ({}, {"val_size": -1}, "val_size must be >= 0"),
    ({}, {"source": "npz"}, "data.source is a key of task forecasting, .*, not of adding; remove it"),
])
def test_config_errors(model, data, match):
    with pytest.raises(ConfigError, match=match):
        load_config({**ADDING, "model": {**ADDING["model"], "forget_bias": None, **model},
                     "data": {**ADDING["data"], **data}})


def test_forget_bias_on_minlstm_and_ignored_with_a_warning_elsewhere(capsys):
    cfg = load_config({**ADDING, "model": {"cell": "minlstm", "hidden_size": 5, "forget_bias": 2.0}})
    plain = load_config({**ADDING, "model": {"cell": "minlstm", "hidden_size": 5, "forget_bias": None}})
    torch.manual_seed(0)
    net = get_task("adding")(cfg).build_model()
    torch.manual_seed(0)
    ref = get_task("adding")(plain).build_model()
    diff = net.rnn.bias_ih_l0 - ref.rnn.bias_ih_l0
    assert torch.allclose(diff[:5], torch.full((5,), 2.0)) and not diff[5:].any()  # blocks f, i, h̃
    load_config({**ADDING, "model": {"cell": "indrnn", "hidden_size": 5, "forget_bias": 2.0}})
    assert "forget_bias applies to cells with a forget gate (lstm, minlstm); ignored for cell: indrnn" in \
        capsys.readouterr().err


def test_inits():
    cfg = load_config({**ADDING, "model": {"cell": "rnn", "activation": "relu", "init": "identity", "hidden_size": 5}})
    net = get_task("adding")(cfg).build_model()
    assert torch.equal(net.rnn.weight_hh_l0, torch.eye(5)) and not net.rnn.bias_hh_l0.any()
    assert net.rnn.weight_ih_l0.abs().max() < 0.01
    cfg = load_config({**ADDING, "model": {"cell": "lstm", "hidden_size": 5, "forget_bias": 3.0, "init": "orthogonal"}})
    torch.manual_seed(0)
    net = get_task("adding")(cfg).build_model()
    assert net.rnn.bias_ih_l0[5:10].min() > 2.5 and net.rnn.bias_ih_l0[:5].max() < 0.5
    w = net.rnn.weight_hh_l0[:5].detach()
    torch.testing.assert_close(w @ w.T, torch.eye(5), atol=1e-5, rtol=0)


def test_adding_learns_and_api(tmp_path):
    run_dir, metrics = fit(ADDING, tmp_path / "run", quiet=True)
    assert set(metrics["test"]) >= {"mse", "loss", "baseline_mse"}
    assert metrics["test"]["mse"] < 0.05 < metrics["test"]["baseline_mse"]  # well below 0.167
    assert steps_to_solve(run_dir, threshold=0.05) in range(40, 241, 40)  # 40 steps per epoch
    assert steps_to_solve(run_dir, threshold=1e-9) is None
    run = rnnkit.Run.load(run_dir)
    X, y = adding_data(5, 10, np.random.default_rng(3))
    preds = run.predict(X)
    assert [p["index"] for p in preds] == list(range(5))
    assert np.abs(np.array([p["predicted"] for p in preds]) - y).max() < 0.5
    np.savez(tmp_path / "new.npz", X=X, y=y)
    assert run.evaluate(str(tmp_path / "new.npz"))["count"] == 5
    assert run.evaluate()["mse"] == pytest.approx(metrics["test"]["mse"], rel=1e-5)


def test_copy_task_runs(tmp_path, capsys):
    run_dir, metrics = fit(COPY, tmp_path / "run", quiet=True)
    m = metrics["test"]
    assert m["baseline_loss"] == pytest.approx(3 * math.log(4) / 11)
    assert 0.0 <= m["accuracy"] <= 1.0 and m["loss"] > 0
    rec = rnnkit.Run.load(run_dir).predict(np.zeros((2, 11), np.int64))
    assert len(rec) == 2 and len(rec[0]["predicted"].split()) == 3
    assert main(["predict", str(run_dir), str(tmp_path / "missing.npz")]) == 2
    assert "file not found" in capsys.readouterr().err


def test_cli_train_bad_config(tmp_path, capsys):
    cfg = tmp_path / "a.yaml"
    cfg.write_text("task: adding\nmodel: {cell: gru, init: identity}\n")
    assert main(["train", str(cfg), "--out", str(tmp_path / "out")]) == 2
    assert "init: identity (IRNN) needs cell: rnn" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["adding.yaml", "copy.yaml"])
def test_example_configs_load(name):
    from pathlib import Path

    cfg = load_config(Path(__file__).parents[1] / "examples" / name)
    assert cfg.task in ("adding", "copy")
