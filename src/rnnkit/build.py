"""The builders: a config file or mapping -> a validated :class:`~rnnkit.config.Config` for its task, and
``fit(config)`` -> the task's Data and Objective handed to :class:`~rnnkit.training.engine.Trainer`.

This is the layer above both the tasks and the trainer (``rnnkit.config`` knows neither): YAML configs, the CLI,
``rnnkit.train`` and the estimators all build through here. ``load_config`` reads, applies ``--set`` overrides,
expands ``${VAR}`` and validates every section against the task's own dataclasses before anything runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import typing
from pathlib import Path

from rnnkit.config import (
    Config,
    ConfigError,
    apply_override,
    build_section,
    copy_tree,
    did_you_mean,
    expand_env,
    files_not_required,
    read_yaml,
)
from rnnkit.errors import RunExists
from rnnkit.tasks import get_task, task_names
from rnnkit.training import checkpoint as ckpt
from rnnkit.training.core import Objective
from rnnkit.training.engine import Trainer


def load_config(source: str | Path | dict | Config, overrides: typing.Sequence[str] = (), *,
                files: bool = True) -> Config:
    """Read (YAML path, mapping or Config), apply ``key.sub=value`` overrides, expand ``${VAR}``, validate.
    ``files=False``: the data files and vectors it names need not exist (a trained run's config, loaded to
    predict)."""
    if isinstance(source, Config):
        raw = source.to_dict()
    elif isinstance(source, dict):
        raw = copy_tree(source)
    else:
        raw = read_yaml(Path(source))
    for item in overrides:
        apply_override(raw, item)
    with contextlib.nullcontext() if files else files_not_required():
        return from_dict(expand_env(raw))


def _other_tasks_keys(raw: dict, task_name: str, types_: dict[str, type]) -> None:
    """A model or data key that this task lacks but another task has (``task`` changed, the rest left, as in
    ``--set task=forecasting`` on a classifier's config) is named with the tasks it belongs to."""
    for section, cls in types_.items():
        given = raw.get(section)
        if not isinstance(given, dict):
            continue
        own = {f.name for f in dataclasses.fields(cls)}
        for key in given:
            if key in own:
                continue
            owners = [name for name in task_names() if name != task_name and key in
                      {f.name for f in dataclasses.fields(getattr(get_task(name), f"{section}_config"))}]
            if owners:
                raise ConfigError(f"{section}.{key} is a key of task {', '.join(owners)}, not of {task_name}; "
                                  "remove it, or set the task it was written for")


def from_dict(raw: dict) -> Config:
    if not isinstance(raw, dict):
        raise ConfigError("a config must be a mapping with sections name/task/model/data/training")
    task_name = raw.get("task", Config.task)
    if not isinstance(task_name, str):
        raise ConfigError("task must be a string such as sequence_classification")
    task = get_task(task_name)
    types_ = {"model": task.model_config, "data": task.data_config}
    _other_tasks_keys(raw, task_name, types_)
    cfg = build_section(Config, raw, "", types_)
    for section in (cfg.model, cfg.data, cfg.training):
        section.check()
    if not cfg.name or "/" in cfg.name or cfg.name.startswith(".") or "\x00" in cfg.name or "\\" in cfg.name:
        raise ConfigError(f"name: '{cfg.name}' must be a non-empty folder name without '/'")
    if len(cfg.name.encode()) > 100:
        raise ConfigError(f"name: {len(cfg.name.encode())} bytes is too long for a folder name; use at most 100")
    monitors = ["train_loss"] + [f"val_{m}" for m in task.metrics]
    if cfg.training.monitor not in monitors:
        raise ConfigError(f"training.monitor: '{cfg.training.monitor}' is not one of {', '.join(monitors)}"
                          + did_you_mean(cfg.training.monitor, monitors))
    if cfg.training.monitor.startswith("val_") and cfg.data.val_fraction == 0 and not cfg.data.val_path:
        raise ConfigError(f"training.monitor is {cfg.training.monitor} but data.val_fraction is 0; "
                          "set data.val_fraction > 0 or training.monitor: train_loss")
    cfg.callbacks = _build_callbacks(cfg.callbacks)
    task.check_config(cfg)
    return cfg


def _build_callbacks(raw: dict) -> dict:
    from rnnkit.training.callbacks import CALLBACKS, load_builtin_callbacks

    load_builtin_callbacks()
    out = {}
    for name, opts in raw.items():
        if name not in CALLBACKS:
            known = sorted(CALLBACKS)
            raise ConfigError(f"callbacks: unknown callback '{name}'" + did_you_mean(name, known)
                              + (f" (known: {', '.join(known)})" if known else " (none are registered)"))
        opts_cls = CALLBACKS[name].options
        obj = build_section(opts_cls, opts or {}, f"callbacks.{name}.", {})
        if hasattr(obj, "check"):
            obj.check()
        out[name] = dataclasses.asdict(obj)
    return out


def resolve_run_dir(cfg: Config, out: str | Path | None) -> Path:
    """The new run's folder: ``out`` or ``runs/<name>``, which must not exist yet (or be empty: a lock file alone
    is what another process of the same data-parallel run, or a run that never started, leaves)."""
    from rnnkit.training.lock import folder_taken

    run_dir = Path(out) if out is not None else Path("runs") / cfg.name
    if folder_taken(run_dir):
        raise RunExists(f"run folder {run_dir} already exists; continue it with --resume {run_dir}, "
                              "or choose another with --out DIR")
    return run_dir


# what ``--resume --set`` may change: nothing that changes a weight's shape, the data, or what a step computes
RESUMABLE = ("training.epochs", "training.patience", "training.num_threads", "training.eval_batch_size",
             "training.checkpoint_every_steps", "training.tensorboard", "training.device", "training.max_time",
             "training.max_steps", "training.patience_steps")


def check_resume_overrides(overrides: typing.Sequence[str]) -> None:
    """ConfigError for a ``--resume --set`` key that may not change mid-run (callbacks.* may)."""
    for item in overrides:
        key = item.partition("=")[0].strip()
        if key in RESUMABLE or key.startswith("callbacks."):
            continue
        why = "it changes the shapes of the weights or the data" if key.startswith(("model.", "data.")) else \
            "it changes what the rest of the run computes"
        raise ConfigError(f"--set {key} cannot change when resuming ({why}); keys that may: "
                          f"{', '.join(RESUMABLE)}, callbacks.*; to change it, train a new run")


def fit(config: Config | str | Path | dict, out: str | Path | None = None, *, resume: str | Path | None = None,
        overrides: tuple[str, ...] | list[str] = (), command: str = "", quiet: bool = False,
        resume_from: str = "last", report: bool = True) -> tuple[Path, dict]:
    """Train (or resume) a run from a config; returns ``(run_dir, final metrics)``. Everything is validated before
    the run folder is created; an existing folder is never overwritten; the process holds the run folder's lock
    (one writer per run). ``resume_from``: the checkpoint a resume starts from, ``last`` or ``best``. ``report``:
    write ``report.html`` at the end (``Run.load(run_dir).write_report()`` writes it later)."""
    import shutil

    from rnnkit.training.engine import Dist
    from rnnkit.training.lock import LOCK_NAME, run_lock

    if resume is not None:
        run_dir = Path(resume)
        if not (run_dir / "config.yaml").is_file():
            raise ckpt.CheckpointError(f"{run_dir} is not a run folder (no config.yaml); give the folder that "
                                       "rnnkit train created")
        check_resume_overrides(overrides)
        if resume_from not in ("last", "best"):
            raise ConfigError(f"--from must be last or best, got {resume_from!r}")
        cfg = load_config(run_dir / "config.yaml", overrides)
    else:
        cfg = load_config(config, overrides)
        run_dir = resolve_run_dir(cfg, out)
    if cfg.training.ensemble > 1:
        return _fit_ensemble(cfg, run_dir, command, quiet, report)
    task = get_task(cfg.task)(cfg)  # a built-in task is both the Data and the Objective
    trainer = Trainer(cfg.training, callbacks=cfg.callbacks, command=command, quiet=quiet, report=report)
    created = not run_dir.exists()
    main = Dist.from_env().rank == 0
    lock = run_lock(run_dir) if main else contextlib.nullcontext()
    with lock:
        try:
            metrics = trainer.fit(task, task, run_dir, config=cfg, resume=resume is not None,
                                  resume_from=resume_from)
        except KeyboardInterrupt as e:  # say which folder to resume
            e.run_dir = run_dir if (run_dir / "checkpoints" / "last").exists() else None
            raise
        except BaseException:
            if created and main and {p.name for p in run_dir.iterdir()} <= {LOCK_NAME}:
                shutil.rmtree(run_dir, ignore_errors=True)  # a run that never started leaves no folder behind
            raise
    return run_dir, metrics


def member_config(cfg: Config, k: int) -> Config:
    """Ensemble member k's config: seed + k (initialisation, dropout, batch order), the ensemble's data splits."""
    m = from_dict(cfg.to_dict())
    t = m.training
    t.split_seed = t.seed if t.split_seed is None else t.split_seed
    t.seed, t.ensemble, t.ensemble_warm_start, m.name = t.seed + k, 1, False, f"{cfg.name}-member{k}"
    return m


def ensemble_model(cfg: Config, task: typing.Any) -> typing.Any:
    """The untrained ensemble of ``cfg.training.ensemble`` members of ``task``'s model."""
    return task.ensemble([task.build_model() for _ in range(cfg.training.ensemble)])


def _member_weights(run_dir: Path, k: int) -> dict:
    """Ensemble member k's best weights (its last where it kept no best)."""
    best = run_dir / "members" / str(k) / "checkpoints" / "best"
    where = best if best.exists() else best.parent / "last"
    return ckpt.tensors_from_bytes(ckpt.read_checkpoint(where)["model.safetensors"])


def _fit_ensemble(cfg: Config, run_dir: Path, command: str, quiet: bool, report: bool) -> tuple[Path, dict]:
    """Train (or continue) every member into ``run_dir/members/k``, then evaluate and save the ensemble."""
    import json

    from rnnkit.training.engine import Dist, pick_device
    from rnnkit.training.ensemble import spread
    from rnnkit.training.lock import run_lock

    task_cls = get_task(cfg.task)
    if task_cls.combine is Objective.combine:
        raise ConfigError(f"training.ensemble does not apply to task: {cfg.task} (its outputs have no combination "
                          "rule); set training.ensemble: 1")
    if getattr(cfg.model, "loss", None) == "gaussian":
        raise ConfigError("training.ensemble with model.loss: gaussian: a mixture of Gaussians is not one; use "
                          "loss: quantile or mse")
    if Dist.from_env().world > 1:
        raise ConfigError("training.ensemble trains its members one after another; run it without torchrun")
    K = cfg.training.ensemble
    with run_lock(run_dir):
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(cfg.to_yaml())
        members = []
        for k in range(K):
            mcfg, mdir = member_config(cfg, k), run_dir / "members" / str(k)
            if not quiet:
                start = f", from member {k}'s weights" if cfg.training.ensemble_warm_start and k else ""
                print(f"ensemble member {k + 1}/{K} (seed {mcfg.training.seed}{start}) -> {mdir}", flush=True)
            if (mdir / "metrics.json").is_file():  # finished before an interruption
                members.append(json.loads((mdir / "metrics.json").read_text()))
                continue
            resume = (mdir / "checkpoints" / "last").exists()
            if resume:
                mcfg = load_config(mdir / "config.yaml")
            trainer = Trainer(mcfg.training, callbacks=cfg.callbacks, command=command, quiet=quiet, report=False)
            mtask = task_cls(mcfg)
            init = _member_weights(run_dir, k - 1) if cfg.training.ensemble_warm_start and k and not resume else None
            members.append(trainer.fit(mtask, mtask, mdir, config=mcfg, resume=resume, init_weights=init))
        task = task_cls(member_config(cfg, 0))
        task.setup()
        model = ensemble_model(cfg, task)
        for k, member in enumerate(model.members):
            member.load_state_dict(_member_weights(run_dir, k))
        device = pick_device(cfg.training.device)
        model.to(device).eval()
        metrics: dict = {split: task.evaluate(model, task.splits[split], device)
                         for split in ("val", "test") if split in task.splits}
        metrics["ensemble"] = K
        metrics["train_seconds"] = float(sum(m.get("train_seconds", 0.0) for m in members))
        metrics["members"] = [{k: m[k] for k in ("val", "test", "best_epoch", "epochs", "steps") if k in m}
                              for m in members]
        metrics["spread"] = spread(members, [k for k in task.metrics if k != "loss"] + ["loss"])
        metrics = task.finalize_metrics(metrics)
        meta = {"task": task.state(), "ensemble": K, "epoch": 0, "global_step": 0}
        ckpt.write_checkpoint(run_dir / "checkpoints" / "best",
                              {"model.safetensors": ckpt.tensors_to_bytes(model.state_dict()),
                               "state.json": json.dumps(meta).encode()})
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
        info = json.loads((run_dir / "members" / "0" / "run.json").read_text())
        info |= {"name": cfg.name, "ensemble": K, "members": [f"members/{k}" for k in range(K)],
                 "reproduce": f"rnnkit train {run_dir / 'config.yaml'} --out {run_dir}-repro"}
        (run_dir / "run.json").write_text(json.dumps(info, indent=1) + "\n")
        if report:
            from rnnkit.report import write_report

            write_report(run_dir, task=task, model=model.cpu(), metrics=metrics)
    return run_dir, metrics


__all__ = ["ensemble_model", "fit", "from_dict", "load_config", "member_config", "resolve_run_dir"]
