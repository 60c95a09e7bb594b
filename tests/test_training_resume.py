"""Exact resume after a hard kill: SIGKILL a training process mid-epoch (a second writer meanwhile refused by the
run folder's lock), resume, compare bytes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import yaml

from rnnkit.cli import main

CONFIG = {
    "name": "killme",
    "model": {"cell": "lstm", "hidden_size": 8, "head_dropout": 0.1},
    "data": {"source": "embedded", "limit": 200, "val_fraction": 0.2, "test_fraction": 0.1},
    "training": {"epochs": 30, "batch_size": 16, "checkpoint_every_steps": 3, "num_threads": 1, "schedule": "cosine",
                 "device": "cpu"},
}


def train(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rnnkit", "train", *args, "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_sigkill_mid_epoch_then_resume_gives_identical_weights(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    cut = tmp_path / "cut"
    proc = train(str(cfg), "--out", str(cut))
    state_file = cut / "checkpoints" / "last" / "state.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            state = json.loads(state_file.read_text())
        except (OSError, ValueError):
            state = {}
        if state.get("epoch", 0) >= 1 and state.get("step_in_epoch", 0) > 0:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "training ended before it could be killed"
    # a second writer while the first runs: refused at once
    assert main(["train", "--resume", str(cut)]) == 2
    assert "is in use by another rnnkit process" in capsys.readouterr().err
    os.kill(proc.pid, signal.SIGKILL)  # mid-epoch, possibly mid-checkpoint (one every 3 steps)
    proc.wait()
    assert (cut / ".lock").exists()  # the lock file stays, its lock went with the process: nothing stale
    state = json.loads(state_file.read_text())
    assert state["epoch"] < CONFIG["training"]["epochs"]  # really interrupted
    resumed = train("--resume", str(cut))
    assert resumed.wait() == 0, resumed.stderr.read()
    full = tmp_path / "full"
    assert train(str(cfg), "--out", str(full)).wait() == 0
    for name in ("model.safetensors", "optimizer.safetensors"):
        assert (cut / "checkpoints" / "last" / name).read_bytes() == (full / "checkpoints" / "last" / name).read_bytes()
    info = json.loads((cut / "run.json").read_text())
    assert info["resumed"] and "--resume" in info["resumed"][0]
