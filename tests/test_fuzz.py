"""Fuzzing the CLI in process (hypothesis, a fixed seed, bounded): configs, data files and argument lists end with
exit 0 or 2, at most one ``rnnkit: error:`` line, no traceback, and nothing written outside the run folder."""

from __future__ import annotations

import io
import os
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import yaml

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from rnnkit.build import fit  # noqa: E402
from rnnkit.cli import main  # noqa: E402

BASE = {"name": "fz", "model": {"cell": "gru", "hidden_size": 4},
        "data": {"source": "embedded", "limit": 40, "test_fraction": 0.2},
        "training": {"epochs": 1, "batch_size": 16, "num_threads": 1, "device": "cpu"}}
KEYS = {"model": ["cell", "hidden_size", "num_layers", "bidirectional", "dropout", "recurrent_dropout",
                  "activation", "layer_norm", "engine", "pooling", "reset_after", "hiden_size"],
        "data": ["source", "path", "limit", "val_fraction", "test_fraction", "standardize", "options", "name"],
        "training": ["lr", "epochs", "batch_size", "clip_norm", "patience", "monitor", "optimizer", "schedule",
                     "weight_decay", "num_threads", "seed", "device", "momentum"],
        "": ["name", "task", "callbacks", "extra"]}
VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.integers(-2**62, 2**62),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(["gru", "lstm", "rnn", "npz", "csv", "auto",
                                                                    "fused", "sgd", "val_loss", "cuda", "", "x" * 200]),
    st.text(max_size=8), st.lists(st.integers(-2, 2), max_size=3), st.dictionaries(st.text(max_size=4),
                                                                                   st.integers(), max_size=2))
CHANGES = st.lists(st.tuples(st.sampled_from(list(KEYS)), st.data()), min_size=1, max_size=3)
SETTINGS = settings(max_examples=int(os.environ.get("RNNKIT_FUZZ_EXAMPLES", "100")), deadline=None,
                    derandomize=True, database=None, suppress_health_check=list(HealthCheck))


def _cli(argv: list[str]) -> tuple[int, str]:
    err, out = io.StringIO(), io.StringIO()
    with redirect_stderr(err), redirect_stdout(out):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse: usage errors are exit 2 with one line
            code = e.code if isinstance(e.code, int) else 2
    return code, err.getvalue()


def _check(code: int, err: str) -> None:
    assert code in (0, 2), (code, err)
    assert "Traceback" not in err and "internal error" not in err, err
    assert err.count("rnnkit: error:") <= 1, err


def _listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if "runs" not in p.relative_to(root).parts}


@SETTINGS
@given(changes=CHANGES)
def test_fuzzed_configs_are_validated_or_trained(tmp_path_factory, changes):
    work = tmp_path_factory.mktemp("fz")
    cfg = {k: dict(v) if isinstance(v, dict) else v for k, v in BASE.items()}
    for section, data in changes:
        key = data.draw(st.sampled_from(KEYS[section]))
        value = data.draw(VALUES)
        if section:
            cfg[section][key] = value
        else:
            cfg[key] = value
    path = work / "c.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True))
    cwd = os.getcwd()
    os.chdir(work)
    try:
        before = _listing(work)
        code, err = _cli(["config", "show", str(path)])
        _check(code, err)
        if code == 0:  # a valid config: train it, bounded (one epoch, few sequences, small model)
            small = yaml.safe_load(path.read_text())
            small["training"].update({"epochs": 1, "num_threads": 1, "device": "cpu", "patience": None})
            small["model"]["hidden_size"] = min(int(small["model"].get("hidden_size") or 4), 8)
            small["model"]["num_layers"] = min(int(small["model"].get("num_layers") or 1), 2)
            small["data"]["limit"] = 40
            small["training"]["batch_size"] = min(int(small["training"].get("batch_size") or 16), 64)
            path.write_text(yaml.safe_dump(small))
            code, err = _cli(["train", str(path), "--quiet", "--out", str(work / "runs" / "r")])
            assert code in (0, 1, 2), (code, err)  # 1: a diverged run (a huge learning rate), said in one line
            assert "Traceback" not in err and "internal error" not in err, err
        assert _listing(work) <= before | {"c.yaml"}  # nothing outside the run folder
    finally:
        os.chdir(cwd)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("fzrun") / "run"
    fit(BASE, out, quiet=True)
    return out


FILES = st.one_of(
    st.binary(max_size=64).map(lambda b: ("x.npz", b)),
    st.binary(max_size=64).map(lambda b: ("x.csv", b)),
    st.text(max_size=80).map(lambda t: ("x.csv", t.encode("utf-8", "surrogatepass"))),
    st.tuples(st.integers(0, 3), st.integers(0, 9), st.integers(0, 10)).map(lambda s: ("x.npz", s)),
    st.sampled_from([("x.txt", b"hello"), ("x.json", b"{}"), ("x.npz", b""), ("x.csv", b"")]),
)


@SETTINGS
@given(spec=FILES)
def test_fuzzed_prediction_inputs(run_dir, tmp_path_factory, spec):
    name, content = spec
    path = tmp_path_factory.mktemp("in") / name
    if isinstance(content, tuple):  # a well-formed npz of some shape
        n, t, d = content
        np.savez(path, X=np.random.default_rng(0).normal(size=(n, t, d)).astype(np.float32))
    else:
        path.write_bytes(content)
    code, err = _cli(["predict", str(run_dir), str(path)])
    _check(code, err)


ARGS = st.lists(st.sampled_from(["train", "predict", "evaluate", "info", "forecast", "generate", "export", "doctor",
                                 "config", "show", "--steps", "-3", "0", "5", "--out", "--set", "model.x=1",
                                 "training.lr=nan", "--format", "onnx", "--checkpoint", "best", "RUN", "missing.yaml",
                                 "--text", "hi", "--length", "--temperature", "nan", "--from", "--resume",
                                 "--json", "--quiet", "--version", "--help", "\udcff"]), max_size=6)


@SETTINGS
@given(argv=ARGS)
def test_fuzzed_argument_lists(run_dir, argv):
    argv = [str(run_dir) if a == "RUN" else a for a in argv]
    if "train" in argv and "RUN" not in argv:  # never train into the shared run folder by accident
        argv = [a for a in argv if a != str(run_dir)]
    cwd = os.getcwd()
    os.chdir(run_dir.parent)
    try:
        code, err = _cli(argv)
    finally:
        os.chdir(cwd)
    assert code in (0, 1, 2), (code, err)
    assert "Traceback" not in err and "internal error" not in err, (argv, err)


# ---- every task's own keys, values of their own type, and the run used afterwards ------------------------------
TASK_BASES = {
    "forecasting": {"model": {"cell": "lstm", "hidden_size": 4},
                    "data": {"source": "embedded", "name": "sunspots", "lookback": 12, "horizon": 3}},
    "language_model": {"model": {"cell": "gru", "hidden_size": 8},
                       "data": {"source": "embedded", "level": "char", "steps_per_epoch": 3, "chunk_length": 16,
                                "limit": 4000}},
    "text_classification": {"model": {"cell": "gru", "hidden_size": 4},
                            "data": {"source": "csv", "path": "t.csv", "text_column": "review",
                                     "label_column": "score"}},
    "seq2seq": {"model": {"cell": "gru", "hidden_size": 8}, "data": {"source": "embedded", "limit": 60}},
    "sequence_classification": {"model": {"cell": "gru", "hidden_size": 4}, "data": {"source": "embedded",
                                                                                     "limit": 60}},
}
USE = {"forecasting": [["forecast", "RUN", "--steps", "4"]], "language_model": [["generate", "RUN", "--length", "8"]],
       "text_classification": [["predict", "RUN", "t.csv"]], "seq2seq": [["explain", "RUN", "cat"]],
       "sequence_classification": []}
NAMED = {"cell": ["rnn", "gru", "lstm", "indrnn", "mingru", "minlstm"], "pooling": ["last", "mean", "max", "meanmax"],
         "deseasonalize": ["difference", "additive", "multiplicative"], "transform": ["log", "boxcox"],
         "truncating": ["pre", "post", "chunk"], "loss": ["mae", "quantile", "gaussian"],
         "attention": ["none", "dot", "general", "bahdanau"], "schedule": ["cosine", "onecycle", "plateau"],
         "optimizer": ["adamw", "sgd"], "level": ["char", "word"], "strategy": ["direct", "recursive"]}
FIXED = {"device", "num_threads", "tensorboard", "path", "test_path", "val_path", "source", "name", "root", "files",
         "pretrained", "url", "epochs", "ensemble", "download", "values", "limit", "steps_per_epoch", "hidden_size",
         "embedding_dim", "eval_batch_size"}


def _plausible(name: str, default: object) -> list:
    """Values a user might set for a key with this default: its neighbours, its named choices, switches."""
    if name in NAMED:
        return NAMED[name]
    if isinstance(default, bool):
        return [not default]
    if isinstance(default, int):
        return [0, 1, 2, default + 1, max(default // 2, 1), -1]
    if isinstance(default, float):
        return [0.0, default / 2, default * 2 + 0.1, 0.999, -0.1]
    if default is None:
        return [1, 2, 0.5, True]
    if isinstance(default, list):
        return [[], default[:1]]
    return []


def _keys(task: str) -> dict[str, list[tuple[str, list]]]:
    import dataclasses

    from rnnkit.config import TrainingConfig
    from rnnkit.tasks import get_task

    cls = get_task(task)
    out = {}
    for section, dc in (("model", cls.model_config), ("data", cls.data_config), ("training", TrainingConfig)):
        rows = []
        for f in dataclasses.fields(dc):
            default = f.default if f.default is not dataclasses.MISSING else (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
            values = _plausible(f.name, default)
            if f.name not in FIXED and values:
                rows.append((f.name, values))
        out[section] = rows
    return out


@settings(SETTINGS, max_examples=int(os.environ.get("RNNKIT_FUZZ_TASK_EXAMPLES", "10")))
@given(task=st.sampled_from(list(TASK_BASES)), data=st.data())
def test_fuzzed_keys_of_every_task_then_the_run_is_used(tmp_path_factory, task, data):
    """A changed key either is refused in one line or trains a run that evaluate, export, diagnose, info, resume
    and the task's own verb then use without an internal error."""
    work = tmp_path_factory.mktemp("fzt")
    rows = "\n".join(f"{'good tasty' if i % 2 else 'bad stale'} food {i},{'great' if i % 2 else 'other'}"
                     for i in range(40))
    (work / "t.csv").write_text("review,score\n" + rows + "\n")
    cfg = {"name": "fzt", "task": task, **{k: dict(v) for k, v in TASK_BASES[task].items()},
           "training": {"epochs": 1, "num_threads": 1, "device": "cpu", "batch_size": 8}}
    keys = _keys(task)
    for _ in range(data.draw(st.integers(1, 3))):
        section = data.draw(st.sampled_from(list(keys)))
        name, values = data.draw(st.sampled_from(keys[section]))
        cfg[section][name] = data.draw(st.sampled_from(values))
    for k in ("min_steps", "max_steps"):
        if isinstance(cfg["training"].get(k), int) and cfg["training"][k] > 20:
            cfg["training"][k] = 20
    (work / "c.yaml").write_text(yaml.safe_dump(cfg))
    cwd = os.getcwd()
    os.chdir(work)
    try:
        code, err = _cli(["train", "c.yaml", "--quiet", "--out", "run"])
        assert code in (0, 1, 2), (cfg, err)
        assert "Traceback" not in err and "internal error" not in err, (cfg, err)
        if code:
            return
        for argv in [["evaluate", "RUN"], ["info", "RUN"], ["diagnose", "RUN", "--json"],
                     ["export", "RUN", "--output", "m.onnx"], ["train", "--resume", "RUN", "--quiet"], *USE[task]]:
            code, err = _cli(["run" if a == "RUN" else a for a in argv])
            assert code in (0, 2), (cfg, argv, err)
            assert "Traceback" not in err and "internal error" not in err, (cfg, argv, err)
    finally:
        os.chdir(cwd)
