"""scikit-learn-style estimators on in-memory data: ``SequenceClassifier``, ``TextClassifier``, ``Forecaster``,
``LanguageModel``.

    clf = rnnkit.SequenceClassifier(cell="gru", hidden_size=64, epochs=15).fit(X_train, y_train)
    clf.predict(X_test); clf.predict_proba(X_test); clf.score(X_test, y_test)

They follow scikit-learn's estimator conventions without importing it: every constructor argument is stored
unchanged as an attribute, ``get_params``/``set_params`` read and write them, ``fit`` returns ``self`` and
retrains from scratch, fitted attributes end in ``_`` (``classes_``, ``run_``, ``history_``), so
``sklearn.base.clone``, ``cross_val_score``, ``GridSearchCV`` and ``Pipeline`` work with them.

Each is a thin builder over the training engine that YAML configs and the CLI use: the constructor takes every
key of the task's ``model`` and ``data`` sections (where it makes sense for in-memory data) and of the
``training`` section, with the same names and defaults; ``fit`` writes the arrays into the run folder
(``<run>/data/``) and trains exactly as ``rnnkit train`` would. The run folder is ``out=`` when given, else a
temporary folder removed with the estimator, which :meth:`save` keeps; :func:`rnnkit.load` returns the estimator
of any run folder. An unknown keyword is a TypeError with a did-you-mean.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from rnnkit.config import TrainingConfig
from rnnkit.data.memory import (
    as_sequences,
    as_texts,
    has_dates,
    missing,
    relocate,
    settle,
    staging_dir,
    write_npz,
    write_series_csv,
    write_text_csv,
)

# data keys an in-memory estimator manages itself (sources and files), and never a constructor argument
_DATA_OWN = {"source", "path", "test_path", "val_path", "name", "root", "download", "options", "values", "files",
             "date_col", "target", "covariates", "text_column", "label_column", "test_fraction", "test_start",
             "test_end", "limit"}
_OWN = ("out", "verbose")  # the estimator's own arguments


def _fields(cls: type, skip: set[str] = frozenset()) -> list[tuple[str, Any]]:
    out = []
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        out.append((f.name, default))
    return out


class _Estimator:
    """The shared machinery; a subclass sets ``_task`` and ``_sections`` (key -> config section)."""

    _task: ClassVar[str] = ""
    _sections: ClassVar[dict[str, str]] = {}
    _defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, **params: Any) -> None:
        self._check_names(params)
        for name, default in self._defaults.items():
            setattr(self, name, params.get(name, default))

    @classmethod
    def _check_names(cls, params: dict) -> None:
        for name in params:
            if name not in cls._defaults:
                close = difflib.get_close_matches(name, list(cls._defaults), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise TypeError(f"{cls.__name__} got an unexpected keyword argument '{name}'{hint}")

    # ---- scikit-learn's parameter protocol ----------------------------------------------------------------
    @classmethod
    def _get_param_names(cls) -> list[str]:
        return list(cls._defaults)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor arguments as given (scikit-learn's protocol)."""
        return {name: getattr(self, name) for name in self._defaults}

    def set_params(self, **params: Any) -> _Estimator:
        """Set constructor arguments (scikit-learn's protocol); an unknown one is a TypeError."""
        self._check_names(params)
        for name, value in params.items():
            setattr(self, name, value)
        return self

    _estimator_type: ClassVar[str | None] = None  # "classifier" for scikit-learn's is_classifier

    def __sklearn_tags__(self) -> Any:
        """scikit-learn's estimator tags (sklearn >= 1.6 asks for them; imported only when it does)."""
        from sklearn.utils import ClassifierTags, InputTags, Tags, TargetTags

        classifier = self._estimator_type == "classifier"
        return Tags(estimator_type=self._estimator_type, target_tags=TargetTags(required=classifier),
                    classifier_tags=ClassifierTags() if classifier else None,
                    input_tags=InputTags(two_d_array=False, three_d_array=True, string=self._task.startswith("text")),
                    non_deterministic=False, requires_fit=True)

    def __repr__(self) -> str:
        changed = [f"{k}={v!r}" for k, v in self.get_params().items() if not _same(v, self._defaults[k])]
        return f"{type(self).__name__}({', '.join(changed)})"

    def _repr_html_(self) -> str:
        import html

        rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(repr(v))}</td></tr>"
                       for k, v in self.get_params().items() if not _same(v, self._defaults[k]))
        state = "fitted" if hasattr(self, "run_") else "not fitted"
        extra = ""
        if hasattr(self, "run_"):
            for split in ("test", "val"):
                m = self.run_.metrics.get(split)
                if m:
                    shown = ", ".join(f"{k} {v:.4g}" for k, v in m.items() if isinstance(v, float))
                    extra = f"<p>{split}: {html.escape(shown)}</p>"
                    break
            extra += f"<p>run folder: <code>{html.escape(str(self.run_dir_))}</code></p>"
        return (f"<div><b>{type(self).__name__}</b> ({state})<table>{rows}</table>{extra}</div>")

    # ---- building and training ------------------------------------------------------------------------
    def _config(self, data: dict) -> dict:
        cfg: dict[str, dict] = {"model": {}, "data": dict(data), "training": {}}
        for name, section in self._sections.items():
            cfg[section][name] = _plain(getattr(self, name))
        return {"name": type(self).__name__.lower(), "task": self._task, **cfg}

    def _run_dir(self) -> Path:
        """A fresh run folder: ``out`` (replacing this estimator's own earlier fit there), else a temporary one."""
        old = getattr(self, "run_dir_", None)
        if self.out is not None:
            out = Path(self.out)
            if out.exists():
                if old is None or Path(old).resolve() != out.resolve():
                    raise ValueError(f"out={str(out)!r} already exists; give a new folder (a refit of this "
                                     "estimator replaces its own run folder)")
                shutil.rmtree(out)
            out.parent.mkdir(parents=True, exist_ok=True)
            return out
        tmp = Path(tempfile.mkdtemp(prefix="rnnkit-"))
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(tmp), True)
        return tmp / "run"

    def _train(self, run_dir: Path, data: dict) -> None:
        from rnnkit.api import Run
        from rnnkit.build import fit

        cfg = self._config(data)
        try:
            fit(cfg, run_dir, command=f"{type(self).__name__}.fit", quiet=not self.verbose, report=False)
        finally:  # the data files go into the run folder, and its config.yaml points there
            settle(run_dir, staging_dir(run_dir))
        if self.out is not None:  # a temporary folder gets its report when saved: most of a small fit's time
            Run.load(run_dir).write_report()
        classes = getattr(self, "classes_", None)
        if classes is not None and classes.dtype.kind in "biufUS":  # the original labels, for load()
            (run_dir / "data").mkdir(exist_ok=True)
            np.save(run_dir / "data" / "classes.npy", classes, allow_pickle=False)
        self.run_dir_ = run_dir
        self.run_ = Run.load(run_dir)
        self.history_ = self.run_.history
        self.metrics_ = self.run_.metrics

    def _fitted(self) -> None:
        if not hasattr(self, "run_"):
            raise ValueError(f"this {type(self).__name__} is not fitted yet: call fit first")

    def save(self, path: str | Path) -> Path:
        """Copy the run folder (config, safetensors checkpoints, metrics, report, the training data) to ``path``,
        which must not exist; ``rnnkit.load(path)`` gives the estimator back."""
        self._fitted()
        path = Path(path)
        if path.exists():
            raise ValueError(f"{path} already exists; give a new folder")
        if not Path(self.run_dir_).is_dir():  # unpickled after the temporary folder went with its estimator
            raise ValueError(f"the run folder {self.run_dir_} is gone (a temporary folder is removed with the "
                             "estimator that made it); save before pickling, or fit with out=")
        shutil.copytree(self.run_dir_, path)
        relocate(path, Path(self.run_dir_), path)
        if not (path / "report.html").exists():  # fitted into a temporary folder: no report yet
            from rnnkit.api import Run

            Run.load(path).write_report()
        return path

    # ---- pickling (scikit-learn's joblib and clone of fitted estimators) ------------------------------------
    def __getstate__(self) -> dict:
        state = {k: v for k, v in self.__dict__.items() if k not in ("run_", "_cleanup")}
        if hasattr(self, "run_"):
            run = self.run_
            state["_pickled_run"] = {"config": run.config.to_dict(), "task": run.task.state(),
                                     "model": {k: v.clone() for k, v in run.model.state_dict().items()}}
        return state

    def __setstate__(self, state: dict) -> None:
        packed = state.pop("_pickled_run", None)
        self.__dict__.update(state)
        if packed is not None:
            from rnnkit.api import Run
            from rnnkit.build import load_config
            from rnnkit.tasks import get_task

            cfg = load_config(packed["config"], files=False)  # the temporary folder may be gone
            task = get_task(cfg.task)(cfg)
            task.load_state(packed["task"])
            model = task.build_model()
            model.load_state_dict(packed["model"])
            self.run_ = Run(Path(self.run_dir_), cfg, task, model.eval(), "best")


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - arrays and the like: shown as changed
        return False


def _plain(v: Any) -> Any:
    """A value as YAML writes it (tuples as lists, numpy scalars as Python)."""
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


def _section_defaults(task: str, data_keep: set[str] | None = None) -> tuple[dict[str, str], dict[str, Any]]:
    from rnnkit.tasks import get_task

    t = get_task(task)
    sections: dict[str, str] = {}
    defaults: dict[str, Any] = {}
    parts = [("model", t.model_config, set()), ("data", t.data_config, _DATA_OWN),
             ("training", TrainingConfig, set())]
    for section, cls, skip in parts:
        for name, default in _fields(cls, skip):
            if data_keep is not None and section == "data" and name not in data_keep:
                continue
            if name in sections:
                raise AssertionError(f"{name} is in both {sections[name]} and {section}")
            sections[name], defaults[name] = section, default
    return sections, {**defaults, "out": None, "verbose": False}


# ---------------------------------------------------------------------------------------------- sequences


class _ClassifierMixin:
    """``classes_`` from the labels (any hashable values), ``predict``/``score`` from ``predict_proba``."""

    _estimator_type = "classifier"

    def _encode_labels(self, y: Any, mask: np.ndarray | None = None) -> np.ndarray:
        y = np.asarray(y)
        labels = y if mask is None else y[mask]
        gone = np.flatnonzero(missing(labels.ravel()))
        if len(gone):
            raise ValueError(f"y holds {len(gone)} missing labels (NaN or None), the first at {gone[0]}; drop those "
                             "examples")
        self.classes_ = np.unique(labels)
        if len(self.classes_) < 2:
            raise ValueError("y holds a single class; classification needs at least 2")
        return np.searchsorted(self.classes_, y).clip(0, len(self.classes_) - 1).astype(np.int64)

    def _labels_to_index(self, y: Any) -> np.ndarray:
        y = np.asarray(y)
        idx = np.searchsorted(self.classes_, y).clip(0, len(self.classes_) - 1)
        if not np.all(self.classes_[idx] == y):
            unknown = sorted({repr(v) for v in np.asarray(y).ravel()[self.classes_[idx].ravel() != y.ravel()]})[:3]
            raise ValueError(f"y holds labels the estimator was not fitted on: {', '.join(unknown)}")
        return idx.astype(np.int64)

    def predict(self, X: Any, **kw: Any) -> np.ndarray:
        """The most probable class of each sequence (or step), in the original labels."""
        self._fitted()
        return self.classes_[self.predict_proba(X, **kw).argmax(-1)]

    def score(self, X: Any, y: Any, **kw: Any) -> float:
        """Accuracy (over real steps for a per-step tagger)."""
        pred = self.predict(X, **kw)
        if y is None:
            raise ValueError("score needs the true labels y (one per sequence or text)")
        y = np.asarray(y)
        if pred.ndim == 1 and y.ndim == 2 and y.shape[1] == 1:  # a column vector, as scikit-learn accepts
            y = y.ravel()
        if pred.ndim == 1 and y.shape != pred.shape:
            raise ValueError(f"y has shape {y.shape}, but X holds {len(pred)} examples: give one label each, "
                             f"shape ({len(pred)},)")
        if pred.ndim == 2:  # per step: padded steps do not count
            n = kw.get("lengths")
            _, lengths = as_sequences(X, n)
            if lengths is not None:
                valid = np.arange(pred.shape[1])[None, :] < lengths[:, None]
                return float((pred[valid] == y[:, : pred.shape[1]][valid]).mean())
        return float((pred == y).mean())


class SequenceClassifier(_ClassifierMixin, _Estimator):
    """A recurrent classifier of sequences (or, with labels of shape (N, T), a per-step tagger).

    ``fit(X, y, lengths=None, validation_data=None)``: X (N, T, D) array or tensor, (N, T) for one feature, or
    a list of (T_i, D) arrays of different lengths; y (N,) labels of any hashable type, or (N, T) per step;
    ``validation_data=(X_val, y_val)`` replaces the ``val_fraction`` split. Constructor arguments: the
    ``model`` (cell, hidden_size, num_layers, bidirectional, pooling, ...), ``data`` (val_fraction,
    standardize) and ``training`` (epochs, lr, batch_size, ...) keys of ``task: sequence_classification``.
    """

    _task = "sequence_classification"

    def fit(self, X: Any, y: Any, lengths: Any = None, validation_data: tuple | None = None) -> SequenceClassifier:
        X, lengths = as_sequences(X, lengths)
        y_arr = np.asarray(y)
        if len(y_arr) != len(X):
            raise ValueError(f"X has {len(X)} sequences but y has {len(y_arr)} labels")
        mask = None
        if y_arr.ndim == 2 and lengths is not None:
            mask = np.arange(y_arr.shape[1])[None, :] < lengths[:, None]
        y_idx = self._encode_labels(y_arr, mask)
        run_dir = self._run_dir()
        data: dict[str, Any] = {"source": "npz", "path": write_npz(staging_dir(run_dir) / "train.npz", X,
                                                                 y_idx, lengths), "test_fraction": 0.0}
        if validation_data is not None:
            validation_data = _validation(validation_data, "(X_val, y_val) or (X_val, y_val, lengths_val)", 3)
            Xv, lv = as_sequences(validation_data[0], validation_data[2] if len(validation_data) > 2 else None)
            data["val_path"] = write_npz(staging_dir(run_dir) / "val.npz", Xv,
                                    self._labels_to_index(validation_data[1]), lv)
        self._train(run_dir, data)
        return self

    @torch.no_grad()
    def predict_proba(self, X: Any, lengths: Any = None) -> np.ndarray:
        """Class probabilities (N, K) — (N, T, K) for a per-step tagger — columns in the order of ``classes_``."""
        self._fitted()
        X, lengths = as_sequences(X, lengths)
        run = self.run_
        split = run.task.as_input(X if lengths is None else _seq_data(X, lengths), labels=False)
        bs, out = run.config.training.eval_batch_size, []
        model = run.model.eval()
        for i in range(0, len(split), bs):
            xb = split.X[i: i + bs]
            lb = None if split.lengths is None else split.lengths[i: i + bs]
            out.append(model(xb, lb).float().softmax(-1))
        return torch.cat(out).numpy() if out else np.zeros((0, len(self.classes_)), np.float32)


def _seq_data(X: np.ndarray, lengths: np.ndarray):
    from rnnkit.data.sequences import SequenceData

    return SequenceData.from_arrays(X, np.zeros(len(X), np.int64), lengths, where="input")


# ---------------------------------------------------------------------------------------------- text
class TextClassifier(_ClassifierMixin, _Estimator):
    """A recurrent text classifier: ``fit(texts, labels)`` on lists of strings; ``predict``, ``predict_proba``,
    ``score``, ``explain(texts)``. Constructor arguments: the ``model`` (cell, hidden_size, embedding_dim, pooling,
    ...), ``data`` (tokenizer, max_length, num_words, ...) and ``training`` keys of ``task: text_classification``.
    """

    _task = "text_classification"

    def fit(self, texts: Any, labels: Any, validation_data: tuple | None = None) -> TextClassifier:
        texts = as_texts(texts)
        if len(texts) != len(labels):
            raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
        y = self._encode_labels(np.asarray(labels))
        run_dir = self._run_dir()
        staging = staging_dir(run_dir)
        data: dict[str, Any] = {"source": "csv", "path": write_text_csv(staging / "train.csv", texts, y),
                                "text_column": "text", "label_column": "label"}
        if validation_data is not None:
            validation_data = _validation(validation_data, "(texts_val, labels_val)")
            data["val_path"] = write_text_csv(staging / "val.csv", as_texts(validation_data[0]),
                                    self._labels_to_index(validation_data[1]))
        self._train(run_dir, data)
        return self

    def predict_proba(self, texts: Any) -> np.ndarray:
        """Class probabilities (N, K), columns in the order of ``classes_``."""
        self._fitted()
        run = self.run_
        corpus = run.task.as_input(as_texts(texts), labels=False)
        return run.task.probabilities(run.model, corpus, run.device)[1]

    def explain(self, texts: Any, steps: int = 50) -> list:
        """Per-token importance of each decision (integrated gradients; see docs/text.md)."""
        from rnnkit.explain import explain_texts

        self._fitted()
        exps = explain_texts(self.run_, as_texts(texts), steps)
        names = self.run_.task.classes
        return [dataclasses.replace(e, predicted=str(self.classes_[names.index(e.predicted)])) for e in exps]


# ---------------------------------------------------------------------------------------------- forecasting
class Forecaster(_Estimator):
    """A recurrent forecaster: ``fit(series)`` with a 1-D array or list, or a pandas Series / DataFrame (the
    first column the target, the others covariates) with a DatetimeIndex; ``predict(steps)`` continues the series
    (a DataFrame with dates and interval columns when the input had dates); ``backtest(...)``. Constructor
    arguments: the ``model`` (cell, hidden_size, loss, quantiles, ...), ``data`` (lookback, horizon, season,
    scaler, relative, ...) and ``training`` keys of ``task: forecasting``. The last ``test_fraction`` of the
    series is held out for the test metrics, as in a config.
    """

    _task = "forecasting"

    def fit(self, series: Any) -> Forecaster:
        run_dir = self._run_dir()
        staging = staging_dir(run_dir)
        data: dict[str, Any] = {"test_fraction": self.test_fraction}
        self.dated_ = has_dates(series)
        data.update(_series_data(series, staging, self.fill))
        self._train(run_dir, data)
        return self

    def predict(self, steps: int) -> Any:
        """Forecasts for ``steps`` steps past the series' end: a numpy array (steps,), or a pandas DataFrame
        indexed by date with ``forecast`` and interval columns when the series had dates."""
        from rnnkit.tasks.forecasting import forecast

        self._fitted()
        if not isinstance(steps, int | np.integer) or steps < 1:
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        records = forecast(self.run_, int(steps))
        if not self.dated_:
            return np.array([r["forecast"] for r in records])
        import pandas as pd

        frame = pd.DataFrame(records)
        return frame.set_index(pd.to_datetime(frame.pop("date"))).drop(columns=["origin", "step"], errors="ignore")

    def backtest(self, series: Any = None, folds: int = 5, stride: int | None = None, out: str | Path | None = None):
        """Rolling-origin evaluation (retrains per fold) of this configuration on ``series`` (default: the fitted
        one); returns the backtest summary as ``rnnkit backtest`` writes it."""
        from rnnkit.backtest import backtest

        if series is None:
            self._fitted()
            cfg = self.run_.config.to_dict()
        else:
            staging = Path(tempfile.mkdtemp(prefix="rnnkit-bt-"))
            data = {"test_fraction": self.test_fraction, **_series_data(series, staging, self.fill)}
            cfg = self._config(data)
        where = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="rnnkit-bt-")) / "backtest"
        return backtest(cfg, where, folds=folds, stride=stride, quiet=not self.verbose)


def _series_data(series: Any, staging: Path, fill: str) -> dict:
    """The ``data`` keys of a series given in memory: a dated pandas object as a CSV, else the values (T,)."""
    if has_dates(series):
        return write_series_csv(staging / "series.csv", series)
    if isinstance(series, torch.Tensor):
        series = series.detach().cpu().numpy()
    elif hasattr(series, "to_numpy"):  # pandas without dates
        series = series.to_numpy()
    try:
        values = np.asarray(series, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"the series must hold numbers ({e}); give a 1-D array, list or pandas Series") from None
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1:
        raise ValueError(f"the series has shape {values.shape}; give a 1-D array of values (T,), or a pandas "
                         "DataFrame with a DatetimeIndex whose first column is the target and the others covariates")
    if fill != "error" and np.isnan(values).any():  # the dated path fills when the CSV is read; so here
        from rnnkit.data.series import fill_gaps, from_array

        values = fill_gaps(from_array(values), fill).y
    return {"source": "array", "values": values.tolist()}


def _validation(pair: Any, form: str, most: int = 2) -> tuple:
    """``validation_data`` as a tuple of 2 (or up to ``most``) parts, else a ValueError naming its form."""
    if not isinstance(pair, tuple | list) or not 2 <= len(pair) <= most:
        got = f"a {type(pair).__name__} of {len(pair)}" if isinstance(pair, tuple | list) else \
            f"a {type(pair).__name__}"
        raise ValueError(f"validation_data must be a tuple {form}, got {got}")
    return tuple(pair)


def _names_a_file(text: str) -> bool:
    """Whether a string given as a document is the path of an existing file rather than text itself."""
    if len(text) >= 4096 or "\n" in text:
        return False
    try:
        return Path(text).is_file()
    except (OSError, ValueError):  # too long a name for the file system, a NUL byte: text, not a path
        return False


# ---------------------------------------------------------------------------------------------- language model
class LanguageModel(_Estimator):
    """A recurrent character (or word) language model: ``fit(text_or_files)`` with a string, a list of strings
    (documents) or paths; ``generate(prime, length, temperature, top_k, seed)``; ``score(text)`` in bits per
    character (token). Constructor arguments: the ``model``, ``data`` (level, chunk_length, vocab_size, ...) and
    ``training`` keys of ``task: language_model``.
    """

    _task = "language_model"

    def fit(self, text_or_files: Any) -> LanguageModel:
        run_dir = self._run_dir()
        staging = staging_dir(run_dir)
        docs = [text_or_files] if isinstance(text_or_files, str | Path) else list(text_or_files)
        paths = []
        for i, d in enumerate(docs):
            if isinstance(d, Path) or (isinstance(d, str) and _names_a_file(d)):
                paths.append(str(Path(d).resolve()))
            else:
                staging.mkdir(parents=True, exist_ok=True)
                p = staging / f"doc{i:04d}.txt"
                p.write_text(str(d), encoding="utf-8")
                paths.append(str(p.resolve()))
        self._train(run_dir, {"source": "text", "files": paths})
        return self

    def generate(self, prime: str | None = None, length: int = 200, temperature: float = 1.0,
                 top_k: int | None = None, seed: int = 0) -> str:
        """``length`` tokens sampled after ``prime`` (the same seed gives the same text)."""
        self._fitted()
        return "".join(self.run_.task.sample(self.run_.model, prime, length, temperature, top_k, seed))

    def score(self, text: str) -> float:
        """Bits per token (character) of ``text`` under the model."""
        self._fitted()
        if not isinstance(text, str) or len(text) < 2:
            raise ValueError(f"score needs a text of at least 2 tokens (the first is read, not predicted), got "
                             f"{text!r:.60}")
        task = self.run_.task
        stream = task.encode_texts([text], ["text"])
        return float(task.evaluate(self.run_.model, stream, self.run_.device)["bpc"])


# ---------------------------------------------------------------------------------------------- seq2seq
class Seq2Seq(_Estimator):
    """An encoder-decoder with attention: ``fit(sources, targets)`` on lists of strings (a target may be a list
    of references), ``predict(sources)`` -> output strings (``beam_size``), ``score(sources, targets)`` -> 1 - word
    error rate. Constructor arguments: the ``model`` (cell, hidden_size, attention, beam_size, ...), ``data``
    (source_level, target_level, ...) and ``training`` keys of ``task: seq2seq``."""

    _task = "seq2seq"

    def fit(self, sources: Any, targets: Any, validation_data: tuple | None = None) -> Seq2Seq:
        sources, targets = list(map(str, sources)), list(targets)
        if len(sources) != len(targets):
            raise ValueError(f"{len(sources)} sources but {len(targets)} targets")
        run_dir = self._run_dir()
        staging = staging_dir(run_dir)
        data: dict[str, Any] = {"source": "jsonl", "path": _write_pairs(staging / "train.jsonl", sources, targets),
                                "source_column": "source", "target_column": "target"}
        if validation_data is not None:
            validation_data = _validation(validation_data, "(sources_val, targets_val)")
            data["val_path"] = _write_pairs(staging / "val.jsonl", list(map(str, validation_data[0])),
                                            list(validation_data[1]))
        self._train(run_dir, data)
        return self

    def predict(self, sources: Any) -> list[str]:
        """The best output per source (beam search with ``beam_size``)."""
        self._fitted()
        run = self.run_
        return [r["output"] for r in run.task.predict(run.model, run.task.as_input(list(map(str, sources)),
                                                                                     labels=False), run.device)
                if r.get("rank", 1) == 1]

    def score(self, sources: Any, targets: Any) -> float:
        """1 - word error rate: the share of outputs equal to one of their references."""
        from rnnkit.tasks.seq2seq import error_rates

        hyps = [h.split() if self.run_.task.tgt_vocab.level == "word" else list(h) for h in self.predict(sources)]
        refs = [[self.run_.task.tgt_vocab.split(r) for r in (t if isinstance(t, list | tuple) else [t])]
                for t in targets]
        return 1.0 - error_rates(hyps, refs)["wer"]


def _write_pairs(path: Path, sources: list[str], targets: list) -> str:
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for src, tgt in zip(sources, targets, strict=True):
            for ref in tgt if isinstance(tgt, list | tuple) else [tgt]:
                f.write(json.dumps({"source": src, "target": str(ref)}) + "\n")
    return str(path.resolve())


for _cls in (SequenceClassifier, TextClassifier, Forecaster, LanguageModel, Seq2Seq):
    _cls._sections, _cls._defaults = _section_defaults(_cls._task)
    if _cls is Forecaster:
        _cls._sections["test_fraction"] = "data"
        _cls._defaults = {**{k: v for k, v in _cls._defaults.items() if k not in _OWN}, "test_fraction": 0.2,
                          "out": None, "verbose": False}
    params = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=v) for n, v in _cls._defaults.items()]
    _cls.__init__ = (lambda c: (lambda self, **kw: _Estimator.__init__(self, **kw)))(_cls)
    _cls.__init__.__signature__ = inspect.Signature(
        [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD), *params])
    _cls.__init__.__doc__ = _cls.__doc__


def load(path: str | Path) -> _Estimator:
    """The estimator of any run folder (trained by an estimator, ``rnnkit train`` or ``rnnkit.train``), fitted,
    with its constructor arguments read from the run's config."""
    from rnnkit.api import Run

    run = Run.load(path)
    cls = {c._task: c for c in (SequenceClassifier, TextClassifier, Forecaster, LanguageModel, Seq2Seq)}.get(
        run.config.task)
    if cls is None:
        raise ValueError(f"{path} is a {run.config.task} run; rnnkit.load knows sequence_classification, "
                         "text_classification, forecasting, language_model and seq2seq runs (use rnnkit.Run.load)")
    cfg = run.config.to_dict()
    params = {name: cfg[section][name] for name, section in cls._sections.items() if name in cfg[section]}
    est = cls(**params)
    est.run_dir_, est.run_ = Path(path), run
    est.history_, est.metrics_ = run.history, run.metrics
    if cls is SequenceClassifier or cls is TextClassifier:
        stored = Path(path) / "data" / "classes.npy"
        est.classes_ = np.load(stored, allow_pickle=False) if stored.is_file() else np.array(run.task.classes)
    if cls is Forecaster:
        est.dated_ = bool(cfg["data"].get("date_col"))
    return est
