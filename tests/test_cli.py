"""The rnnkit command: demo, train, evaluate, predict, info; user mistakes exit 2 with one line."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import yaml

from rnnkit.cli import main

TINY = {"name": "cli", "model": {"cell": "gru", "hidden_size": 8},
        "data": {"source": "embedded", "limit": 200, "test_fraction": 0.2},
        "training": {"epochs": 1, "batch_size": 32, "num_threads": 1, "device": "cpu"}}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    cfg = root / "c.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    assert main(["train", str(cfg), "--out", str(root / "run"), "--quiet", "--set", "training.epochs=2"]) == 0
    return root / "run"


def rnnkit(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rnnkit", *args], capture_output=True, text=True, cwd=cwd)


def test_demo(tmp_path):
    r = rnnkit("demo", "--out", str(tmp_path / "demo"))
    assert r.returncode == 0, r.stderr
    assert "test: loss" in r.stdout and "report.html" in r.stdout
    metrics = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] > 0.85
    assert "Traceback" not in r.stderr


def test_train_writes_resolved_config_and_command(run_dir):
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["training"]["epochs"] == 2
    assert "--set training.epochs=2" in json.loads((run_dir / "run.json").read_text())["command"]


def test_evaluate_predict_info(run_dir, tmp_path, capsys):
    assert main(["evaluate", str(run_dir), "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["count"] == 40 and 0 <= m["accuracy"] <= 1
    from rnnkit.data.embedded import load_embedded

    d = load_embedded("digits")
    np.savez(tmp_path / "x.npz", X=d.X[:4])
    assert main(["predict", str(run_dir), str(tmp_path / "x.npz"), "--output", str(tmp_path / "p.csv")]) == 0
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0].startswith("index,predicted,p_0,") and len(lines) == 5
    assert main(["predict", str(run_dir), str(tmp_path / "x.npz")]) == 0
    assert capsys.readouterr().out.count("\n") == 5
    assert main(["info", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "checkpoint last: ok, epoch 2" in out and "test: loss" in out


@pytest.mark.parametrize("args, message", [
    (["train", "missing.yaml"], "config file not found: missing.yaml"),
    (["train", "c.yaml", "--set", "model.hiden_size=3"], "did you mean 'hidden_size'"),
    (["train", "c.yaml", "--set", "data.source=npz", "--set", "data.path=none.npz"], "file not found: none.npz"),
    (["train"], "give a CONFIG file"),
    (["train", "--resume", "nowhere"], "nowhere is not a run folder"),
    (["evaluate", "nowhere"], "nowhere is not a run folder"),
    (["predict", "RUN", "none.npz"], "file not found"),
    (["predict", "RUN", "c.yaml"], "unsupported input type '.yaml'"),
    (["predict", "RUN", "bad.npz"], "expected (N, T, D)"),
    (["predict", "RUN", "x.npz", "--output", "p.txt"], "use a .csv or .json"),
    (["train", "c.yaml", "--out", "RUN"], "already exists"),
    (["evaluate", "CORRUPT"], "does not match its sha256"),
])
def test_user_mistakes_exit_2_with_one_line(run_dir, tmp_path, args, message):
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(TINY))
    np.savez(tmp_path / "bad.npz", X=np.zeros(5, np.float32))
    if "CORRUPT" in args:
        import shutil

        shutil.copytree(run_dir, tmp_path / "CORRUPT")
        f = tmp_path / "CORRUPT" / "checkpoints" / "best" / "model.safetensors"
        f.write_bytes(b"x" + f.read_bytes()[1:])
    args = [str(run_dir) if a == "RUN" else a for a in args]
    r = rnnkit(*args, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("rnnkit: error: ") and r.stderr.count("\n") == 1, r.stderr
    assert message in r.stderr


@pytest.mark.parametrize("args, message", [
    (["generate", "R", "--seed", "99999999999999999999"], "--seed: 99999999999999999999 is out of range; give 0 to"),
    (["generate", "R", "--length", "-1"], "--length: -1 is out of range; give 0 to 10,000,000"),
    (["generate", "R", "--top-k", "0"], "--top-k: 0 is out of range"),
    (["predict", "R", "--beam", "9223372036854775808"], "--beam: 9223372036854775808 is out of range; give 1 to 1,000"),
    (["predict", "R", "--n-best", "x"], "--n-best: 'x' is not a whole number"),
    (["explain", "R", "--steps", "1" + "0" * 40], "--steps: 100000000000000000000000000... is out of range"),
    (["forecast", "R", "--steps", "1000001"], "--steps: 1000001 is out of range; give 1 to 1,000,000"),
    (["backtest", "c.yaml", "--folds", "0"], "--folds: 0 is out of range"),
    (["tune", "c.yaml", "--folds", "1"], "--folds: 1 is out of range; give 2 to"),
    (["tune", "c.yaml", "--trials", "10001"], "--trials: 10001 is out of range; give 1 to 10,000"),
    (["diagnose", "R", "--batch-size", "-5"], "--batch-size: -5 is out of range"),
])
def test_counts_out_of_range_are_refused_before_anything_loads(args, message, capsys):
    """A huge count overflowed torch's int64 (an internal error) or ran for hours (a forecast of 10**20 steps);
    each is now an argument error naming its range, raised before the run folder is even read."""
    with pytest.raises(SystemExit) as e:
        main(args)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and message in err, err


@pytest.mark.parametrize("cmd", ["demo", "train", "evaluate", "predict", "info"])
def test_help_has_examples(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0 and "examples:" in capsys.readouterr().out


def test_closed_stdout_pipe_is_quiet():
    """`rnnkit info RUN | head -1`: when the reader leaves early, exit quietly instead of a traceback."""
    import subprocess
    import sys

    code = ("import sys, rnnkit.cli as c\n"
            "def boom(args): raise BrokenPipeError(32, 'Broken pipe')\n"
            "c.cmd_info = boom\n"
            "sys.exit(c.main(['info', 'somewhere']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr


def test_version_and_config_show(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("rnnkit ")
    assert main(["config", "show", "--task", "forecasting"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["task"] == "forecasting" and shown["data"]["lookback"] == 24 and "epochs" in shown["training"]
    for task in ("text_classification", "seq2seq", "language_model"):  # defaults that read a file name none
        assert main(["config", "show", "--task", task]) == 0, capsys.readouterr().err
        assert yaml.safe_load(capsys.readouterr().out)["data"]["path"] is None
    (tmp_path / "t.yaml").write_text("task: text_classification\n")
    assert main(["config", "show", str(tmp_path / "t.yaml")]) == 2  # a config to train still needs its file
    assert "data.path is required" in capsys.readouterr().err
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(TINY))
    assert main(["config", "show", str(tmp_path / "c.yaml"), "--set", "model.hidden_size=5"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["model"]["hidden_size"] == 5 and shown["model"]["pooling"] == "last"  # a default filled in
    assert main(["config", "show"]) == 2
    assert "give a CONFIG file or --task NAME" in capsys.readouterr().err


def test_verbs_follow_what_the_run_offers(run_dir, capsys):
    """forecast / generate / --text are refused by what the run's objective offers, naming who offers it."""
    assert main(["forecast", str(run_dir), "--steps", "3"]) == 2
    assert "rnnkit forecast needs a run of task: forecasting" in capsys.readouterr().err
    assert main(["generate", str(run_dir)]) == 2
    assert "needs a run of task: language_model" in capsys.readouterr().err
    assert main(["predict", str(run_dir), "--text", "hello"]) == 2
    assert "needs a run of task: seq2seq or task: text_classification" in capsys.readouterr().err


def test_a_run_predicts_after_its_training_file_is_gone(tmp_path, capsys):
    """A run folder keeps what prediction needs (weights, vocabulary, labels); its config's data.path named a
    file that had to exist, so a run copied to another machine, or whose CSV was moved, could not predict."""
    rows = "\n".join(f"{'good tasty' if i % 2 else 'bad stale'} food {i},{'great' if i % 2 else 'other'}"
                     for i in range(40))
    (tmp_path / "t.csv").write_text("review,score\n" + rows + "\n")
    (tmp_path / "new.csv").write_text("review\ngood tasty food\nbad stale food\n")
    cfg = {"name": "gone", "task": "text_classification", "model": {"cell": "gru", "hidden_size": 4},
           "data": {"source": "csv", "path": str(tmp_path / "t.csv"), "text_column": "review",
                    "label_column": "score"},
           "training": {"epochs": 1, "num_threads": 1, "device": "cpu"}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    (tmp_path / "t.csv").unlink()
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "run"), str(tmp_path / "new.csv")]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 3  # header + two texts
    assert main(["evaluate", str(tmp_path / "run")]) == 2  # the test split is the training file's: gone
    assert "file not found" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path / "run")]) == 2  # training still needs it
    assert "t.csv" in capsys.readouterr().err
