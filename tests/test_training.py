"""The training engine and the sequence-classification task, in-process on tiny models and data."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import rnnkit.api as api
from rnnkit.build import fit, load_config
from rnnkit.data import DataError
from rnnkit.layers.native import cpu_has_bf16
from rnnkit.tasks.sequence_classification import SequenceClassifier, classification_metrics, confusion_matrix
from rnnkit.training import Callback, CheckpointError, TrainingDiverged, register_callback
from rnnkit.training.callbacks import CALLBACKS

TINY = {
    "name": "tiny",
    "model": {"cell": "gru", "hidden_size": 12},
    "data": {"source": "embedded", "limit": 240, "val_fraction": 0.25, "test_fraction": 0.25},
    "training": {"epochs": 2, "batch_size": 16, "lr": 0.01, "num_threads": 1, "device": "cpu"},
}


def tiny(**sections) -> dict:
    return {k: {**v, **sections.get(k, {})} if isinstance(v, dict) else sections.get(k, v) for k, v in TINY.items()}


def weights(run_dir: Path, name: str = "last") -> bytes:
    return (run_dir / "checkpoints" / name / "model.safetensors").read_bytes()


def test_run_folder_contents(tmp_path):
    run_dir, metrics = fit(tiny(), tmp_path / "run", quiet=True)
    for f in ("config.yaml", "metrics.csv", "metrics.json", "run.json", "report.html"):
        assert (run_dir / f).is_file(), f
    for ck in ("last", "best"):
        files = {p.name for p in (run_dir / "checkpoints" / ck).iterdir()}
        assert files == {"model.safetensors", "optimizer.safetensors", "state.safetensors", "state.json",
                         "manifest.json"}
    rows = list(csv.DictReader(open(run_dir / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert {"train_loss", "val_loss", "val_accuracy", "val_macro_f1", "lr", "grad_norm", "seconds"} <= set(rows[0])
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved == metrics and set(saved["test"]) >= {"accuracy", "macro_f1", "confusion_matrix"}
    assert sum(map(sum, saved["test"]["confusion_matrix"])) == 60  # 25 % of 240
    assert load_config(run_dir / "config.yaml").model.hidden_size == 12  # the resolved config reloads


def test_learns_digits(tmp_path):
    cfg = tiny(training={"epochs": 6, "lr": 0.02}, model={"hidden_size": 24}, data={"limit": 600})
    _, metrics = fit(cfg, tmp_path / "run", quiet=True)
    assert metrics["test"]["accuracy"] > 0.6  # chance is 0.1


def test_deterministic_and_seed_matters(tmp_path):
    a, _ = fit(tiny(), tmp_path / "a", quiet=True)
    b, _ = fit(tiny(), tmp_path / "b", quiet=True)
    c, _ = fit(tiny(training={"seed": 1}), tmp_path / "c", quiet=True)
    assert weights(a) == weights(b) and weights(a) != weights(c)


def test_refuses_existing_run_folder_and_leaves_it_alone(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="--resume"):
        fit(tiny(), out, quiet=True)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_bad_data_fails_before_creating_the_run_folder(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, X=np.zeros((4, 3, 2), np.float32))  # no y
    with pytest.raises(DataError, match="lacks array y"):
        fit(tiny(data={"source": "npz", "path": str(bad), "limit": None}), tmp_path / "run", quiet=True)
    assert not (tmp_path / "run").exists()


_INTERRUPT = {"at": None}


@register_callback("test_interrupt")
class Interrupt(Callback):
    """Test-only: simulates a crash (KeyboardInterrupt) at a given global step, once."""

    def after_backward(self, ctx, batch):
        if _INTERRUPT["at"] == ctx.global_step + 1:
            _INTERRUPT["at"] = None
            raise KeyboardInterrupt


def test_mid_epoch_resume_is_bit_identical(tmp_path):
    cfg = tiny(training={"epochs": 3, "checkpoint_every_steps": 4, "schedule": "cosine"},
               model={"head_dropout": 0.2, "recurrent_dropout": 0.1})
    full, _ = fit(cfg, tmp_path / "full", quiet=True)
    _INTERRUPT["at"] = 14  # 135 train items = 9 steps per epoch; checkpoints at steps 4, 8, 9 (epoch end), 12
    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        fit({**cfg, "callbacks": {"test_interrupt": {}}}, cut, quiet=True)
    state = json.loads((cut / "checkpoints" / "last" / "state.json").read_text())
    assert (state["epoch"], state["step_in_epoch"]) == (1, 3)  # global step 12: epoch 2, 3 batches in
    fit(None, resume=cut, quiet=True)
    assert weights(full) == weights(cut)
    rows = lambda d: [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(open(d / "metrics.csv"))]  # noqa: E731
    assert rows(full) == rows(cut)
    assert "test_interrupt" in CALLBACKS


def test_corrupted_checkpoint_is_detected(tmp_path):
    run_dir, _ = fit(tiny(training={"epochs": 1}), tmp_path / "run", quiet=True)
    model = run_dir / "checkpoints" / "last" / "model.safetensors"
    model.write_bytes(model.read_bytes()[:-10])  # truncated
    with pytest.raises(CheckpointError, match="model.safetensors does not match its sha256"):
        fit(None, resume=run_dir, quiet=True)
    (run_dir / "checkpoints" / "best" / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match="manifest.json is missing"):
        api.Run.load(run_dir)


def test_interrupted_checkpoint_swap_falls_back_to_previous(tmp_path):
    run_dir, _ = fit(tiny(training={"epochs": 1}), tmp_path / "run", quiet=True)
    last = run_dir / "checkpoints" / "last"
    last.rename(run_dir / "checkpoints" / ".last.old")  # crash between the two renames
    run = api.Run.load(run_dir, checkpoint="last")
    assert run.checkpoint == "last"


@register_callback("test_poison")
class Poison(Callback):
    """Test-only: writes NaN into the weights at step 3, so the next loss is NaN."""

    def after_backward(self, ctx, batch):
        if ctx.global_step + 1 == 3:
            with torch.no_grad():
                next(ctx.model.parameters()).fill_(float("nan"))


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    cfg = {**tiny(training={"checkpoint_every_steps": 2, "epochs": 1}), "callbacks": {"test_poison": {}}}
    with pytest.raises(TrainingDiverged, match=r"loss became nan at epoch 1, step 4.*last good checkpoint"):
        fit(cfg, tmp_path / "run", quiet=True)
    state = json.loads((tmp_path / "run" / "checkpoints" / "last" / "state.json").read_text())
    assert state["global_step"] == 2
    run = api.Run.load(tmp_path / "run", checkpoint="last")
    assert all(torch.isfinite(p).all() for p in run.model.parameters())


def test_early_stopping_and_schedules(tmp_path):
    still = tiny(training={"epochs": 6, "optimizer": "sgd", "lr": 1e-30, "patience": 2})
    _, m = fit(still, tmp_path / "still", quiet=True)
    assert m["stopped"] == "early_stopping" and m["epochs"] == 3 and m["best_epoch"] == 1
    cos, _ = fit(tiny(training={"schedule": "cosine", "min_lr": 1e-4}), tmp_path / "cos", quiet=True)
    lrs = [float(r["lr"]) for r in csv.DictReader(open(cos / "metrics.csv"))]
    assert lrs[0] < 0.01 and lrs[-1] == pytest.approx(1e-4)
    plateau = tiny(training={"epochs": 4, "optimizer": "sgd", "lr": 1e-30, "schedule": "plateau",
                             "plateau_patience": 1, "plateau_factor": 0.5})
    p, _ = fit(plateau, tmp_path / "plateau", quiet=True)
    lrs = [float(r["lr"]) for r in csv.DictReader(open(p / "metrics.csv"))]
    assert lrs == pytest.approx([1e-30, 1e-30, 5e-31, 5e-31])


@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_pooling_honours_lengths(pooling, bidirectional):
    torch.manual_seed(0)
    cfg = load_config({"model": {"cell": "lstm", "hidden_size": 5, "pooling": pooling, "bidirectional": bidirectional}})
    model = SequenceClassifier(cfg.model, 3, 4, per_step=False).eval()
    x = torch.randn(2, 6, 3)
    padded = x.clone()
    padded[0, 4:] = 99.0  # garbage after the true length 4
    lengths = torch.tensor([4, 6])
    out = model(padded, lengths)
    assert torch.allclose(out[0], model(x[:1, :4])[0], atol=1e-6)
    assert torch.allclose(out[1], model(x[1:])[0], atol=1e-6)


def test_metrics_by_hand():
    y, pred = np.array([0, 0, 1, 1, 2]), np.array([0, 1, 1, 1, 0])
    cm = confusion_matrix(y, pred, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    m = classification_metrics(cm)
    assert m["accuracy"] == pytest.approx(0.6)
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 0.0) / 3)


def _variable_length_npz(path: Path, per_step: bool, n: int = 64, t: int = 7) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, t, 2)).astype(np.float32)
    lengths = rng.integers(2, t + 1, n)
    X[np.arange(t) >= lengths[:, None]] = 0.0
    y = (X[..., 0] > 0).astype(np.int64) if per_step else (X[..., 0].sum(1) > 0).astype(np.int64)
    np.savez(path, X=X, y=y, lengths=lengths, classes=np.array(["neg", "pos"]))


@pytest.mark.parametrize("per_step", [False, True])
def test_variable_lengths_per_step_and_run_api(tmp_path, per_step):
    data = tmp_path / "d.npz"
    _variable_length_npz(data, per_step)
    cfg = tiny(data={"source": "npz", "path": str(data), "limit": None, "standardize": True},
               model={"pooling": "mean"}, training={"epochs": 8, "lr": 0.03})
    run = api.train(cfg, out=tmp_path / "run")
    assert run.metrics["test"]["accuracy"] > 0.7
    again = api.Run.load(tmp_path / "run")
    assert again.evaluate(data)["count"] == (int(np.load(data)["lengths"].sum()) if per_step else 64)
    X = np.load(data)["X"][:3]
    preds = again.predict(X, lengths=np.array([7, 3, 5]))
    assert len(preds) == (15 if per_step else 3)
    assert {"index", "predicted", "p_neg", "p_pos"} <= set(preds[0])
    assert sum(preds[0][k] for k in ("p_neg", "p_pos")) == pytest.approx(1, abs=1e-5)
    with pytest.raises(DataError, match="trained on 2"):
        again.predict(np.zeros((2, 7, 3)))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("amp", [False, True])
def test_cuda_training_and_mid_epoch_resume(tmp_path, amp):
    cfg = tiny(training={"device": "cuda", "amp": amp, "epochs": 3, "checkpoint_every_steps": 4, "lr": 0.02},
               model={"hidden_size": 32}, data={"limit": 600})
    full, metrics = fit(cfg, tmp_path / "full", quiet=True)
    assert json.loads((full / "run.json").read_text())["device"].startswith("cuda")
    assert metrics["test"]["accuracy"] > 0.3
    _INTERRUPT["at"] = 30
    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        fit({**cfg, "callbacks": {"test_interrupt": {}}}, cut, quiet=True)
    fit(None, resume=cut, quiet=True)
    a, b = api.Run.load(full, checkpoint="last").model, api.Run.load(cut, checkpoint="last").model
    for p, q in zip(a.parameters(), b.parameters(), strict=True):  # cuDNN is not bitwise deterministic
        torch.testing.assert_close(p, q, rtol=0, atol=1e-3 if amp else 1e-4)


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no bf16 instructions (amp stays float32 there)")
def test_cpu_amp_learns_and_resumes_bit_identically(tmp_path):
    """training.amp on a bf16 CPU: bf16 matmuls (the native kernel's step GEMMs too), float32 weights; it learns,
    differs from the float32 run (the bf16 path ran), and a mid-epoch resume gives the same weights to the bit."""
    cfg = tiny(training={"amp": True, "epochs": 3, "checkpoint_every_steps": 4, "lr": 0.02},
               model={"hidden_size": 32}, data={"limit": 600})
    full, metrics = fit(cfg, tmp_path / "full", quiet=True)
    assert metrics["test"]["accuracy"] > 0.3  # chance is 0.1
    plain, _ = fit({**cfg, "training": {**cfg["training"], "amp": False}}, tmp_path / "plain", quiet=True)
    assert weights(full) != weights(plain)
    assert all(p.dtype == torch.float32 for p in api.Run.load(full).model.parameters())
    _INTERRUPT["at"] = 30
    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        fit({**cfg, "callbacks": {"test_interrupt": {}}}, cut, quiet=True)
    fit(None, resume=cut, quiet=True)
    assert weights(full) == weights(cut)


def test_cpu_amp_is_ignored_without_bf16_instructions(tmp_path, monkeypatch):
    """Where the CPU would only emulate bf16 (slower than float32), amp trains in float32: the same weights."""
    import rnnkit.training.engine as engine

    monkeypatch.setattr(engine, "cpu_has_bf16", lambda: False)
    cfg = tiny()
    amp, _ = fit({**cfg, "training": {**cfg["training"], "amp": True}}, tmp_path / "amp", quiet=True)
    plain, _ = fit(cfg, tmp_path / "plain", quiet=True)
    assert weights(amp) == weights(plain)


def test_monitor_direction_follows_the_metric():
    from rnnkit.training.engine import better, lower_is_better

    for m in ("val_loss", "val_mse", "val_bpc", "val_perplexity", "val_mase", "train_loss", "val_smape"):
        assert lower_is_better(m), m
    for m in ("val_accuracy", "val_macro_f1", "val_roc_auc", "val_coverage"):
        assert not lower_is_better(m), m
    assert better(0.1, 0.2, "val_mse") and not better(0.3, 0.2, "val_mse")
    assert better(0.9, 0.8, "val_accuracy") and not better(0.7, 0.8, "val_accuracy")


def test_flush_denormal_is_applied(tmp_path, monkeypatch):
    calls = []
    real = torch.set_flush_denormal
    monkeypatch.setattr(torch, "set_flush_denormal", lambda mode: calls.append(mode) or real(mode))
    try:
        fit(tiny(training={"flush_denormal": True, "epochs": 1}), tmp_path / "r", quiet=True)
    finally:
        real(False)
    assert calls and calls[0] is True
