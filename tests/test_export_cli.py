"""``rnnkit export RUN``: every task's whole model as ONNX (through onnxruntime) and pt2, checked before writing."""

from __future__ import annotations

import builtins
import sys

import numpy as np
import pytest
import torch

from rnnkit.api import Run
from rnnkit.build import fit
from rnnkit.cli import main

TRAIN = {"epochs": 1, "batch_size": 16, "num_threads": 1, "device": "cpu", "seed": 0}
SERIES = (10 + 0.05 * np.arange(120) + 3 * np.sin(2 * np.pi * np.arange(120) / 12)).tolist()
CONFIGS = {
    "classification": {"task": "sequence_classification", "model": {"cell": "gru", "hidden_size": 8},
                       "data": {"source": "embedded", "limit": 120, "test_fraction": 0.2}},
    "bi-lstm-mean": {"task": "sequence_classification",
                     "model": {"cell": "lstm", "hidden_size": 6, "bidirectional": True, "layer_norm": True,
                               "pooling": "mean"},  # two stacked layers: tests/test_export.py (30 s more here)
                     "data": {"source": "embedded", "limit": 120, "test_fraction": 0.2}},
    "forecasting": {"task": "forecasting", "model": {"cell": "gru", "hidden_size": 8},
                    "data": {"source": "array", "values": SERIES, "lookback": 12, "horizon": 3, "season": 12,
                             "relative": True, "val_fraction": 0.1, "test_fraction": 0.2}},
    "language_model": {"task": "language_model", "model": {"cell": "lstm", "hidden_size": 12, "embedding_dim": 8},
                       "data": {"source": "embedded", "limit": 4000, "chunk_length": 16, "steps_per_epoch": 3,
                                "val_fraction": 0.1, "test_fraction": 0.1}},
    "adding": {"task": "adding", "model": {"cell": "rnn", "hidden_size": 6},
               "data": {"num_steps": 8, "train_size": 32, "val_size": 16, "test_size": 16}},
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    out = {}
    for name, cfg in CONFIGS.items():
        out[name], _ = fit({"name": name, **cfg, "training": TRAIN}, root / name, quiet=True)
    return out


def _fresh_inputs(run: Run, batch: int, steps: int) -> dict[str, torch.Tensor]:
    """Inputs of another batch size and length than the export's example, by the task's own spec."""
    spec = run.task.export_spec(run.model, None)
    g = torch.Generator().manual_seed(1)
    feeds = {}
    for name, t in zip(spec.names, spec.inputs, strict=True):
        shape = list(t.shape)
        for axis, label in spec.dynamic.get(name, {}).items():
            shape[axis] = batch if label == "batch" else steps
        if name == "lengths":
            feeds[name] = torch.randint(1, steps + 1, (batch,), generator=g)
        elif t.dtype == torch.int64:
            feeds[name] = torch.randint(0, int(t.max()) + 1, shape, generator=g)
        else:
            feeds[name] = torch.randn(shape, generator=g)
    return feeds


@pytest.mark.parametrize("fmt", ["onnx", "pt2"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_export_matches_the_model_on_new_shapes(runs, name, fmt, tmp_path, capsys):
    if fmt == "onnx":
        ort = pytest.importorskip("onnxruntime")
    out = tmp_path / f"m.{fmt}"
    assert main(["export", str(runs[name]), "--format", fmt, "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "parity: max difference" in printed and "from the run's data" in printed
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # no temporary file left
    run = Run.load(runs[name])
    spec = run.task.export_spec(run.model, None)
    feeds = _fresh_inputs(run, 3, 11)
    with torch.no_grad():
        want = spec.module(*feeds.values())
    want = list(want) if isinstance(want, tuple) else [want]
    if fmt == "onnx":
        got = ort.InferenceSession(str(out)).run(None, {k: v.numpy() for k, v in feeds.items()})
        got = [torch.from_numpy(a) for a in got]
    else:
        got = torch.export.load(str(out)).module()(*feeds.values())
        got = list(got) if isinstance(got, tuple) else [got]
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_export_mistakes_are_one_line(runs, tmp_path, capsys, monkeypatch):
    run = str(runs["classification"])
    assert main(["export", run, "--output", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert main(["export", run, "--output", str(tmp_path / "no" / "m.onnx")]) == 2
    assert "does not exist" in capsys.readouterr().err
    real_import = builtins.__import__

    def no_onnxruntime(name, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError("No module named 'onnxruntime'", name="onnxruntime")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "onnxruntime", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_onnxruntime)
    assert main(["export", run]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'rnnkit[export]'" in err
    assert not (runs["classification"] / "model.onnx").exists()


@pytest.mark.parametrize("fmt", ["onnx", "pt2"])
def test_a_run_whose_texts_are_one_token_long_exports_with_a_free_time_axis(tmp_path, fmt, capsys):
    """torch.export fixes an axis it sees at size 1: a text run cut to one token (data.max_length: 1) gave it
    one-step examples and failed; the examples are now padded past every length, so time stays free."""
    if fmt == "onnx":
        ort = pytest.importorskip("onnxruntime")
    rows = "\n".join(f"{'good tasty' if i % 2 else 'bad stale'} {i},{'great' if i % 2 else 'other'}" for i in range(40))
    (tmp_path / "t.csv").write_text("review,score\n" + rows + "\n")
    cfg = {"name": "one", "task": "text_classification", "model": {"cell": "gru", "hidden_size": 4},
           "data": {"source": "csv", "path": str(tmp_path / "t.csv"), "text_column": "review", "label_column": "score",
                    "max_length": 1}, "training": TRAIN}
    run_dir, _ = fit(cfg, tmp_path / "run", quiet=True)
    out = tmp_path / f"m.{fmt}"
    assert main(["export", str(run_dir), "--format", fmt, "--output", str(out)]) == 0
    assert "parity: max difference" in capsys.readouterr().out
    run = Run.load(run_dir)
    feeds = _fresh_inputs(run, 3, 7)
    with torch.no_grad():
        want = run.task.export_spec(run.model, None).module(*feeds.values())
    if fmt == "onnx":
        got = torch.from_numpy(ort.InferenceSession(str(out)).run(None, {k: v.numpy() for k, v in feeds.items()})[0])
    else:
        got = torch.export.load(str(out)).module()(*feeds.values())
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
