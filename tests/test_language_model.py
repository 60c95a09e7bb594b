"""task: language_model - truncated BPTT with carried state, bits per character, sampling, rnnkit generate."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import rnnkit
from rnnkit.api import generate
from rnnkit.build import fit, load_config
from rnnkit.cli import main
from rnnkit.config import ConfigError
from rnnkit.errors import UsageError
from rnnkit.tasks.language_model import LanguageModel, LMModelConfig, RecurrentLM

TINY = {
    "name": "lm",
    "task": "language_model",
    "model": {"cell": "lstm", "hidden_size": 48, "embedding_dim": 16},
    "data": {"source": "embedded", "limit": 20000, "chunk_length": 32, "steps_per_epoch": 20, "val_fraction": 0.1,
             "test_fraction": 0.1},
    "training": {"epochs": 3, "batch_size": 16, "lr": 0.02, "num_threads": 1, "device": "cpu"},
}


def tiny(**sections) -> dict:
    return {k: {**v, **sections.get(k, {})} if isinstance(v, dict) else sections.get(k, v) for k, v in TINY.items()}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lm") / "run"
    fit(tiny(), out, quiet=True)
    return out


def test_learns_below_unigram_and_writes_bpc(run_dir):
    m = json.loads((run_dir / "metrics.json").read_text())
    test = m["test"]
    assert test["bpc"] < test["unigram_bpc"] - 0.5  # it learned more than character frequencies
    assert test["perplexity"] == pytest.approx(2 ** test["bpc"])
    assert test["loss"] == pytest.approx(test["bpc"] * math.log(2))
    assert test["count"] == 1999  # the last 10 % of 20000 characters, all but the first predicted
    header = (run_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train_bpc", "val_bpc", "val_perplexity"} <= set(header)
    page = (run_dir / "report.html").read_text()
    assert "Bits per character" in page and "temperature 0.5" in page and "Samples" in page


def test_dynamic_evaluation_scores_before_it_learns_and_adapts_to_new_text(run_dir, capsys):
    from rnnkit.data.corpus import TokenStream

    run = rnnkit.Run.load(run_dir)
    task, model = run.task, run.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = task.state()
    task.setup()  # the run's data, with its vocabulary
    task.load_state(state)
    test = task.splits["test"]
    static = task.evaluate(model, test, run.device)
    assert task.dynamic_evaluate(model, test, run.device, 1e-9)["loss"] == pytest.approx(static["loss"], rel=1e-6)
    one = TokenStream.from_arrays([test.ids[:20]], ["short"])  # one chunk: scored before the only update
    assert (task.dynamic_evaluate(model, one, run.device, 5.0)["loss"]
            == pytest.approx(task.evaluate(model, one, run.device)["loss"], rel=1e-6))
    ids = task.vocab.encode("zebra quartz jinx " * 120)  # a text unlike the training novel, repeated
    odd = TokenStream.from_arrays([ids], ["odd"])
    dyn = task.dynamic_evaluate(model, odd, run.device, 0.5)
    assert dyn["bpc"] < task.evaluate(model, odd, run.device)["bpc"] - 0.5 and dyn["lr"] == 0.5  # it learnt it
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the run's model is untouched
    assert main(["evaluate", str(run_dir), "--split", "val", "--dynamic-lr", "0.05", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["lr"] == 0.05
    assert main(["evaluate", str(run_dir), "--dynamic-lr", "-1"]) == 2


def test_dynamic_evaluation_in_the_run_is_reported_beside_the_static_score(tmp_path):
    _, m = fit(tiny(data={"dynamic_lr": 0.05}, training={"epochs": 1}), tmp_path / "dyn", quiet=True)
    for split in ("val", "test"):
        assert m[split]["dynamic"]["lr"] == 0.05 and m[split]["dynamic"]["count"] == m[split]["count"]
        assert math.isfinite(m[split]["dynamic"]["bpc"]) and m[split]["dynamic"]["bpc"] != m[split]["bpc"]


def test_reset_zeroes_the_state_exactly_where_a_document_starts():
    torch.manual_seed(0)
    for cell in ("lstm", "gru"):
        model = RecurrentLM(LMModelConfig(cell=cell, hidden_size=8, embedding_dim=4), 11).eval()
        ids = torch.randint(0, 11, (3, 10))
        state = model(torch.randint(0, 11, (3, 5)))[1]  # some non-zero carried state
        resets = torch.zeros(3, 10, dtype=torch.bool)
        resets[1, 6] = True
        logits, _ = model(ids, state, resets)
        fresh, _ = model(ids[1:2, 6:])  # stream 1 from step 6 on, from a zero state
        torch.testing.assert_close(logits[1:2, 6:], fresh)
        carried, _ = model(ids, state)
        torch.testing.assert_close(logits[[0, 2]], carried[[0, 2]])  # the other streams are untouched
        assert not torch.allclose(logits[1, 6:], carried[1, 6:])


def test_state_is_carried_across_chunks_and_detached():
    cfg = load_config(tiny())
    task = LanguageModel(cfg)
    task.setup()
    model = task.build_model()
    batches = task.train_batches(0, 0, 0, 1)
    first, second = next(batches), next(batches)
    assert first.resets[:, 0].all() and not second.resets[:, 0].any()
    assert torch.equal(second.x[:, 0], first.y[:, -1])  # chunk 2 continues where chunk 1 stopped
    task.step(model, first, torch.device("cpu"))
    h, c = task.carry
    assert h.shape == (1, 16, 48) and not h.requires_grad and h.abs().sum() > 0
    res = task.step(model, second, torch.device("cpu"))
    res.loss_sum.backward()  # only this chunk's graph: the carry was detached
    assert res.count == int(second.mask.sum())


def test_batches_are_a_pure_function_of_epoch_and_position():
    task = LanguageModel(load_config(tiny(data={"steps_per_epoch": 40})))
    task.setup()
    per_pass = task._chunks_per_pass()
    assert per_pass < 40  # the epoch crosses into a second pass with a new offset
    all_ = list(task.train_batches(1, 0, 0, 1))
    tail = list(task.train_batches(1, 25, 0, 1))
    for a, b in zip(all_[25:], tail, strict=True):
        assert torch.equal(a.x, b.x) and torch.equal(a.resets, b.resets)
    j = -40 % per_pass  # epoch 1 starts at chunk 40: chunk 40 + j opens a pass
    assert all_[j].resets[:, 0].all()
    halves = [list(task.train_batches(0, 0, r, 2)) for r in (0, 1)]
    assert torch.equal(torch.cat([halves[0][3].x, halves[1][3].x]).sort(0).values,
                       list(task.train_batches(0, 0, 0, 1))[3].x.sort(0).values)


def test_mid_epoch_resume_restores_the_carried_state_exactly(tmp_path, monkeypatch):
    cfg = tiny(data={"steps_per_epoch": 5}, training={"checkpoint_every_steps": 3, "epochs": 3})
    full, _ = fit(cfg, tmp_path / "full", quiet=True)
    calls = {"n": 0}
    real_step = LanguageModel.step

    def flaky(self, *args):
        calls["n"] += 1
        if calls["n"] == 9:  # last checkpoint: global step 6 = epoch 2, one chunk in
            raise KeyboardInterrupt
        return real_step(self, *args)

    monkeypatch.setattr(LanguageModel, "step", flaky)
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, tmp_path / "cut", quiet=True)
    monkeypatch.setattr(LanguageModel, "step", real_step)
    last = tmp_path / "cut" / "checkpoints" / "last"
    meta = json.loads((last / "state.json").read_text())
    assert (meta["epoch"], meta["step_in_epoch"]) == (1, 1)
    carry = load_file(last / "state.safetensors")
    assert carry["carry.state0"].abs().sum() > 0 and "carry.state1" in carry  # LSTM: h and c
    fit(None, resume=tmp_path / "cut", quiet=True)
    for name in ("model.safetensors", "optimizer.safetensors"):
        assert (last / name).read_bytes() == (full / "checkpoints" / "last" / name).read_bytes()


def test_sampling_is_seeded_streamed_and_respects_top_k(run_dir):
    run = rnnkit.Run.load(run_dir)
    a = generate(run, "It is a truth", 60, temperature=1.0, seed=5)
    assert len(a) == 60 and a == generate(run, "It is a truth", 60, seed=5)
    assert a != generate(run, "It is a truth", 60, seed=6)
    greedy = generate(run, "Mr. Bennet", 40, temperature=0)
    assert greedy == generate(run, "Mr. Bennet", 40, top_k=1, seed=9)
    pieces = list(run.task.sample(run.model, "The", 5, seed=0))
    assert len(pieces) == 5 and "".join(pieces) == generate(run, "The", 5, seed=0)
    # torch's int64 overflowed: an internal error
    with pytest.raises(UsageError, match=r"seed must be a whole number in \[0, 2\*\*63\)"):
        next(run.task.sample(run.model, "The", 5, seed=2**64))
    assert "\ufffd" not in generate(run, None, 300, temperature=2.0, seed=1)  # the unknown token is never drawn


def test_generate_command(run_dir, capsys):
    args = ["generate", str(run_dir), "--prime", "Elizabeth", "--length", "40", "--seed", "3"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("Elizabeth") and len(out) == len("Elizabeth") + 40 + 1
    assert main(args) == 0 and capsys.readouterr().out == out
    assert main(["generate", str(run_dir), "--temperature", "nan"]) == 2
    assert "--temperature must be a finite number >= 0, got nan" in capsys.readouterr().err
    assert main(["evaluate", str(run_dir), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["bpc"] > 0


def test_word_level_uses_the_same_engine(tmp_path):
    _, m = fit(tiny(data={"level": "word", "vocab_size": 300, "chunk_length": 12}), tmp_path / "w", quiet=True)
    run = rnnkit.Run.load(tmp_path / "w")
    assert run.task.vocab.level == "word" and len(run.task.vocab) == 300
    assert m["test"]["bpc"] < m["test"]["unigram_bpc"]
    text = generate(run, "She", 30, seed=0)
    assert len(text.split()) >= 15  # words, joined by spaces


@pytest.mark.parametrize(("change", "message"), [
    ({"model": {"bidirectional": True}}, "reads left to right"),
    ({"data": {"source": "text"}}, "data.path is required"),
    ({"data": {"chunk_length": 0}}, "chunk_length must be > 0"),
    ({"data": {"level": "byte"}}, "not one of char, word"),
    ({"data": {"dynamic_lr": -0.1}}, "dynamic_lr must be"),
])
def test_config_mistakes_are_one_line_errors(change, message):
    with pytest.raises(ConfigError, match=message):
        load_config(tiny(**change))


def test_user_errors_exit_2_and_leave_no_run_folder(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    import yaml

    cfg.write_text(yaml.safe_dump(tiny(data={"limit": 500}, training={"batch_size": 64})))
    assert main(["train", str(cfg), "--out", str(tmp_path / "r"), "--quiet"]) == 2
    assert "too few for training.batch_size 64" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.skipif(not (Path(os.environ.get("RNNKIT_DATA", "/work/shared/datasets")) / "austen").is_dir(),
                    reason="needs $RNNKIT_DATA/austen")
def test_austen_config_trains_on_five_novels_and_tests_on_persuasion(monkeypatch):
    monkeypatch.setenv("RNNKIT_DATA", os.environ.get("RNNKIT_DATA", "/work/shared/datasets"))
    task = LanguageModel(load_config(Path(__file__).parent.parent / "examples" / "austen.yaml"))
    task.setup()
    assert task.splits["test"].names == ("persuasion.txt",) and len(task.splits["train"].names) == 5
    assert "persuasion.txt" not in task.splits["train"].names and task.splits["val"].names == task.splits["train"].names
    assert task.counts.sum() == len(task.splits["train"])


def test_diagnose_traces_a_language_model(run_dir, capsys):
    """``rnnkit diagnose`` on a language model: its batches are chunks of the text (it was an internal error, and
    the report's gradient section said 'not computed')."""
    assert main(["diagnose", str(run_dir), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    k = tiny()["data"]["chunk_length"]
    assert report["layers"] and all(len(layer["norms"]) == k for layer in report["layers"])
    final = json.loads((run_dir / "diagnostics" / "final.json").read_text())  # the report's section, at training
    assert [layer["norms"] for layer in final["layers"]] == [layer["norms"] for layer in report["layers"]]


def test_texts_with_nothing_to_predict(run_dir, tmp_path, capsys):
    """A blank or one-token file is a one-line error (a blank one was an IndexError); beside other documents, a
    one-token document gets no score rather than a perfect 0 bits."""
    from rnnkit.data.corpus import TokenStream

    assert len(TokenStream.from_arrays([], [])) == 0
    for content in (" ", "x"):
        (tmp_path / "t.txt").write_text(content)
        for argv in (["predict", str(run_dir), str(tmp_path / "t.txt")],
                     ["evaluate", str(run_dir), "--data", str(tmp_path / "t.txt")]):
            assert main(argv) == 2
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and "none to predict" in err
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("x")
    (tmp_path / "docs" / "b.txt").write_text("It is a truth universally acknowledged.")
    records = rnnkit.Run.load(run_dir).predict(str(tmp_path / "docs"))
    assert records[0]["tokens"] == 0 and records[0]["bpc"] is None and records[1]["bpc"] > 0
