"""Training budgets: max_steps and max_time end a run like any other (evaluated, checkpointed, reported), min_steps
stretches a small training set, warm-up and one-cycle schedules, and all of it through resume."""

from __future__ import annotations

import json
import math

import pytest
import torch

from rnnkit.build import fit, load_config
from rnnkit.config import ConfigError, TrainingConfig
from rnnkit.training.engine import Schedule


def _cfg(**training) -> dict:
    return {"name": "budget", "task": "adding", "model": {"cell": "gru", "hidden_size": 8},
            "data": {"num_steps": 10, "train_size": 64, "val_size": 16, "test_size": 16},
            "training": {"epochs": 3, "batch_size": 16, "lr": 0.01, "num_threads": 1, "device": "cpu", **training}}


def _state(run) -> dict:
    return json.loads((run / "checkpoints" / "last" / "state.json").read_text())


def test_max_steps_stops_mid_epoch_with_a_checkpoint_and_metrics(tmp_path):
    run, metrics = fit(_cfg(max_steps=6, epochs=10), tmp_path / "r", quiet=True)  # 4 steps an epoch
    assert metrics["stopped"] == "max_steps" and metrics["steps"] == 6 and metrics["epochs"] == 2
    assert "mse" in metrics["test"]
    state = _state(run)
    assert state["global_step"] == 6 and state["stopped"] == "max_steps"
    rows = (run / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("epoch,steps,")  # the partial epoch is a row too (2 steps)
    assert rows[2].split(",")[1] == "2"


def test_resume_with_a_larger_budget_goes_on_and_an_unchanged_one_does_not(tmp_path):
    run, _ = fit(_cfg(max_steps=6, epochs=10), tmp_path / "r", quiet=True)
    _, again = fit(None, resume=run, quiet=True)
    assert again["steps"] == 6 and again["stopped"] == "max_steps"  # still over its budget: nothing trained
    _, more = fit(None, resume=run, overrides=["training.max_steps=13"], quiet=True)
    assert more["steps"] == 13 and more["stopped"] == "max_steps"
    assert load_config(run / "config.yaml").training.max_steps == 13


def test_max_time_ends_training_and_is_resumable(tmp_path):
    run, metrics = fit(_cfg(max_time=1e-3, epochs=50), tmp_path / "r", quiet=True)
    assert metrics["stopped"] == "max_time" and 1 <= metrics["steps"] < 50 * 4
    assert (run / "checkpoints" / "best").exists() and "mse" in metrics["test"]
    _, more = fit(None, resume=run, overrides=["training.max_time=1e9", "training.epochs=3"], quiet=True)
    assert more["stopped"] is None and more["epochs"] == 3


def test_min_steps_adds_epochs_to_a_small_training_set(tmp_path):
    _, metrics = fit(_cfg(epochs=1, min_steps=10), tmp_path / "r", quiet=True)
    assert metrics["epochs"] == 3 and metrics["steps"] == 12  # ceil(10 / 4) epochs of 4 steps
    _, metrics = fit(_cfg(epochs=5, min_steps=2), tmp_path / "r2", quiet=True)
    assert metrics["epochs"] == 5  # a minimum, never fewer epochs


def _lrs(**kw) -> list[float]:
    t = TrainingConfig(**{"lr": 1.0, "min_lr": 0.0, **kw})
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=t.lr)
    sched, out = Schedule(t, opt, 100), []
    for _ in range(100):
        out.append(opt.param_groups[0]["lr"])
        sched.after_step()
    return out


def test_warmup_and_onecycle_schedules():
    warm = _lrs(warmup_steps=10)
    assert warm[0] == pytest.approx(0.1) and warm[9] == pytest.approx(1.0) and warm[50] == 1.0
    one = _lrs(schedule="onecycle")
    assert one[0] == pytest.approx(1 / 25) and max(one) == pytest.approx(1.0) and one.index(max(one)) == 30
    assert one[-1] < 1e-3 and all(a >= b for a, b in zip(one[30:], one[31:], strict=False))
    cos = _lrs(schedule="cosine", warmup_steps=4)
    assert cos[0] == pytest.approx(0.25) and cos[50] == pytest.approx(0.5 * (1 + math.cos(math.pi / 2)))


@pytest.mark.parametrize("schedule", ["onecycle", "plateau"])
def test_the_schedule_state_round_trips(schedule):
    t = TrainingConfig(lr=1.0, schedule=schedule, warmup_steps=5, plateau_patience=1)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=t.lr)
    sched = Schedule(t, opt, 60)
    for step in range(37):
        sched.after_step()
        if step % 10 == 9:
            sched.after_epoch(1.0)  # no improvement: plateau lowers its base
    copy = Schedule(t, torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=t.lr), 60)
    copy.load_state_dict(json.loads(json.dumps(sched.state_dict())))
    for _ in range(10):
        assert copy.lr == sched.lr
        sched.after_step()
        copy.after_step()


def test_budgets_planned_for_the_schedule(tmp_path):
    """A cosine schedule ends at max_steps when that comes first (the run is planned for its budget)."""
    run, metrics = fit(_cfg(schedule="cosine", epochs=10, max_steps=8), tmp_path / "r", quiet=True)
    assert _state(run)["schedule"]["lr"] == pytest.approx(0.0, abs=1e-12) and metrics["steps"] == 8


@pytest.mark.parametrize(("key", "value"), [("max_steps", 0), ("max_time", -1.0), ("min_steps", 0),
                                            ("warmup_steps", -2)])
def test_bad_budgets_are_config_errors(key, value):
    with pytest.raises(ConfigError, match=f"training.{key}"):
        load_config({"training": {key: value}})


def test_early_stopping_waits_for_min_steps(tmp_path):
    # lr 0: nothing improves after the first epoch, so patience 1 would stop at epoch 2
    _, early = fit(_cfg(epochs=10, patience=1, lr=1e-12), tmp_path / "a", quiet=True)
    _, waited = fit(_cfg(epochs=10, patience=1, lr=1e-12, min_steps=24), tmp_path / "b", quiet=True)
    assert early["stopped"] == "early_stopping" and early["epochs"] == 2
    assert waited["stopped"] == "early_stopping" and waited["epochs"] == 6  # 24 steps = 6 epochs of 4


def test_early_stopping_counted_in_steps_with_mid_epoch_validation(tmp_path):
    # 4 steps an epoch; validation every 2 steps; nothing improves after the first check (lr ~0)
    run, m = fit(_cfg(epochs=10, lr=1e-12, eval_every_steps=2, patience_steps=5), tmp_path / "s", quiet=True)
    state = _state(run)
    assert m["stopped"] == "early_stopping" and state["best_step"] == 2
    assert m["steps"] == 8  # checks at 2, 6 (mid-epoch) and 4, 8 (epoch ends): 8 is the first >= best + 5
    _, again = fit(None, resume=run, quiet=True)
    assert again["steps"] == m["steps"] and again["stopped"] == "early_stopping"  # a stopped run stays stopped


def test_mid_epoch_validation_keeps_the_best_checkpoint(tmp_path):
    run, m = fit(_cfg(epochs=2, eval_every_steps=1), tmp_path / "b", quiet=True)
    best = json.loads((run / "checkpoints" / "best" / "state.json").read_text())
    assert best["global_step"] == _state(run)["best_step"] >= 1  # written at the step of the best value
