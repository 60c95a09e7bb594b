"""Checkpoints without pickle: tensors in safetensors, everything else in JSON, a sha256 manifest.

A checkpoint is a folder (``checkpoints/last/``, ``checkpoints/best/``)::

    model.safetensors      the model's state_dict
    optimizer.safetensors  optimiser state tensors, keyed "<param index>.<name>" (exp_avg, step, ...)
    state.safetensors      RNG states (torch CPU/CUDA) and tensors a stateful task carries
    state.json             counters, optimiser scalars and param groups, schedule, python/numpy RNG,
                           task state (classes, scalers, vocabularies), metric history
    manifest.json          {"format": 1, "files": {name: sha256}}

Writing goes to ``.<name>.tmp/`` (every file fsynced), then the old folder is moved to ``.<name>.old/``,
the new one renamed into place and the old one removed: a crash at any point leaves either the previous
or the new checkpoint complete, and :func:`read_checkpoint` falls back to ``.<name>.old/`` when the
rename did not happen. Reading verifies every sha256, so truncation or tampering is reported clearly.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from rnnkit.data.download import fsync_dir

FORMAT = 1


from rnnkit.errors import CheckpointError  # noqa: E402 - re-exported: this module's error type


def write_checkpoint(dest: Path, files: dict[str, bytes]) -> None:
    """Atomically replace folder ``dest`` with ``files`` (name -> content) plus a sha256 manifest."""
    tmp, old = dest.parent / f".{dest.name}.tmp", dest.parent / f".{dest.name}.old"
    dest.parent.mkdir(parents=True, exist_ok=True)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    manifest = {"format": FORMAT, "files": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}}
    for name, data in [*files.items(), ("manifest.json", json.dumps(manifest, indent=1).encode())]:
        with open(tmp / name, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    fsync_dir(tmp)
    if dest.exists():
        if old.exists():
            shutil.rmtree(old)
        dest.rename(old)
    tmp.rename(dest)
    fsync_dir(dest.parent)
    if old.exists():
        shutil.rmtree(old)


def read_checkpoint(dest: Path) -> dict[str, bytes]:
    """Files of checkpoint ``dest`` after checking the manifest; raises CheckpointError."""
    old = dest.parent / f".{dest.name}.old"
    if not dest.is_dir() and old.is_dir():
        dest = old  # crashed between the two renames: the previous checkpoint is intact
    if not dest.is_dir():
        raise CheckpointError(f"no checkpoint at {dest}; is this a run folder created by rnnkit train?")
    fix = "resume from the other checkpoint (last/best) or retrain"
    try:
        manifest = json.loads((dest / "manifest.json").read_text())
        expected = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError):
        raise CheckpointError(f"checkpoint {dest} is incomplete: manifest.json is missing or unreadable; "
                              f"{fix}") from None
    if not isinstance(expected, dict) or not expected:
        raise CheckpointError(f"checkpoint {dest} is incomplete: manifest.json lists no files; {fix}")
    if manifest.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {dest} has format {manifest.get('format')}, this rnnkit reads {FORMAT}")
    files = {}
    for name, digest in expected.items():
        try:
            data = (dest / name).read_bytes()
        except OSError:
            raise CheckpointError(f"checkpoint {dest} is incomplete: {name} is missing; {fix}") from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise CheckpointError(f"checkpoint {dest} is corrupted: {name} does not match its sha256 in "
                                  f"manifest.json (truncated or modified); {fix}")
        files[name] = data
    return files


# ---- (de)serialising the pieces ------------------------------------------------------------------------


def tensors_to_bytes(tensors: dict[str, torch.Tensor]) -> bytes:
    from safetensors.torch import save

    return save({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()})


def tensors_from_bytes(data: bytes, where: str = "a checkpoint") -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file; a file that is not one (forged, truncated) is a CheckpointError."""
    from safetensors.torch import load

    try:
        return load(data)
    except Exception as e:  # safetensors' own error types: a damaged file, not a bug
        raise CheckpointError(f"{where} is not a readable safetensors file ({' '.join(str(e).split())[:120]}); "
                              "resume from the other checkpoint (last/best) or retrain") from None


def load_weights(model: torch.nn.Module, data: bytes, where: str, config: str) -> None:
    """Load a checkpoint's ``model.safetensors`` into ``model``; weights that do not fit the model built from the
    run's config (an edited ``config.yaml``) are a CheckpointError naming both."""
    tensors = tensors_from_bytes(data, where)
    try:
        model.load_state_dict(tensors)
    except RuntimeError as e:
        first = next((ln.strip() for ln in str(e).splitlines() if "size mismatch" in ln or "Missing" in ln
                      or "Unexpected" in ln), str(e).splitlines()[0])
        raise CheckpointError(f"the weights in {where} do not fit the model {config} describes ({first[:160]}); "
                              "was the config edited after training? restore it, or train a new run") from None


def split_optimizer_state(sd: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """optimizer.state_dict() -> (tensors keyed "<idx>.<name>", JSON part)."""
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{idx}.{k}"] = v
            else:
                scalars.setdefault(str(idx), {})[k] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def join_optimizer_state(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = v
    for idx, st in meta["scalars"].items():
        state.setdefault(int(idx), {}).update(st)
    return {"state": state, "param_groups": meta["param_groups"]}


def rng_state() -> tuple[dict[str, torch.Tensor], dict]:
    """All RNG states: (tensors for safetensors, JSON part)."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002 - the global RNG user code may use
    version, mt, gauss = random.getstate()
    return tensors, {"numpy": [kind, keys.tolist(), pos, has_gauss, cached], "python": [version, list(mt), gauss]}


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[f"rng.cuda.{i}"] for i in range(sum(k.startswith("rng.cuda.") for k in tensors))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
    kind, keys, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))  # noqa: NPY002
    version, mt, gauss = meta["python"]
    random.setstate((version, tuple(mt), gauss))
