"""The training loop: epochs, clipping, schedules, early stopping, checkpoints, exact resume and DDP.

``Trainer(training_config).fit(objective, data, run_dir)`` is the core call: it trains ``objective``
(:class:`~rnnkit.training.core.Objective`) on ``data`` (:class:`~rnnkit.training.core.Data`) and, with a
``run_dir``, writes the run folder (without one it keeps its checkpoints in memory and writes nothing)::

    runs/<name>/
      config.yaml       the resolved config (what ``--resume`` reads back)
      metrics.csv       one row per epoch: epoch, train_loss, train_<metric>, val_*, lr, grad_norm, seconds
      metrics.json      final {"val": {...}, "test": {...}} of the best checkpoint
      run.json          command, parameter count, data summary, device, timings
      checkpoints/last/ and checkpoints/best/   (see rnnkit.training.checkpoint)
      report.html

Determinism: python/numpy/torch are seeded from ``training.seed``, each epoch's batch order is a pure
function of ``(seed, epoch)``, and checkpoints hold every RNG state, the optimiser and schedule state and
the position inside the epoch; on the CPU a resumed run therefore ends with bit-identical weights.

Distributed: under ``torchrun`` (``WORLD_SIZE`` > 1) the model is wrapped in DistributedDataParallel
(gloo on CPU, NCCL on GPU), each global batch of ``batch_size`` is split across processes and the loss is
normalised by the global item count, so N processes match one process with the same global batch. Only
rank 0 writes files and prints.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from rnnkit.config import Config, ConfigError, TrainingConfig
from rnnkit.layers.native import cpu_has_bf16
from rnnkit.training import checkpoint as ckpt
from rnnkit.training.callbacks import Context, make_callbacks
from rnnkit.training.core import Data, Objective
from rnnkit.training.progress import Progress


class TrainingDiverged(RuntimeError):
    """The loss or gradient became NaN/inf; the last good checkpoint is kept."""


# ---- setup helpers -------------------------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - seed the global RNG user code may use
    torch.manual_seed(seed)


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("training.device is cuda but no CUDA GPU is available; use device: auto or cpu")
    if name in ("cuda", "auto") and torch.cuda.is_available():
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> Dist:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        return cls(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def make_optimizer(t: TrainingConfig, params) -> torch.optim.Optimizer:
    if t.optimizer == "sgd":
        return torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
    cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=t.lr, weight_decay=t.weight_decay)


# metrics where smaller is better; every other monitored metric (accuracy, f1, auc, coverage...) is maximised
LOWER_IS_BETTER = ("loss", "mse", "mae", "rmse", "mape", "smape", "mase", "bpc", "perplexity", "pinball", "wer", "ter",
                   "per", "cer", "error")


def lower_is_better(monitor: str) -> bool:
    """True for ``val_loss``, ``val_mse``, ``val_bpc``...: the metric name (after any split prefix) is an error."""
    name = monitor.split("_", 1)[1] if monitor.startswith(("val_", "train_", "test_")) else monitor
    return "loss" in name or any(name == m or name.endswith("_" + m) for m in LOWER_IS_BETTER)


def better(value: float, best: float | None, monitor: str) -> bool:
    if best is None or math.isnan(best):
        return not math.isnan(value)
    return value < best if lower_is_better(monitor) else value > best


class Schedule:
    """Learning-rate schedule with JSON state: none, cosine (per step, to min_lr), onecycle (per step: up from
    lr/25 over the first 30% of the steps, then cosine to min_lr), plateau (per epoch); and a linear warm-up over
    ``warmup_steps`` on top of any of them. The lr of optimizer step k is a function of k (and, for plateau, of
    the epochs seen), so a resumed run continues it exactly."""

    ONECYCLE_UP, ONECYCLE_START = 0.3, 1 / 25

    def __init__(self, t: TrainingConfig, optimizer: torch.optim.Optimizer, total_steps: int) -> None:
        self.t, self.opt, self.total = t, optimizer, max(total_steps, 1)
        self.base, self.steps, self.best, self.bad = t.lr, 0, None, 0  # base: plateau's current lr
        self._set(self.value(0))

    def value(self, step: int) -> float:
        """The lr of optimizer step ``step`` (0-based)."""
        t, lr = self.t, self.base
        if t.schedule == "cosine":
            lr = self._cosine(step / self.total)
        elif t.schedule == "onecycle":
            up = max(1, int(self.ONECYCLE_UP * self.total))
            if step < up:
                lo = t.lr * self.ONECYCLE_START
                lr = lo + (t.lr - lo) * step / up
            else:
                lr = self._cosine((step - up) / max(self.total - up, 1))
        if step < t.warmup_steps:
            lr *= (step + 1) / t.warmup_steps
        return lr

    def _cosine(self, frac: float) -> float:
        t = self.t
        return t.min_lr + (t.lr - t.min_lr) * 0.5 * (1.0 + math.cos(math.pi * min(frac, 1.0)))

    def _set(self, lr: float) -> None:
        self.lr = lr
        for g in self.opt.param_groups:
            g["lr"] = lr

    def after_step(self) -> None:
        self.steps += 1
        self._set(self.value(self.steps))

    def after_epoch(self, value: float | None) -> None:
        if self.t.schedule != "plateau" or value is None:
            return
        if better(value, self.best, self.t.monitor):
            self.best, self.bad = value, 0
        else:
            self.bad += 1
            if self.bad > self.t.plateau_patience:
                self.base = max(self.base * self.t.plateau_factor, self.t.min_lr)
                self._set(self.value(self.steps))
                self.bad = 0

    def state_dict(self) -> dict:
        return {"lr": self.lr, "base": self.base, "steps": self.steps, "best": self.best, "bad": self.bad}

    def load_state_dict(self, s: dict) -> None:
        self.steps, self.best, self.bad = s["steps"], s["best"], s["bad"]
        self.base = s.get("base", s["lr"])
        self._set(s["lr"])


BUDGETS = {"max_steps": "optimizer steps", "max_time": "seconds"}


class Ema:
    """An exponential moving average of the weights (Polyak averaging): after every optimizer step
    ``avg = decay * avg + (1 - decay) * w`` for every floating parameter and buffer; integer buffers are copied.
    Validation, the best checkpoint, the final metrics and ``model.safetensors`` use the average; the trained
    weights travel in the checkpoints as ``training.safetensors`` so that a resume continues both exactly."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.reset(model)

    def reset(self, model: nn.Module) -> None:
        self.avg = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for k, v in model.state_dict().items():
            a = self.avg[k]
            if a.is_floating_point():
                a.lerp_(v.detach(), 1.0 - self.decay)
            else:
                a.copy_(v)

    def state_dict(self, like: dict) -> dict:
        return {k: self.avg[k] for k in like}

    @contextmanager
    def applied(self, model: nn.Module):
        """Inside the block the model holds the averaged weights; its own come back after."""
        own = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.avg)
        try:
            yield
        finally:
            model.load_state_dict(own)


@dataclass
class State:
    """Counters and history saved in ``state.json``; ``accum`` holds the running sums of the open epoch."""

    epoch: int = 0  # epochs completed
    step_in_epoch: int = 0  # batches of the open epoch already trained on
    global_step: int = 0
    best: float | None = None
    best_epoch: int | None = None
    best_step: int = 0  # the optimizer step of the best value (early stopping in steps)
    bad_epochs: int = 0
    stopped: str | None = None  # "early_stopping" once patience ran out, "max_steps"/"max_time" at a budget
    history: list = field(default_factory=list)
    accum: dict = field(default_factory=dict)
    seconds: float = 0.0  # total training seconds across resumes


def _zero_accum() -> dict:
    return {"loss": 0.0, "count": 0.0, "sums": {}, "grad_norm": 0.0, "steps": 0, "seconds": 0.0}


# ---- the run -------------------------------------------------------------------------------------------


class Trainer:
    """Trains an objective on data: ``Trainer(training).fit(objective, data, run_dir=None)``.

    Args:
        training: the ``training`` section (optimiser, schedule, epochs, batch size, stopping, device, ...).
        callbacks: ``{name: options}`` of registered callbacks (validated by the config builder).
        command: what made the run, recorded in ``run.json``.
        quiet: no progress bar or per-epoch lines.
        report: write ``report.html`` at the end (with a run folder).
    """

    def __init__(self, training: TrainingConfig, *, callbacks: dict | None = None, command: str = "",
                 quiet: bool = True, report: bool = True) -> None:
        self.training, self.callback_options = training, dict(callbacks or {})
        self.command, self.quiet, self.report = command, quiet, report
        self.dist = Dist.from_env()

    def _setup(self, objective: Objective, data: Data, run_dir: Path | None, config: Config | None,
               resume: bool, init_weights: dict | None = None) -> None:
        t = self.training
        self.objective, self.data, self.run_dir, self.config, self.resume = objective, data, run_dir, config, resume
        self._memory: dict[str, dict[str, bytes]] = {}  # checkpoints when there is no run folder
        if t.num_threads:
            torch.set_num_threads(t.num_threads)
        torch.set_flush_denormal(t.flush_denormal)  # process-wide, so set either way (resume sees the same)
        self.device = pick_device(t.device, self.dist.local_rank)
        if self.dist.world > 1 and not torch.distributed.is_initialized():
            torch.distributed.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        seed_everything(t.seed)
        data.setup()
        self.model = objective.build_model()
        if init_weights is not None and not resume:  # a warm start (a resumed run has its own weights)
            self.model.load_state_dict(init_weights)
        elif not resume:
            objective.initialize(self.model)
        self.model.to(self.device)
        self._prepare_kernels()
        self.net: nn.Module = self.model
        if self.dist.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.opt = make_optimizer(t, self.model.parameters())
        self.steps_per_epoch = data.num_train_batches(self.dist.world)
        self.epochs = self.planned_epochs(t, self.steps_per_epoch)
        planned = self.epochs * self.steps_per_epoch
        self.schedule = Schedule(t, self.opt, min(planned, t.max_steps) if t.max_steps else planned)
        self.amp_dtype = None
        if t.amp and self.device.type == "cuda":
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        elif t.amp and self.device.type == "cpu" and cpu_has_bf16():
            self.amp_dtype = torch.bfloat16  # the matmuls in bf16; states, gates, losses and the weights in float32
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.callbacks = make_callbacks(self.callback_options) if self.dist.main and run_dir is not None else {}
        self.state = State(accum=_zero_accum())
        self.ema = Ema(self.model, t.ema) if t.ema else None
        self.ctx = Context(run_dir, self.model, objective, self.device, self.opt)
        self.tb = None

    @staticmethod
    def planned_epochs(t: TrainingConfig, steps_per_epoch: int) -> int:
        """``training.epochs``, or more where ``min_steps`` asks for more optimizer steps than that gives."""
        if t.min_steps and steps_per_epoch:
            return max(t.epochs, math.ceil(t.min_steps / steps_per_epoch))
        return t.epochs

    def _over_budget(self, open_seconds: float = 0.0) -> str | None:
        """The budget (``max_steps``, ``max_time``) the run has used up, or None; ``open_seconds``: the training
        seconds of the open epoch so far. Under DDP every process takes the main one's answer."""
        t, s = self.training, self.state
        over = None
        if t.max_steps and s.global_step >= t.max_steps:
            over = "max_steps"
        elif t.max_time and s.seconds + open_seconds >= t.max_time:
            over = "max_time"
        if self.dist.world > 1 and t.max_time:
            flag = torch.tensor([list(BUDGETS).index(over) + 1 if over else 0], device=self.device)
            torch.distributed.broadcast(flag, 0)
            over = list(BUDGETS)[int(flag) - 1] if int(flag) else None
        return over

    def _prepare_kernels(self) -> None:
        """Build rnnkit's native kernel now if a layer will run it, so that compile time is not counted as the
        first epoch's training time."""
        from rnnkit.layers import Recurrent, native

        if any(isinstance(m, Recurrent) and m.engine == "native" for m in self.model.modules()):
            native.enabled()

    @property
    def files(self) -> bool:
        """Whether this trainer writes a run folder (the main process of a run with a ``run_dir``)."""
        return self.dist.main and self.run_dir is not None

    # ---- checkpoints -----------------------------------------------------------------------------------
    def checkpoint_files(self) -> dict[str, bytes]:
        opt_tensors, opt_meta = ckpt.split_optimizer_state(self.opt.state_dict())
        rng_tensors, rng_meta = ckpt.rng_state()
        carry = {f"carry.{k}": v for k, v in self.objective.carry_tensors().items()}
        s = self.state
        meta = {"epoch": s.epoch, "step_in_epoch": s.step_in_epoch, "global_step": s.global_step, "best": s.best,
                "best_epoch": s.best_epoch, "best_step": s.best_step, "bad_epochs": s.bad_epochs,
                "stopped": s.stopped,
                "history": s.history, "accum": s.accum, "seconds": s.seconds, "optimizer": opt_meta,
                "schedule": self.schedule.state_dict(), "scaler": self.scaler.state_dict(), "rng": rng_meta,
                "task": self.data.state(), "callbacks": {k: cb.state() for k, cb in self.callbacks.items()},
                "world_size": self.dist.world}
        weights = self.model.state_dict()
        extra = {}
        if self.ema is not None:  # model.safetensors holds what is evaluated and loaded: the averaged weights
            extra["training.safetensors"] = ckpt.tensors_to_bytes(weights)
            weights = self.ema.state_dict(weights)
        return {"model.safetensors": ckpt.tensors_to_bytes(weights), **extra,
                "optimizer.safetensors": ckpt.tensors_to_bytes(opt_tensors),
                "state.safetensors": ckpt.tensors_to_bytes({**rng_tensors, **carry}),
                "state.json": json.dumps(meta).encode()}

    def save(self, *names: str) -> None:
        if not self.dist.main:
            return
        self._check_finite()
        if self.run_dir is None:  # in memory: only the weights, for the final evaluation of the best ones
            weights = self.model.state_dict()
            weights = self.ema.state_dict(weights) if self.ema is not None else weights
            self._memory.update({n: {"model": {k: v.detach().clone() for k, v in weights.items()}} for n in names})
            return
        files = self.checkpoint_files()
        for name in names:
            ckpt.write_checkpoint(self.run_dir / "checkpoints" / name, files)

    def _check_finite(self) -> None:
        """TrainingDiverged before a checkpoint with non-finite weights or optimiser state is written."""
        for name, p in self.model.state_dict().items():
            if p.is_floating_point() and not bool(torch.isfinite(p).all()):
                raise TrainingDiverged(f"the weights became non-finite ({name}) at epoch {self.state.epoch + 1}, "
                                       f"step {self.state.step_in_epoch}")
        for state in self.opt.state.values():
            for key, v in state.items():
                if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all()):
                    raise TrainingDiverged(f"the optimiser state ({key}) became non-finite at epoch "
                                           f"{self.state.epoch + 1}, step {self.state.step_in_epoch}")

    def _last_good(self) -> str:
        """Where the last good checkpoint is and what it holds, or that there is none."""
        if self.run_dir is None:
            return "nothing was kept (no run folder)"
        last = self.run_dir / "checkpoints" / "last"
        try:
            meta = json.loads(ckpt.read_checkpoint(last)["state.json"])
        except ckpt.CheckpointError:
            return "no checkpoint was written"
        return (f"the last good checkpoint is {last} (epoch {meta['epoch']}, step {meta['global_step']}); "
                f"continue from it with rnnkit train --resume {self.run_dir}")

    def load(self, name: str = "last") -> None:
        files = ckpt.read_checkpoint(self.run_dir / "checkpoints" / name)
        meta = json.loads(files["state.json"])
        if meta["world_size"] != self.dist.world:
            raise ConfigError(f"this run was trained with {meta['world_size']} process(es); resume it with the "
                              f"same number (got {self.dist.world})")
        where = self.run_dir / "checkpoints" / name
        if self.ema is not None and "training.safetensors" in files:  # the averaged weights, then the trained ones
            ckpt.load_weights(self.model, files["model.safetensors"], str(where / "model.safetensors"),
                              str(self.run_dir / "config.yaml"))
            self.ema.reset(self.model)
        elif self.ema is not None:
            raise ConfigError(f"{where} was trained without training.ema; resume it with training.ema: null")
        main = "training.safetensors" if "training.safetensors" in files else "model.safetensors"
        ckpt.load_weights(self.model, files[main], str(where / main), str(self.run_dir / "config.yaml"))
        opt_tensors = ckpt.tensors_from_bytes(files["optimizer.safetensors"])
        self.opt.load_state_dict(ckpt.join_optimizer_state(opt_tensors, meta["optimizer"]))
        self.schedule.load_state_dict(meta["schedule"])
        if meta["scaler"]:
            self.scaler.load_state_dict(meta["scaler"])
        st = ckpt.tensors_from_bytes(files["state.safetensors"])
        ckpt.set_rng_state(st, meta["rng"])
        self.objective.load_carry({k[6:]: v.to(self.device) for k, v in st.items() if k.startswith("carry.")})
        for k, cb in self.callbacks.items():
            cb.load_state(meta["callbacks"].get(k, {}))
        self.state = State(**{k: meta[k] for k in ("epoch", "step_in_epoch", "global_step", "best", "best_epoch",
                                                    "bad_epochs", "stopped", "history", "accum", "seconds")},
                           best_step=meta.get("best_step", 0))

    # ---- one step --------------------------------------------------------------------------------------
    def train_step(self, batch) -> tuple[float, int, dict]:
        t, d = self.training, self.dist
        autocast = torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype else nullcontext()
        with autocast:
            res = self.objective.step(self.net, batch, self.device)
        stats = torch.tensor([float(res.loss_sum.detach()), float(res.count), *res.sums.values()], dtype=torch.float64)
        if d.world > 1:  # global loss sum, item count and statistics in one all-reduce
            stats = stats.to(self.device)
            torch.distributed.all_reduce(stats)
            stats = stats.cpu()
        loss_sum, count = float(stats[0]), float(stats[1])
        if not math.isfinite(loss_sum):
            raise TrainingDiverged(f"the loss became {loss_sum} at epoch {self.state.epoch + 1}, step "
                                   f"{self.state.step_in_epoch + 1}")
        loss = res.loss_sum * (d.world / count)  # DDP averages gradients over processes
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.opt)
        for cb in self.callbacks.values():
            cb.after_backward(self.ctx, batch)
        norm = float(nn.utils.clip_grad_norm_(self.model.parameters(), t.clip_norm or float("inf")))
        if not math.isfinite(norm) and not self.scaler.is_enabled():
            raise TrainingDiverged(f"the gradient norm became {norm} at epoch {self.state.epoch + 1}, step "
                                   f"{self.state.step_in_epoch + 1}")
        self.scaler.step(self.opt)
        self.scaler.update()
        self.schedule.after_step()
        if self.ema is not None:
            self.ema.update(self.model)
        sums = dict(zip(res.sums, stats[2:].tolist(), strict=True))
        return loss_sum, int(count), sums | {"_norm": norm}

    # ---- the loop --------------------------------------------------------------------------------------
    def fit(self, objective: Objective, data: Data, run_dir: str | Path | None = None, *,
            config: Config | None = None, resume: bool = False, resume_from: str = "last",
            init_weights: dict | None = None) -> dict:
        """Train ``objective`` on ``data``; returns the final metrics (also ``metrics.json`` with a ``run_dir``).

        ``config``: the whole config, recorded as ``config.yaml`` (what ``--resume`` reads back); ``resume``:
        continue ``run_dir`` from its last checkpoint; ``init_weights``: a state dict the new model starts from
        instead of its initialisation (ignored on resume). Without a ``run_dir`` nothing is written and the best
        weights are kept in memory; ``self.model`` holds them afterwards either way.
        """
        run_dir = None if run_dir is None else Path(run_dir)
        if resume and run_dir is None:
            raise ConfigError("resume needs the run folder to continue")
        self._setup(objective, data, run_dir, config, resume, init_weights)
        self.resume_from = resume_from
        try:
            self._loop()
            return self.finish()
        finally:
            if self.dist.world > 1 and torch.distributed.is_initialized():
                torch.distributed.destroy_process_group()

    def _loop(self) -> None:
        t = self.training
        if self.resume:
            self.load(self.resume_from)
        elif self.files:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.files:
            if self.config is not None:
                (self.run_dir / "config.yaml").write_text(self.config.to_yaml())
            self._write_run_json()
            self._open_tensorboard()
        s = self.state
        if s.stopped in BUDGETS and self._over_budget() is None:  # resumed with a larger budget: go on
            s.stopped = None
        monitor, metric = t.monitor, self.objective.running_metric
        progress = Progress(self.epochs, metric, enabled=self.dist.main, quiet=self.quiet or not self.dist.main)
        for cb in self.callbacks.values():
            cb.on_train_start(self.ctx)
        try:
            while s.epoch < self.epochs and s.stopped is None:
                self.model.train()
                progress.start_epoch(s.epoch, self.steps_per_epoch, s.step_in_epoch)
                a, t0 = s.accum, time.perf_counter()
                for batch in self.data.train_batches(s.epoch, s.step_in_epoch, self.dist.rank, self.dist.world):
                    loss_sum, count, sums = self.train_step(batch)
                    a["loss"] += loss_sum
                    a["count"] += count
                    a["grad_norm"] += sums.pop("_norm")
                    a["steps"] += 1
                    for k, v in sums.items():
                        a["sums"][k] = a["sums"].get(k, 0.0) + v
                    s.step_in_epoch += 1
                    s.global_step += 1
                    self.ctx.epoch, self.ctx.global_step = s.epoch, s.global_step
                    run_metric = a["sums"][metric] / a["count"] if metric in a["sums"] else None
                    progress.update(count, a["loss"] / a["count"], run_metric)
                    every_eval = t.eval_every_steps
                    if every_eval and s.global_step % every_eval == 0 and s.step_in_epoch < self.steps_per_epoch:
                        a["seconds"] += time.perf_counter() - t0
                        self._evaluate_mid_epoch()
                        t0 = time.perf_counter()
                        if self._steps_patience_out():
                            s.stopped = "early_stopping"
                            break
                    if (t.max_steps or t.max_time) and s.step_in_epoch < self.steps_per_epoch:
                        s.stopped = self._over_budget(a["seconds"] + time.perf_counter() - t0)
                        if s.stopped:  # the epoch ends here: evaluated, checkpointed and reported as any
                            break
                    every = t.checkpoint_every_steps
                    if every and s.global_step % every == 0 and s.step_in_epoch < self.steps_per_epoch:
                        a["seconds"] += time.perf_counter() - t0
                        t0 = time.perf_counter()
                        self.save("last")
                a["seconds"] += time.perf_counter() - t0
                if s.stopped is None and (t.max_steps or t.max_time):
                    s.stopped = self._over_budget(a["seconds"])
                row = self._end_epoch()
                progress.end_epoch(row)
                if s.stopped in BUDGETS:
                    value = getattr(t, s.stopped)
                    progress.message(f"stopped: training.{s.stopped} = {value:g} {BUDGETS[s.stopped]} reached at "
                                     f"step {s.global_step} (epoch {s.epoch})")
                elif s.stopped:
                    by_epochs = t.patience is not None and s.bad_epochs >= t.patience
                    waited = f"{t.patience} epochs" if by_epochs else f"{s.global_step - s.best_step} steps"
                    progress.message(f"early stopping: {monitor} did not improve for {waited}")
        except TrainingDiverged as e:
            progress.close()
            raise TrainingDiverged(f"{e}; training stopped, {self._last_good()}; lower training.lr or set "
                                   "training.clip_norm") from None
        finally:
            progress.close()
            if self.tb is not None:
                self.tb.close()
        for cb in self.callbacks.values():
            cb.on_train_end(self.ctx)
        if self.dist.world > 1:
            torch.distributed.barrier()

    def _steps_patience_out(self) -> bool:
        """``patience_steps`` optimizer steps without a better ``monitor`` (and ``min_steps`` done)."""
        t, s = self.training, self.state
        if not t.patience_steps or s.best is None or (t.min_steps and s.global_step < t.min_steps):
            return False
        return s.global_step - s.best_step >= t.patience_steps

    def _evaluate_mid_epoch(self) -> None:
        """Validation every ``eval_every_steps`` steps: a better ``monitor`` is the new best checkpoint (mid-epoch,
        resumable as any), and the steps-based patience counts from it. Not a row of metrics.csv."""
        t, s = self.training, self.state
        if "val" not in self.data.splits or not t.monitor.startswith("val_"):
            return
        with self.ema.applied(self.model) if self.ema is not None else nullcontext():
            val = self.objective.evaluate(self.model, self.data.splits["val"], self.device)
        self.model.train()
        value = float(val[t.monitor.removeprefix("val_")])
        if better(value, s.best, t.monitor):
            s.best, s.best_step = value, s.global_step
            s.best_epoch = s.epoch + 1
            self.save("best", "last")

    def _end_epoch(self) -> dict:
        t, s, a = self.training, self.state, self.state.accum
        row: dict = {"epoch": s.epoch + 1, "steps": a["steps"], "train_loss": a["loss"] / max(a["count"], 1)}
        for k, v in a["sums"].items():
            row[f"train_{k}"] = v / max(a["count"], 1)
        if "val" in self.data.splits:
            with self.ema.applied(self.model) if self.ema is not None else nullcontext():
                val = self.objective.evaluate(self.model, self.data.splits["val"], self.device)
            row.update({f"val_{k}": float(v) for k, v in val.items() if k in self.objective.metrics})
        row.update({"lr": self.schedule.lr, "grad_norm": a["grad_norm"] / max(a["steps"], 1),
                    "seconds": a["seconds"]})
        value = row[t.monitor]
        self.schedule.after_epoch(value)
        improved = better(value, s.best, t.monitor)
        if improved:
            s.best, s.best_epoch, s.bad_epochs, s.best_step = value, s.epoch + 1, 0, s.global_step
        else:
            s.bad_epochs += 1
        waited = not t.min_steps or s.global_step >= t.min_steps  # early stopping waits for min_steps
        if t.patience is not None and s.bad_epochs >= t.patience and s.stopped is None and waited:
            s.stopped = "early_stopping"
        if self._steps_patience_out() and s.stopped is None:
            s.stopped = "early_stopping"
        s.history.append(row)
        s.seconds += a["seconds"]
        s.epoch, s.step_in_epoch, s.accum = s.epoch + 1, 0, _zero_accum()
        self.save("last", *(["best"] if improved else []))
        if self.files:
            self._write_metrics_csv()
            if self.tb is not None:
                for k, v in row.items():
                    if k != "epoch":
                        self.tb.add_scalar(k, v, row["epoch"])
        self.ctx.epoch = s.epoch
        for cb in self.callbacks.values():
            cb.on_epoch_end(self.ctx, row)
        return row

    # ---- files -----------------------------------------------------------------------------------------
    def _write_metrics_csv(self) -> None:
        rows = self.state.history
        keys = list(dict.fromkeys(k for r in rows for k in r))
        tmp = self.run_dir / ".metrics.csv.tmp"
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(rows)
        tmp.replace(self.run_dir / "metrics.csv")

    def _write_run_json(self) -> None:
        from rnnkit._version import __version__

        cfg = self.config
        info = {"name": cfg.name if cfg else self.run_dir.name, "task": cfg.task if cfg else
                type(self.objective).__name__, "command": self.command,
                "reproduce": f"rnnkit train {self.run_dir / 'config.yaml'} --out {self.run_dir}-repro",
                "parameters": sum(p.numel() for p in self.model.parameters()),
                "parameter_shapes": {k: list(v.shape) for k, v in self.model.state_dict().items()},
                "model": str(self.model), "data": self.data.summary(), "device": str(self.device),
                "world_size": self.dist.world, "steps_per_epoch": self.steps_per_epoch,
                "versions": {"rnnkit": __version__, "torch": torch.__version__,
                             "python": sys.version.split()[0]}}
        path = self.run_dir / "run.json"
        if path.exists():  # keep the first command, record the resumes
            old = json.loads(path.read_text())
            info["command"] = old.get("command", "")
            info["resumed"] = old.get("resumed", []) + [self.command]
        path.write_text(json.dumps(info, indent=1) + "\n")

    def _open_tensorboard(self) -> None:
        if not self.training.tensorboard:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            print("rnnkit: warning: training.tensorboard is on but tensorboard is not installed; skipping it",
                  file=sys.stderr)
            return
        self.tb = SummaryWriter(str(self.run_dir / "tensorboard"))

    def finish(self) -> dict:
        """Evaluate the best (else last) weights on val/test; with a run folder write metrics.json and report.html
        (its sections get this model and these metrics)."""
        if not self.dist.main:
            return {}
        if self.run_dir is None:
            kept = self._memory.get("best") or self._memory.get("last")
            if kept is not None:
                self.model.load_state_dict(kept["model"])
        else:
            best = self.run_dir / "checkpoints" / "best"
            files = ckpt.read_checkpoint(best if best.exists() else self.run_dir / "checkpoints" / "last")
            self.model.load_state_dict(ckpt.tensors_from_bytes(files["model.safetensors"]))
        self.model.eval()
        metrics: dict = {}
        final = getattr(self.objective, "final_evaluate", self.objective.evaluate)  # a task's closing score
        for split in ("val", "test"):
            if split in self.data.splits:
                metrics[split] = final(self.model, self.data.splits[split], self.device)
        s = self.state
        metrics["best_epoch"], metrics["epochs"], metrics["stopped"] = s.best_epoch, s.epoch, s.stopped
        metrics["steps"] = s.global_step
        metrics["train_seconds"] = s.seconds
        metrics = self.objective.finalize_metrics(metrics)
        if self.run_dir is not None:
            (self.run_dir / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
            if self.report:
                from rnnkit.report import write_report

                write_report(self.run_dir, task=self.objective, model=self.model, metrics=metrics)
        return metrics
