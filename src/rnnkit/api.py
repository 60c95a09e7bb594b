"""The Python API: ``rnnkit.train(config) -> Run``; ``Run.load(path)``, ``run.evaluate()``, ``run.predict()``.

    run = rnnkit.train("examples/digits.yaml", out="runs/digits")
    run.metrics["test"]["accuracy"]
    run = rnnkit.Run.load("runs/digits")          # best checkpoint, no training data needed
    run.predict(X)                                  # X (N, T, D) -> [{"index", "predicted", "p_<class>"...}]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rnnkit.build import load_config
from rnnkit.config import Config
from rnnkit.errors import RunExists
from rnnkit.tasks import Task, get_task
from rnnkit.training import checkpoint as ckpt


def train(config: Config | dict | str | Path, *, out: str | Path | None = None, resume: str | Path | None = None,
          overrides: tuple[str, ...] | list[str] = (), quiet: bool = True) -> Run:
    """Train from a config (YAML path, mapping or :class:`~rnnkit.config.Config`) and return the :class:`Run`.

    ``out``: run folder (default: the next free ``runs/<name>``, ``runs/<name>-2``, ..., so calling it again in a
    notebook trains a new run; an ``out`` that exists is never overwritten); ``resume``: continue that run
    folder; ``overrides``: ``["training.lr=0.01", ...]``; ``quiet``: no progress output.
    """
    from rnnkit.build import fit, load_config
    from rnnkit.data.memory import settle, stage_config

    command = f"rnnkit.train({str(config)!r})" if isinstance(config, str | Path) else "rnnkit.train(<config>)"
    staging = None
    from rnnkit.training.lock import folder_taken

    if out is not None and resume is None and folder_taken(out):
        raise RunExists(f"out={str(out)!r} already exists; give a new folder, or continue that run with "
                              f"rnnkit.train(resume={str(out)!r})")
    if isinstance(config, dict) and resume is None:  # arrays, texts, series given in the config itself
        name = str(config.get("name", "run"))
        target = Path(out) if out is not None else _free(Path("runs") / name)
        config, staging = stage_config(config, target)
        out = target
    if out is None and resume is None:
        cfg = load_config(config, overrides)
        out = _free(Path("runs") / cfg.name)
        config, overrides = cfg, ()
    try:
        run_dir, _ = fit(config, out, resume=resume, overrides=overrides, command=command, quiet=quiet)
    finally:
        if staging is not None:
            settle(Path(out), staging)
    return Run.load(run_dir)


def _free(path: Path) -> Path:
    """``path``, or ``path-2``, ``path-3``, ... : the first that does not exist yet (or is an empty folder)."""
    out, i = path, 1
    from rnnkit.training.lock import folder_taken

    while folder_taken(out):
        i += 1
        out = path.with_name(f"{path.name}-{i}")
    return out


class Run:
    """A trained run folder: its config, task (classes, scalers) and model weights from one checkpoint."""

    def __init__(self, path: Path, cfg: Config, task: Task, model: torch.nn.Module, checkpoint: str) -> None:
        self.path, self.config, self.task, self.model, self.checkpoint = path, cfg, task, model, checkpoint
        self.device = torch.device("cpu")

    @classmethod
    def load(cls, path: str | Path, checkpoint: str = "best") -> Run:
        """Load ``path`` with its ``best`` checkpoint (falls back to ``last``) or ``checkpoint="last"``."""
        path = Path(path)
        if not (path / "config.yaml").is_file():
            raise ckpt.CheckpointError(f"{path} is not a run folder (no config.yaml); give a folder made by "
                                       "rnnkit train")
        cfg = load_config(path / "config.yaml", files=False)  # predicting needs the task's state, not its data
        where = path / "checkpoints" / checkpoint
        if checkpoint == "best" and not where.exists() and not (where.parent / ".best.old").exists():
            where, checkpoint = path / "checkpoints" / "last", "last"
        files = ckpt.read_checkpoint(where)
        task = get_task(cfg.task)(cfg)
        try:
            task.load_state(json.loads(files["state.json"])["task"])
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ckpt.CheckpointError(f"{where}/state.json does not hold the task state {path / 'config.yaml'} "
                                       f"needs ({type(e).__name__}: {e}); restore the run folder or retrain") from None
        if cfg.training.ensemble > 1:
            from rnnkit.build import ensemble_model

            model = ensemble_model(cfg, task)
        else:
            model = task.build_model()
        ckpt.load_weights(model, files["model.safetensors"], str(where / "model.safetensors"),
                          str(path / "config.yaml"))
        model.eval()
        return cls(path, cfg, task, model, checkpoint)

    def to(self, device: str | torch.device) -> Run:
        self.device = torch.device(device)
        self.model.to(self.device)
        return self

    @property
    def metrics(self) -> dict:
        """``metrics.json``: ``{"val": {...}, "test": {...}, "best_epoch": ...}``."""
        p = self.path / "metrics.json"
        return json.loads(p.read_text()) if p.is_file() else {}

    @property
    def history(self) -> list[dict]:
        """``metrics.csv`` rows (values as strings)."""
        from rnnkit.report import read_metrics_csv

        return read_metrics_csv(self.path / "metrics.csv")

    def evaluate(self, data: Any = None, split: str = "test", dynamic_lr: float | None = None) -> dict:
        """Metrics on ``data`` (path, SequenceData) or, when None, on ``split`` of the configured data.
        ``dynamic_lr`` (language models): dynamic evaluation at that learning rate, in (0, 10), instead."""
        if dynamic_lr is not None and not hasattr(self.task, "dynamic_evaluate"):
            from rnnkit.errors import UsageError

            raise UsageError(f"--dynamic-lr applies to language models; this run's task is {self.config.task}")
        if data is None:
            from rnnkit.data import DataError

            self._resplit()
            if split not in self.task.splits:
                raise DataError(f"this run's data has no '{split}' split (it has {', '.join(self.task.splits)})")
            prepared = self.task.splits[split]
        else:
            prepared = self.task.as_input(data)
        if dynamic_lr is not None:
            return self.task.dynamic_evaluate(self.model, prepared, self.device, float(dynamic_lr))
        return self.task.evaluate(self.model, prepared, self.device)

    def write_report(self) -> Path:
        """Write (or redraw) the run folder's ``report.html`` from this checkpoint's weights; its sections score
        the test split and look at a validation batch, so the configured data is split again."""
        from rnnkit.report import write_report

        self._resplit()
        return write_report(self.path, task=self.task, model=self.model)

    def _resplit(self) -> None:
        """Reload and re-split the configured data with the same seed, keeping the trained task state
        (vocabulary, scaler) rather than the one a new setup would fit."""
        state = self.task.state()
        self.task.setup()
        self.task.load_state(state)

    def predict(self, data: Any, lengths: np.ndarray | None = None) -> list[dict]:
        """Predictions for ``data``: a .npz/.csv path, a SequenceData, or X (N, T, D) with optional lengths."""
        if lengths is not None:
            from rnnkit.data.sequences import SequenceData

            x = np.asarray(data)
            data = SequenceData.from_arrays(x, np.zeros(len(x), np.int64), lengths, where="input")
        return self.task.predict(self.model, self.task.as_input(data, labels=False), self.device)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, task={self.config.task!r}, checkpoint={self.checkpoint!r})"

    def _repr_html_(self) -> str:
        """A short summary for Jupyter: task, model size, metrics of the test (else val) split, the folder."""
        import html

        m = self.metrics
        rows = ""
        for split in ("test", "val"):
            if m.get(split):
                rows = "".join(f"<tr><td>{html.escape(split)} {html.escape(k)}</td><td>{v:.4g}</td></tr>"
                               for k, v in m[split].items() if isinstance(v, float))
                break
        params = sum(p.numel() for p in self.model.parameters())
        report = self.path / "report.html"
        link = f' &middot; <a href="{html.escape(str(report))}">report</a>' if report.is_file() else ""
        return (f"<div><b>rnnkit run</b> {html.escape(self.config.name)} ({html.escape(self.config.task)}, "
                f"{params:,} parameters, {html.escape(self.checkpoint)} checkpoint)<table>{rows}</table>"
                f"<code>{html.escape(str(self.path))}</code>{link}</div>")


def generate(run: Run | str | Path, prime: str | None = None, length: int = 500, temperature: float = 1.0,
             top_k: int | None = None, seed: int = 0) -> str:
    """Sample text from a trained language-model run (a :class:`Run` or its folder)."""
    from rnnkit.config import ConfigError

    run = run if isinstance(run, Run) else Run.load(run)
    if not callable(getattr(run.task, "generate", None)) or not callable(getattr(run.task, "sample", None)):
        raise ConfigError(f"{run.path} is a {run.config.task} run; generating text needs task: language_model")
    return run.task.generate(run.model, prime, length, temperature=temperature, top_k=top_k, seed=seed,
                             device=run.device)


__all__ = ["Run", "generate", "train"]
