"""Run folders stay good: one writer per run (an OS lock), checkpoints never hold non-finite numbers, resume
changes only what may change, and damaged run files are one-line errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from rnnkit.build import fit
from rnnkit.cli import main
from rnnkit.training import Callback, TrainingDiverged, register_callback

TINY = {"name": "rel", "model": {"cell": "gru", "hidden_size": 6},
        "data": {"source": "embedded", "limit": 120, "test_fraction": 0.2},
        "training": {"epochs": 1, "batch_size": 32, "num_threads": 1, "device": "cpu"}}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("rel") / "run"
    fit(TINY, out, quiet=True)
    return out


HOLD = """import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.pwrite(fd, str(os.getpid()).encode(), 0)
print("locked", flush=True)
time.sleep(60)
"""


def test_a_second_writer_is_refused_at_once_and_a_killed_one_leaves_no_lock(run_dir, capsys):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir / ".lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = {p.name: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file() and p.name != ".lock"}
        start = time.monotonic()
        assert main(["train", "--resume", str(run_dir), "--set", "training.epochs=2"]) == 2
        assert time.monotonic() - start < 30  # at once, not after the holder ends
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"is in use by another rnnkit process (pid {holder.pid})" in err
        after = {p.name: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file() and p.name != ".lock"}
        assert after == before  # the first writer's folder untouched
    finally:
        os.kill(holder.pid, signal.SIGKILL)  # the OS releases the lock with the process
        holder.wait()
    assert main(["train", "--resume", str(run_dir), "--set", "training.epochs=2", "--quiet"]) == 0
    assert json.loads((run_dir / "metrics.json").read_text())["epochs"] == 2


def test_resume_set_only_takes_keys_that_may_change(run_dir, capsys):
    assert main(["train", "--resume", str(run_dir), "--set", "model.hidden_size=9"]) == 2
    err = capsys.readouterr().err
    assert "--set model.hidden_size cannot change when resuming" in err and "training.epochs" in err
    assert main(["train", "--resume", str(run_dir), "--set", "training.lr=0.5"]) == 2
    assert main(["train", str(run_dir / "config.yaml"), "--from", "best"]) == 2
    assert "--from applies to --resume" in capsys.readouterr().err


def test_resume_from_best(tmp_path):
    import shutil

    from rnnkit.training import CheckpointError

    out, _ = fit({**TINY, "training": {**TINY["training"], "epochs": 2}}, tmp_path / "run", quiet=True)
    best = json.loads((out / "checkpoints" / "best" / "state.json").read_text())["epoch"]
    shutil.rmtree(out / "checkpoints" / "last")  # only best is left: --from last has nothing to read
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        fit(None, resume=out, overrides=["training.epochs=3"], quiet=True)
    _, m = fit(None, resume=out, overrides=["training.epochs=3"], resume_from="best", quiet=True)
    assert m["epochs"] == 3 and best in (1, 2)
    assert len((out / "metrics.csv").read_text().splitlines()) == 1 + 3  # best's history, then the epochs after it


@register_callback("test_inf_weights")
class InfWeights(Callback):
    """Test-only: at step 3 sets a weight to inf and the gradients to zero, so the loss of that step is finite but
    the weights after it are not."""

    def after_backward(self, ctx, batch):
        if ctx.global_step + 1 == 3:
            with torch.no_grad():
                next(ctx.model.parameters()).view(-1)[0] = float("inf")
                for p in ctx.model.parameters():
                    p.grad.zero_()


def test_non_finite_weights_are_never_checkpointed(tmp_path):
    cfg = {**TINY, "training": {**TINY["training"], "checkpoint_every_steps": 2}, "callbacks": {"test_inf_weights": {}}}
    with pytest.raises(TrainingDiverged, match=r"last good checkpoint is .*last \(epoch 0, step 2\)"):
        fit(cfg, tmp_path / "run", quiet=True)
    state = json.loads((tmp_path / "run" / "checkpoints" / "last" / "state.json").read_text())
    assert state["global_step"] == 2 and not (tmp_path / "run" / "checkpoints" / "best").exists()


def test_divergence_before_any_checkpoint_says_so(tmp_path):
    cfg = {**TINY, "callbacks": {"test_inf_weights": {}}}
    with pytest.raises(TrainingDiverged, match="no checkpoint was written"):
        fit(cfg, tmp_path / "run", quiet=True)


def test_damaged_run_files_are_one_line_errors(run_dir, tmp_path, capsys):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    (copy / "metrics.json").write_text('{"val": {"loss": 0.5')  # truncated
    assert main(["info", str(copy)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "metrics.json is damaged (not valid JSON" in err
    (copy / "run.json").write_text("[1, 2]")
    assert main(["info", str(copy)]) == 2
    assert "run.json is damaged (a JSON list, not an object)" in capsys.readouterr().err


def test_a_run_that_never_starts_leaves_no_folder(tmp_path):
    from rnnkit.data import DataError

    (tmp_path / "bad.npz").write_bytes(b"not a zip")  # found by the config check, refused when loaded
    with pytest.raises(DataError):
        fit({**TINY, "data": {"source": "npz", "path": str(tmp_path / "bad.npz")}}, tmp_path / "run", quiet=True)
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------------- validation classes
BAD_CONFIGS = [
    ({"training": {"lr": float("nan")}}, "training.lr must be a finite number"),
    ({"training": {"clip_norm": float("inf")}}, "training.clip_norm must be a finite number"),
    ({"training": {"weight_decay": "nan"}}, "training.weight_decay must be a finite number"),
    ({"training": {"num_threads": 100000}}, "training.num_threads: 100000 threads on a machine with"),
    ({"model": {"hidden_size": 10_000_000}}, "billion parameters"),
    ({"model": {"hidden_size": 2**60}}, "far too large"),
    ({"name": "x" * 300}, "too long for a folder name"),
    ({"model": {"engine": "fused", "layer_norm": True}}, "model: engine='fused' cannot run"),
    ({"model": {"hiden_size": 3}}, "did you mean 'hidden_size'"),
    ({"model": {"hidden_size": 0}}, "model.hidden_size must be > 0"),  # the section, not 'classifiermodel'
]


@pytest.mark.parametrize(("change", "message"), BAD_CONFIGS, ids=[m[:30] for _, m in BAD_CONFIGS])
def test_bad_settings_are_one_line_errors_before_anything_runs(change, message, tmp_path, capsys):
    import yaml

    cfg = {k: ({**v, **change[k]} if isinstance(v, dict) else change[k]) if k in change else v for k, v in TINY.items()}
    cfg.update({k: v for k, v in change.items() if k not in cfg})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_yaml_that_expands_without_bound_and_non_utf8_configs(tmp_path, capsys):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 40)]
    (tmp_path / "bomb.yaml").write_text("\n".join(lines) + "\n")
    assert main(["train", str(tmp_path / "bomb.yaml")]) == 2
    assert "YAML aliases" in capsys.readouterr().err
    (tmp_path / "latin1.yaml").write_bytes("name: caf\xe9\n".encode("latin-1"))
    assert main(["train", str(tmp_path / "latin1.yaml")]) == 2
    err = capsys.readouterr().err
    assert "latin1.yaml is not UTF-8 text (byte 0xe9 on line 1)" in err


def test_label_values_that_would_explode_the_class_count(tmp_path, capsys):
    import numpy as np

    X = np.zeros((20, 3, 2), np.float32)
    y = np.arange(20, dtype=np.int64)
    y[0] = 2**40
    np.savez(tmp_path / "d.npz", X=X, y=y)
    cfg = {**TINY, "data": {"source": "npz", "path": str(tmp_path / "d.npz")}}
    import yaml

    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run")]) == 2
    assert "relabel y as 0..K-1" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_bug_is_an_internal_error_with_its_traceback(monkeypatch, capsys):
    import rnnkit.cli as cli

    def broken(args):
        raise KeyError("oops")

    monkeypatch.setattr(cli, "cmd_doctor", broken)
    assert main(["doctor"]) == 1
    err = capsys.readouterr().err
    assert "rnnkit: internal error (a bug in rnnkit, not in your input): KeyError" in err
    path = err.split("the full traceback is in ")[1].split(" ")[0]
    assert "Traceback" in open(path).read()
    monkeypatch.setenv("RNNKIT_DEBUG", "1")
    with pytest.raises(KeyError):
        main(["doctor"])
    monkeypatch.delenv("RNNKIT_DEBUG")

    def bad_descriptor(args):  # an OSError that is no path's fault is still a bug
        import os

        os.close(-1)

    monkeypatch.setattr(cli, "cmd_doctor", bad_descriptor)
    assert main(["doctor"]) == 1
    assert "internal error (a bug in rnnkit, not in your input): OSError: [Errno 9]" in capsys.readouterr().err


def test_running_out_of_memory_is_a_one_line_error_naming_what_to_lower(monkeypatch, capsys):
    """The CPU allocator's refusal is a RuntimeError that said 'internal error'; too large a batch or model is
    the config's to mend, so it is exit 2 with the size that failed."""
    import torch

    import rnnkit.cli as cli

    monkeypatch.setattr(cli, "cmd_doctor", lambda args: torch.empty(2**48, dtype=torch.uint8))
    assert main(["doctor"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "rnnkit: error: out of memory (an allocation of 262144.0 GiB failed); lower " \
        "training.batch_size" in err

    def python_refuses(args):
        raise MemoryError

    monkeypatch.setattr(cli, "cmd_doctor", python_refuses)
    assert main(["doctor"]) == 2
    assert capsys.readouterr().err.startswith("rnnkit: error: out of memory; lower")


def test_paths_the_file_system_refuses_are_one_line_errors(run_dir, tmp_path, capsys):
    """A name over 255 bytes was an internal error (OSError ENAMETOOLONG) in train, predict and export; a NUL
    byte, which only an in-process caller can pass, was a ValueError."""
    import yaml

    long = "y" * 300
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(TINY))
    for argv in (["train", str(tmp_path / "c.yaml"), "--out", str(tmp_path / long)],
                 ["predict", str(run_dir), long + ".npz"],
                 ["export", str(run_dir), "--format", "pt2", "--output", str(tmp_path / (long + ".pt2"))]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "...yyyyyyyy" in err and "the name is too long for the file system" in err
    assert main(["explain", str(run_dir), "a\x00b"]) == 2
    assert capsys.readouterr().err == "rnnkit: error: an argument contains a NUL byte (\\x00); remove it\n"
    assert [p.name for p in tmp_path.iterdir()] == ["c.yaml"]  # nothing written


def _copy(run_dir, tmp_path):
    import shutil

    shutil.copytree(run_dir, tmp_path / "copy")
    return tmp_path / "copy"


def test_edited_or_forged_run_folders_are_one_line_errors(run_dir, tmp_path, capsys):
    import hashlib

    import yaml

    copy = _copy(run_dir, tmp_path)
    cfg = yaml.safe_load((copy / "config.yaml").read_text())
    cfg["model"]["hidden_size"] = 9  # the config no longer matches the weights
    (copy / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["evaluate", str(copy)]) == 2
    err = capsys.readouterr().err
    assert "do not fit the model" in err and "was the config edited" in err and err.count("\n") == 1
    cfg["model"]["hidden_size"] = TINY["model"]["hidden_size"]
    (copy / "config.yaml").write_text(yaml.safe_dump(cfg))
    for name in ("best", "last"):  # a forged weights file whose manifest was forged to match
        ck = copy / "checkpoints" / name
        if ck.exists():
            (ck / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{bogus!}")
            manifest = json.loads((ck / "manifest.json").read_text())
            manifest["files"]["model.safetensors"] = hashlib.sha256((ck / "model.safetensors").read_bytes()).hexdigest()
            (ck / "manifest.json").write_text(json.dumps(manifest))
    assert main(["evaluate", str(copy)]) == 2
    assert "is not a readable safetensors file" in capsys.readouterr().err
    for name in ("best", "last"):  # a manifest without entries
        ck = copy / "checkpoints" / name
        if ck.exists():
            (ck / "manifest.json").write_text(json.dumps({"format": 1, "files": {}}))
    assert main(["evaluate", str(copy)]) == 2
    assert "manifest.json lists no files" in capsys.readouterr().err


def test_data_too_small_or_incomplete(tmp_path, capsys):
    import yaml

    def train(cfg):
        (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
        code = main(["train", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run")])
        assert not (tmp_path / "run").exists()
        return code, capsys.readouterr().err

    code, err = train({**TINY, "data": {"source": "embedded", "limit": 1}})
    assert code == 2 and "the val split is empty" in err  # not a val_loss of 0.0
    (tmp_path / "t.csv").write_text("text,label\nnice,pos\nbad,\nfine,pos\n")
    code, err = train({"name": "t", "task": "text_classification", "data": {"source": "csv",
                       "path": str(tmp_path / "t.csv")}, "training": {"epochs": 1}})
    assert code == 2 and "row 2 (line 3) has no label in column 'label'" in err  # not a class named ''
    code, err = train({"name": "s", "task": "forecasting", "data": {"source": "embedded", "name": "sunspots",
                       "season": 400, "lookback": 12}, "training": {"epochs": 1}})
    assert code == 2 and "data.season 400 is not shorter than the training part" in err


def test_a_text_too_small_for_a_language_model(tmp_path, capsys):
    import yaml

    (tmp_path / "tiny.txt").write_text("abc")
    cfg = {"name": "lm", "task": "language_model", "data": {"source": "text", "path": str(tmp_path / "tiny.txt")},
           "training": {"epochs": 1}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run")]) == 2
    assert "the training text has 3 tokens" in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_argument_errors_and_non_utf8_data_name_what_and_where(tmp_path, capsys):
    import yaml

    with pytest.raises(SystemExit) as e:
        main(["train", "--bogus"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and err.startswith("rnnkit: error: unrecognized arguments")
    (tmp_path / "t.csv").write_bytes("text,label\ncaf\xe9,pos\nok,neg\n".encode("latin-1"))
    cfg = {"name": "t", "task": "text_classification", "data": {"source": "csv", "path": str(tmp_path / "t.csv")}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run")]) == 2
    assert "t.csv is not UTF-8 text (byte 0xe9 on line 2)" in capsys.readouterr().err
    cfg = {"name": "q", "task": "forecasting", "model": {"loss": "quantile", "quantiles": [0.1, "half", 0.9]}}
    (tmp_path / "q.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["config", "show", str(tmp_path / "q.yaml")]) == 2
    assert "model.quantiles must be a list of numbers" in capsys.readouterr().err


def test_non_utf8_series_and_pair_files_are_one_line_errors(tmp_path, capsys):
    """A forecasting run's predict/evaluate file and a seq2seq pairs file in Latin-1 name the file, the byte and
    the line (the first was a UnicodeDecodeError, the second a wrong call inside the error itself)."""
    import yaml

    bad = tmp_path / "latin1.csv"
    bad.write_bytes("date,value\n2000-01,1.0\ncaf\xe9,2.0\n".encode("latin-1"))
    runs = {}
    for name, cfg in {
        "fc": {"task": "forecasting", "model": {"cell": "gru", "hidden_size": 4},
               "data": {"source": "embedded", "name": "sunspots", "lookback": 12, "horizon": 2}},
        "s2s": {"task": "seq2seq", "model": {"cell": "gru", "hidden_size": 8}, "data": {"source": "embedded",
                                                                                     "limit": 40}}}.items():
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump({"name": name, **cfg, "training": {
            "epochs": 1, "num_threads": 1, "device": "cpu"}}))
        assert main(["train", str(tmp_path / f"{name}.yaml"), "--quiet", "--out", str(tmp_path / name)]) == 0
        runs[name] = str(tmp_path / name)
    capsys.readouterr()
    for argv in (["predict", runs["fc"], str(bad)], ["evaluate", runs["fc"], "--data", str(bad)],
                 ["evaluate", runs["s2s"], "--data", str(bad)]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "latin1.csv is not UTF-8 text (byte 0xe9 on line 3)" in err, (argv, err)


@pytest.mark.parametrize("task", ["text_classification", "language_model", "seq2seq"])
def test_an_embedding_too_wide_is_refused_before_anything_is_built(task, monkeypatch):
    """An embedding of 10^6 floats a token passed the memory check of the recurrent stack (which took the input to
    be as wide as the hidden state), and the training process was killed for memory: the check now counts it."""
    import rnnkit.config
    from rnnkit.build import load_config
    from rnnkit.errors import ConfigError
    from rnnkit.tasks.language_model import LMModelConfig
    from rnnkit.tasks.seq2seq import Seq2SeqModelConfig
    from rnnkit.tasks.text_classification import TextModelConfig

    cls = {"text_classification": TextModelConfig, "language_model": LMModelConfig,
           "seq2seq": Seq2SeqModelConfig}[task]
    with pytest.raises(ConfigError, match=r"model.embedding_dim: 1000000 is far too wide \(at most 16,384"):
        load_config({"task": task, "model": {"embedding_dim": 10**6}})  # before the data are looked at
    monkeypatch.setattr(rnnkit.config, "machine_memory", lambda: 2**30)  # 1 GiB
    cls(hidden_size=1024, embedding_dim=64).check()  # LSTM 1024: 0.07 GiB to train
    with pytest.raises(ConfigError, match="billion parameters"):  # 1.06 GiB; 0.13 if counted as 1024 wide
        cls(hidden_size=1024, embedding_dim=16_384).check()
