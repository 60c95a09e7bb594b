"""Config loading and validation: every mistake is a one-line ConfigError naming the key and the fix."""

from __future__ import annotations

import pytest

from rnnkit.build import load_config
from rnnkit.config import Config, ConfigError, apply_override


def write(tmp_path, text: str):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_defaults_and_task_specific_model_section(tmp_path):
    cfg = load_config(write(tmp_path, "name: x\nmodel: {cell: gru, pooling: mean}\n"))
    assert cfg.model.cell == "gru" and cfg.model.pooling == "mean"  # pooling comes from the task's ModelConfig
    assert cfg.training.optimizer == "adam" and cfg.training.lr == 1e-3
    assert isinstance(load_config({}), Config)


@pytest.mark.parametrize("text, message", [
    ("model: {hiden_size: 3}", "unknown key 'model.hiden_size' (did you mean 'hidden_size'?)"),
    ("trainig: {}", "unknown key 'trainig' (did you mean 'training'?)"),
    ("model: {hidden_size: ten}", "model.hidden_size must be an integer, got 'ten'"),
    ("model: {hidden_size: 0}", "model.hidden_size must be > 0"),
    ("model: {bidirectional: 1}", "model.bidirectional must be true or false"),
    ("model: {cell: lstn}",
     "model.cell: 'lstn' is not one of gru, indrnn, lstm, mingru, minlstm, rnn (did you mean 'lstm'?)"),
    ("model: {dropout: 1.5}", "model.dropout must be in [0, 1)"),
    ("training: {optimizer: adamx}", "did you mean 'adam"),
    ("training: {monitor: val_acuracy}", "did you mean 'val_accuracy'?"),
    ("task: sequence_clasification", "did you mean 'sequence_classification'?"),
    ("data: {source: npz}", "data.path is required for source: npz"),
    ("data: {source: npz, path: /nonexistent/x.npz}", "data.path: file not found: /nonexistent/x.npz"),
    ("data: {val_fraction: 0.0}", "set data.val_fraction > 0 or training.monitor: train_loss"),
    ("callbacks: {nope: {}}", "unknown callback 'nope'"),
    ("model: [1, 2]", "model must be a mapping"),
    ("model: {cell: lstm\n", "is not valid YAML"),
    ("name: a/b", "name: 'a/b' must be a non-empty folder name"),
    ("training: {seed: -1}", "training.seed must be a whole number in [0, 2**32)"),  # numpy's generators refuse it
    ("training: {split_seed: 5000000000}", "training.split_seed must be a whole number in [0, 2**32)"),
    ("training: {ensemble: 99999999999}", "members is far too many"),
    ("training: {lr: 1.0e+300}", "training.lr: 1e+300 is far too large (at most 1000"),  # overflowed float32
    ("training: {weight_decay: 1.0e+300}", "training.weight_decay: 1e+300 is far too large"),  # in the optimiser
    ("training: {min_lr: 5000}", "training.min_lr: 5000 is far too large"),
    ("task: forecasting\nmodel: {pooling: max}",  # --set task=forecasting on a classifier's config
     "model.pooling is a key of task sequence_classification, text_classification, not of forecasting; remove it"),
    ("task: language_model\ndata: {horizon: 3}", "data.horizon is a key of task forecasting, not of language_model"),
])
def test_mistakes_are_one_line_config_errors(tmp_path, text, message):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text))
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "none.yaml")


def test_overrides_are_yaml_parsed(tmp_path):
    cfg = load_config(write(tmp_path, "training: {lr: 0.1}\n"),
                      ["training.lr=2e-3", "model.bidirectional=true", "training.clip_norm=null", "name=abc"])
    assert cfg.training.lr == 0.002 and cfg.model.bidirectional is True and cfg.training.clip_norm is None
    assert cfg.name == "abc"
    with pytest.raises(ConfigError, match="expects key.sub=value"):
        load_config({}, ["training.lr"])
    with pytest.raises(ConfigError, match="did you mean 'lr'"):
        load_config({}, ["training.lrr=1"])
    raw = {"model": 3}
    with pytest.raises(ConfigError, match="'model' is not a section"):
        apply_override(raw, "model.cell.x=1")


def test_env_vars_expand_in_paths(tmp_path, monkeypatch):
    (tmp_path / "d.npz").write_bytes(b"")
    monkeypatch.setenv("MYDATA", str(tmp_path))
    cfg = load_config({"data": {"source": "npz", "path": "${MYDATA}/d.npz"}})
    assert cfg.data.path == f"{tmp_path}/d.npz"
    monkeypatch.delenv("MYDATA")
    with pytest.raises(ConfigError, match="environment variable MYDATA is not set"):
        load_config({"data": {"source": "npz", "path": "${MYDATA}/d.npz"}})


def test_yaml_round_trip(tmp_path):
    cfg = load_config({"name": "r", "model": {"cell": "rnn", "activation": "relu"}, "training": {"epochs": 2}})
    again = load_config(write(tmp_path, cfg.to_yaml()))
    assert again == cfg
