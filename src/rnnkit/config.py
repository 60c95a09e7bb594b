"""Run configuration: plain dataclasses, loaded from YAML and validated before anything runs.

A config file has five sections::

    name: digits-gru
    task: sequence_classification
    model:    {cell: gru, hidden_size: 64, ...}
    data:     {source: embedded, name: digits, ...}
    training: {epochs: 15, lr: 0.003, ...}
    callbacks: {}            # optional: name -> options, for registered training callbacks

The task picks the dataclasses used for ``model`` and ``data`` (see :mod:`rnnkit.tasks`), so a new task
adds its own keys (``embedding_dim``, ``horizon``, ...) by subclassing :class:`ModelConfig` /
:class:`DataConfig` and registering itself; the engine never changes. Every mistake raises
:class:`ConfigError` with a one-line message naming the key and the fix. This module knows no task and no
trainer: :func:`rnnkit.build.load_config` builds a whole config for its task from these pieces.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import difflib
import inspect
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from rnnkit.errors import ConfigError  # noqa: E402 - re-exported: the config's one error type

# Upper bounds of counts a user may ask for, checked where they are used and by the CLI's argument types; past
# them a request overflows torch's int64 (a traceback) or runs for hours. Each is far above any useful setting.
MAX_BEAM = 1000  # beam search width (4-10 is typical; 1000 decodes a word in about 4 s on a CPU)
MAX_FORECAST = 1_000_000  # steps of one forecast (100 000 take about 13 s for a small LSTM)
MAX_IG_STEPS = 10_000  # integration steps of an explanation (the default is 50)
MAX_TRIALS = 10_000  # settings tried by rnnkit tune --trials
MAX_RATE = 1000.0  # training.lr, min_lr and weight_decay (1e300 overflowed float32 in the optimiser)
MAX_EMBEDDING = 16_384  # model.embedding_dim (GPT-3 is 12 288 wide; 1e6 was killed for memory)

# Whether the files and folders a config names must exist when it is checked: yes for training, no while a
# trained run's own config loads to predict (the task's saved state is what it needs; its training files may
# be gone, or the run folder copied to another machine). Commands that read them again say so when they are not.
_FILES_REQUIRED = contextvars.ContextVar("rnnkit_files_required", default=True)


def absent(path: str | Path, kind: str = "file") -> bool:
    """Whether the file (``kind="file"``), folder (``"dir"``) or either (``"any"``) a config names is missing;
    always False inside :func:`files_not_required`."""
    if not _FILES_REQUIRED.get():
        return False
    p = Path(path)
    return not (p.is_file() if kind == "file" else p.is_dir() if kind == "dir" else p.exists())


def files_required() -> bool:
    """False inside :func:`files_not_required`: a config may then also leave out the files a run reads."""
    return _FILES_REQUIRED.get()


@contextlib.contextmanager
def files_not_required():
    """Check configs without requiring the files they name (see :func:`absent`)."""
    token = _FILES_REQUIRED.set(False)
    try:
        yield
    finally:
        _FILES_REQUIRED.reset(token)


# --------------------------------------------------------------------------------------------------------
# sections


@dataclass
class ModelConfig:
    """The recurrent stack shared by all tasks (maps onto ``rnnkit.RNN/LSTM/GRU``)."""

    cell: str = "lstm"  # a name in rnnkit.layers.CELLS: rnn, lstm, gru, indrnn, mingru, minlstm
    hidden_size: int = 64
    num_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0  # between stacked layers
    recurrent_dropout: float = 0.0  # on the hidden state inside the recurrence
    activation: str | None = None  # None: the cell's default (tanh)
    recurrent_activation: str | None = None  # LSTM/GRU gates; None: sigmoid
    layer_norm: bool = False
    reset_after: bool = True  # GRU only
    max_abs: float | None = None  # IndRNN: the bound on |u|, the recurrent weights; null: the cell's 1.0
    engine: Literal["auto", "fused", "native", "scan", "parallel", "autograd"] = "auto"  # see docs/layers.md

    def _check_size(self) -> None:
        _check_model_size(self)

    def check(self) -> None:
        from rnnkit.layers import ACTIVATIONS, CELLS

        if self.cell not in CELLS:
            close = difflib.get_close_matches(str(self.cell), list(CELLS), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"model.cell: '{self.cell}' is not one of {', '.join(sorted(CELLS))}{hint}")
        _positive(self, "hidden_size", "num_layers")
        _fraction(self, "dropout", "recurrent_dropout")
        for key in ("activation", "recurrent_activation"):
            value = getattr(self, key)
            if value is not None and value not in ACTIVATIONS:
                raise ConfigError(f"model.{key}: '{value}' is not an activation rnnkit knows; use one of "
                                  f"{', '.join(sorted(ACTIVATIONS))}")
        takes = inspect.signature(CELLS[self.cell].__init__).parameters  # what this cell's layer accepts
        for key, unset in (("activation", None), ("recurrent_activation", None), ("reset_after", True),
                           ("max_abs", None)):
            if getattr(self, key) != unset and key not in takes:
                users = ", ".join(n for n, c in sorted(CELLS.items())
                                  if key in inspect.signature(c.__init__).parameters)
                raise ConfigError(f"model.{key} only applies to cell: {users}; remove it")
        self._check_size()
        try:  # what the layer itself refuses (an engine that cannot run these options, ...), on a tiny copy
            CELLS[self.cell](1, 2, self.num_layers, **layer_options(self))
        except (ValueError, TypeError) as e:
            raise ConfigError(f"model: {' '.join(str(e).split())}") from None


def memory_bytes(parameters: int) -> int:
    """Training memory of ``parameters`` float32 weights: the weights, their gradients and Adam's two moments."""
    return 16 * parameters


def machine_memory() -> int:
    """Physical memory of this machine in bytes (0 when it cannot be read)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def _check_model_size(m: ModelConfig) -> None:
    """Refuse, with the numbers, a recurrent stack whose training state cannot fit in this machine's memory."""
    from rnnkit.layers import CELLS

    E = getattr(m, "embedding_dim", None)  # the input width of the token tasks; others: ~ the hidden size
    if E is not None and E > MAX_EMBEDDING:  # its activations (batch x steps x E) fill memory before any check
        raise ConfigError(f"model.embedding_dim: {E} is far too wide (at most {MAX_EMBEDDING:,}; 50-1 024 is "
                          "typical)")
    gates = CELLS[m.cell].cell_class.num_gates
    H, dirs = m.hidden_size, 2 if m.bidirectional else 1
    first = dirs * gates * H * ((E or H) + H + 2)
    params = first + (m.num_layers - 1) * dirs * gates * H * (dirs * H + H + 2)
    need, have = memory_bytes(params), machine_memory()
    if have and need > have:
        over, fix = (f" over embeddings {E} wide", ", model.num_layers or model.embedding_dim") if E else (
            "", " or model.num_layers")
        raise ConfigError(f"model: hidden_size {H} x num_layers {m.num_layers}{over} is about {params / 1e9:.1f} "
                          f"billion parameters, {need / 2**30:.0f} GiB to train, more than this machine's "
                          f"{have / 2**30:.0f} GiB; choose a smaller model.hidden_size{fix}")


def layer_options(m: ModelConfig) -> dict:
    """The keyword arguments of the layer ``m`` describes (options left at the cell's default are left out)."""
    kwargs: dict = dict(bidirectional=m.bidirectional, dropout=m.dropout, recurrent_dropout=m.recurrent_dropout,
                        layer_norm=m.layer_norm, batch_first=True)
    if m.activation is not None:
        kwargs["activation"] = m.activation
    if m.recurrent_activation is not None:
        kwargs["recurrent_activation"] = m.recurrent_activation
    if not m.reset_after:
        kwargs["reset_after"] = m.reset_after
    if m.engine != "auto":
        kwargs["engine"] = m.engine
    if m.max_abs is not None:
        kwargs["max_abs"] = m.max_abs
    return kwargs


@dataclass
class DataConfig:
    """Where the sequences come from and how they are split."""

    modality: ClassVar[str] = "sequences"  # which registry of rnnkit.data.sources ``source`` names
    source: str = "embedded"  # npz, csv, mnist, fashion-mnist, embedded, or any registered sequences source
    path: str | None = None  # npz/csv file (``${VAR}`` and ``~`` are expanded)
    test_path: str | None = None  # optional separate test file (npz/csv)
    val_path: str | None = None  # optional separate validation file (npz/csv); replaces val_fraction
    name: str = "digits"  # embedded data set name
    root: str | None = None  # mnist/fashion-mnist folder root; None: $RNNKIT_DATA or ~/.cache/rnnkit
    download: bool = True  # mnist/fashion-mnist: download when missing
    options: dict = field(default_factory=dict)  # the source's options (its keyword arguments; csv: delimiter...)
    val_fraction: float = 0.1  # held out from the training set for validation / early stopping
    test_fraction: float = 0.0  # held out for testing when the source has no test split
    standardize: bool = False  # per-feature mean/std from the training split
    normalize: Literal["none", "per_sequence"] = "none"  # per_sequence: z-normalise each sequence on its own
    limit: int | None = None  # use only the first N training sequences (quick experiments)

    def check_source(self) -> None:
        """What every modality's check shares: the source is registered for this modality, ``options`` fit its
        signature (did-you-mean), and ``limit`` is positive (``limit: 0`` left seq2seq without a training part)."""
        from rnnkit.data.sources import check_options

        options = check_options(self.modality, self.source, self.options)
        self.options = {k: _check_number(v, f"data.options.{k}", self.options[k]) for k, v in options.items()}
        if self.limit is not None:
            _positive(self, "limit")

    def check(self) -> None:
        self.check_source()
        if self.source in ("npz", "csv"):
            if not self.path and files_required():
                raise ConfigError(f"data.path is required for source: {self.source} (the .{self.source} file)")
            for key in ("path", "test_path", "val_path"):
                p = getattr(self, key)
                if p is not None and absent(p):
                    raise ConfigError(f"data.{key}: file not found: {p}")
        elif self.path is not None or self.test_path is not None or self.val_path is not None:
            raise ConfigError(f"data.path/test_path/val_path only apply to source: npz or csv (source is "
                              f"{self.source})")
        if not 0.0 <= self.val_fraction < 1.0 or not 0.0 <= self.test_fraction < 1.0:
            raise ConfigError("data.val_fraction and data.test_fraction must be in [0, 1)")
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ConfigError("data.val_fraction + data.test_fraction must leave some training data (< 1)")


@dataclass
class TrainingConfig:
    """Optimisation, schedule, stopping, checkpoints and hardware."""

    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9  # sgd only
    schedule: Literal["none", "cosine", "onecycle", "plateau"] = "none"
    min_lr: float = 0.0  # floor of cosine / onecycle / plateau
    warmup_steps: int = 0  # linear warm-up of the lr from ~0 over the first N optimizer steps (any schedule)
    plateau_factor: float = 0.5  # plateau: lr *= factor after plateau_patience epochs without improvement
    plateau_patience: int = 2
    epochs: int = 10
    min_steps: int | None = None  # at least this many optimizer steps (more epochs on a small training set;
    #                               early stopping waits for them)
    max_steps: int | None = None  # stop after this many optimizer steps (evaluates, checkpoints, reports)
    max_time: float | None = None  # stop after this many seconds of training (the same, at the next step)
    batch_size: int = 32  # global batch size (split across processes under torchrun)
    eval_batch_size: int = 256
    clip_norm: float | None = 1.0  # max global gradient norm; null: no clipping (the norm is still logged)
    patience: int | None = None  # early stopping: epochs without improvement of `monitor`; null: off
    patience_steps: int | None = None  # early stopping: optimizer steps without improvement of `monitor`
    eval_every_steps: int | None = None  # also validate every N steps (mid-epoch best checkpoints, patience_steps)
    monitor: str = "val_loss"  # metric for best checkpoint / early stopping / plateau (val_<metric>)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = False  # mixed precision: CUDA bf16 (else fp16 + loss scaling); CPU bf16 matmuls (bf16 CPUs)
    num_threads: int | None = None  # torch CPU threads; null: torch's default
    flush_denormal: bool = False  # CPU: treat denormal floats as zero (vanishing gradients otherwise crawl)
    checkpoint_every_steps: int | None = None  # also checkpoint every N optimizer steps (mid-epoch resume)
    tensorboard: bool = False  # log scalars to <run>/tensorboard if torch.utils.tensorboard imports
    baselines: bool = True  # fit the task's simple baselines on the training part, score them on the test split
    ema: float | None = None  # decay of an average of the weights (e.g. 0.999) used for validation and the result
    ensemble: int = 1  # K > 1: K members (seeds seed..seed+K-1, the same splits), their predictions averaged
    ensemble_warm_start: bool = False  # member k > 0 starts from member k-1's best weights, its schedule restarted
    #                                    (a snapshot ensemble: K cycles of one training instead of K trainings)
    split_seed: int | None = None  # seed of the random train/val/test cuts; null: training.seed

    def check(self) -> None:
        _positive(self, "lr", "epochs", "batch_size", "eval_batch_size", "plateau_patience", "ensemble")
        for key in ("seed", "split_seed"):
            v = getattr(self, key)
            if v is not None and not 0 <= v < 2**32:
                raise ConfigError(f"training.{key} must be a whole number in [0, 2**32), got {v}")
        if self.ensemble > 1000:
            raise ConfigError(f"training.ensemble: {self.ensemble} members is far too many (each is a whole training); "
                              "use a handful, e.g. 5")
        if self.ensemble_warm_start and self.ensemble < 2:
            raise ConfigError("training.ensemble_warm_start chains the members of an ensemble; set training.ensemble "
                              ">= 2 or drop it")
        if self.ema is not None and not 0.0 < self.ema < 1.0:
            raise ConfigError(f"training.ema is the decay of the weight average, in (0, 1) (e.g. 0.999), got "
                              f"{self.ema}")
        if isinstance(self.warmup_steps, bool) or not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ConfigError(f"training.warmup_steps must be a whole number >= 0, got {self.warmup_steps!r}")
        for key in ("clip_norm", "patience", "num_threads", "checkpoint_every_steps", "min_steps", "max_steps",
                    "max_time", "patience_steps", "eval_every_steps"):
            if getattr(self, key) is not None:
                _positive(self, key)
        if self.weight_decay < 0 or self.min_lr < 0:
            raise ConfigError("training.weight_decay and training.min_lr must be >= 0")
        for key in ("lr", "weight_decay", "min_lr"):  # 1e300 overflowed float32 in the optimiser: an internal error
            if getattr(self, key) > MAX_RATE:
                raise ConfigError(f"training.{key}: {getattr(self, key):g} is far too large (at most {MAX_RATE:g}; "
                                  "typical values are 1e-4 to 1)")
        if not 0.0 < self.plateau_factor < 1.0:
            raise ConfigError("training.plateau_factor must be in (0, 1)")
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError("training.momentum must be in [0, 1)")
        cpus = os.cpu_count() or 1
        if self.num_threads is not None and self.num_threads > max(64, 4 * cpus):
            raise ConfigError(f"training.num_threads: {self.num_threads} threads on a machine with {cpus} CPUs; use "
                              f"at most {max(64, 4 * cpus)} (or null: torch's default)")
        for key in ("batch_size", "eval_batch_size"):
            if getattr(self, key) > 10_000_000:
                raise ConfigError(f"training.{key}: {getattr(self, key)} is far too large")


@dataclass
class Config:
    name: str = "run"
    task: str = "sequence_classification"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    callbacks: dict = field(default_factory=dict)  # callback name -> options mapping

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False)


# --------------------------------------------------------------------------------------------------------
# loading and validation


def read_yaml(path: Path) -> dict:
    import yaml

    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        line = path.read_bytes()[: e.start].count(b"\n") + 1
        raise ConfigError(f"{path} is not UTF-8 text (byte {e.object[e.start]:#x} on line {line}); save it as "
                          "UTF-8") from None
    try:
        aliases = sum(isinstance(ev, yaml.AliasEvent) for ev in yaml.parse(text, Loader=yaml.SafeLoader))
        if aliases > 100:
            raise ConfigError(f"{path} uses {aliases} YAML aliases (*name); a config needs none, and so many can "
                              "expand without bound: write the values out")
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{path} is not valid YAML{where}: {getattr(e, 'problem', e)}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must be a YAML mapping with sections name/task/model/data/training")
    return raw


def apply_override(raw: dict, item: str) -> None:
    """``training.lr=0.01`` -> raw['training']['lr'] = 0.01 (the value is parsed as YAML)."""
    import yaml

    key, eq, value = item.partition("=")
    if not eq or not key.strip():
        raise ConfigError(f"--set expects key.sub=value, got '{item}'")
    parts = key.strip().split(".")
    node = raw
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: '{p}' is not a section")
    try:
        node[parts[-1]] = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        raise ConfigError(f"--set {key}: cannot parse value '{value}' (quote strings with spaces)") from None


def build_section(cls: type, raw: Any, prefix: str, section_types: dict[str, type]) -> Any:
    where = prefix.rstrip(".") or "config"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping (key: value lines), got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in raw.items():
        if key not in fields:
            raise ConfigError(f"unknown key '{prefix}{key}'" + did_you_mean(str(key), list(fields)))
        sub = section_types.get(key) if not prefix else None
        hint = sub or hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = build_section(hint, value if value is not None else {}, f"{prefix}{key}.", {})
        else:
            kwargs[key] = _coerce(value, hint, f"{prefix}{key}")
    for key, sub in section_types.items():
        if key not in kwargs and not prefix:
            kwargs[key] = sub()
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key)
    if origin is Literal:
        if value not in args:
            opts = [str(a) for a in args]
            raise ConfigError(f"{key}: '{value}' is not one of {', '.join(opts)}" + did_you_mean(str(value), opts))
        return value
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string", dict: "a mapping",
             list: "a list"}
    expected = origin or hint
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if expected is float and isinstance(value, str):  # YAML 1.1 reads 1e-3 as a string
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) and expected is not bool or not isinstance(value, expected):
        raise ConfigError(f"{key} must be {names.get(expected, expected)}, got {value!r}")
    _check_number(value, key)
    if expected is list:
        _check_numbers(value, key)
    return value


def _check_number(value: Any, key: str, given: Any = None) -> Any:
    """A float must be finite and an int within 2**53 (what float64 holds exactly); other values pass. Config
    keys and the sources' ``data.options`` go through here; ``given``: the value as written, for the message."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key} must be a finite number, got {value if given is None else given!r}")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**53:
        raise ConfigError(f"{key}: {value} is far too large")
    return value


def _check_numbers(values: list, key: str) -> None:
    """Lists of numbers (quantiles, class weights, ...) hold finite numbers only; other lists are left alone."""
    bad = [i for i, v in enumerate(values) if isinstance(v, float) and not math.isfinite(v)]  # ints are finite
    if bad:
        where = ", ".join(map(str, bad[:3])) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise ConfigError(f"{key} must hold finite numbers, got {values[bad[0]]!r} at position {where} (of "
                          f"{len(values)}); fill or drop them")


def did_you_mean(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _section(obj: Any) -> str:
    """The config section an object is (``model`` for every ModelConfig subclass, ...), for messages."""
    for cls in type(obj).__mro__:
        if cls.__name__ in ("ModelConfig", "DataConfig", "TrainingConfig"):
            return cls.__name__.replace("Config", "").lower()
    return type(obj).__name__.replace("Config", "").lower()


def _positive(obj: Any, *keys: str) -> None:
    section = _section(obj)
    for k in keys:
        if getattr(obj, k) <= 0:
            raise ConfigError(f"{section}.{k} must be > 0, got {getattr(obj, k)}")


def _fraction(obj: Any, *keys: str) -> None:
    section = _section(obj)
    for k in keys:
        if not 0.0 <= getattr(obj, k) < 1.0:
            raise ConfigError(f"{section}.{k} must be in [0, 1), got {getattr(obj, k)}")


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_env(node: Any) -> Any:
    """Expand ``${VAR}`` (must be set) and a leading ``~`` in every string of the config."""
    if isinstance(node, dict):
        return {k: expand_env(v) for k, v in node.items()}
    if isinstance(node, list):
        return [expand_env(v) for v in node]
    if isinstance(node, str):
        def sub(m: re.Match) -> str:
            if m.group(1) not in os.environ:
                raise ConfigError(f"environment variable {m.group(1)} is not set (used as ${{{m.group(1)}}})")
            return os.environ[m.group(1)]

        node = _VAR.sub(sub, node)
        return os.path.expanduser(node) if node.startswith("~") else node
    return node


def copy_tree(node: Any) -> Any:
    """A deep copy of a config mapping as YAML can write it: numpy scalars and arrays (``list(np.arange(5.0))``
    holds np.float64) become Python numbers and lists, tuples lists."""
    if isinstance(node, dict):
        return {k: copy_tree(v) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return [copy_tree(v) for v in node]
    if type(node).__module__ == "numpy" and hasattr(node, "tolist"):
        return node.tolist()
    return node
