"""DistributedDataParallel on 2 CPU processes (gloo) matches one process with the same global batch."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import torch
import yaml
from safetensors.torch import load_file

CONFIG = {
    "name": "ddp",
    "model": {"cell": "gru", "hidden_size": 8},
    "data": {"source": "embedded", "limit": 160, "val_fraction": 0.2, "test_fraction": 0.1},
    "training": {"epochs": 2, "batch_size": 16, "num_threads": 1, "lr": 0.01, "device": "cpu"},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")
def test_two_processes_match_one(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    cmd = [sys.executable, "-m", "rnnkit", "train", str(cfg), "--quiet"]
    single = subprocess.run([*cmd, "--out", str(tmp_path / "one")], capture_output=True, text=True)
    assert single.returncode == 0, single.stderr
    port = str(free_port())
    procs = []
    for rank in (0, 1):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}
        procs.append(subprocess.Popen([*cmd, "--out", str(tmp_path / "two")], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    try:
        outs = [p.communicate(timeout=180) for p in procs]
    except subprocess.TimeoutExpired:  # one rank waiting for the other: stop both and show what they said
        for p in procs:
            p.kill()
        outs = [p.communicate() for p in procs]
        pytest.fail(f"the two ranks did not finish in 180 s (port {port}): {outs}")
    assert [p.returncode for p in procs] == [0, 0], outs
    assert outs[1][0] == ""  # only rank 0 prints
    a = load_file(tmp_path / "one" / "checkpoints" / "last" / "model.safetensors")
    b = load_file(tmp_path / "two" / "checkpoints" / "last" / "model.safetensors")
    assert a.keys() == b.keys()
    diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert diff < 1e-6, diff
    one = (tmp_path / "one" / "metrics.csv").read_text().splitlines()
    two = (tmp_path / "two" / "metrics.csv").read_text().splitlines()
    assert len(one) == len(two) == 3  # header + 2 epochs, written once by rank 0
