"""task: seq2seq - the pairs readers (CMUdict fixture), metrics by hand, attention masks, beam = greedy at 1,
exact resume, the CLI (predict --text --beam --n-best, explain)."""

from __future__ import annotations

import json

import pytest
import torch

from rnnkit.build import fit, load_config
from rnnkit.cli import main
from rnnkit.config import ConfigError
from rnnkit.data import DataError
from rnnkit.data.pairs import Pairs, cmudict_part, read_cmudict, read_table
from rnnkit.tasks.seq2seq import Seq2SeqTask, beam_search, edit_distance, error_rates, greedy, pad

TINY = {"name": "g2p", "task": "seq2seq",
        "model": {"cell": "gru", "hidden_size": 24, "embedding_dim": 16, "bidirectional": True},
        "data": {"source": "embedded", "name": "g2p"},
        "training": {"epochs": 2, "batch_size": 64, "lr": 0.005, "num_threads": 1, "device": "cpu"}}


def test_cmudict_reader_folds_variants_strips_comments_keeps_stress(tmp_path):
    (tmp_path / "cmudict.dict").write_text(
        "# a comment line\nread R IY1 D\nread(2) R EH1 D # past tense\nzyzzyva Z IH0 Z IY1 V AH0\n\nread(3) R IY1 D\n")
    d = read_cmudict(tmp_path)
    assert d == {"read": ["R IY1 D", "R EH1 D"], "zyzzyva": ["Z IH0 Z IY1 V AH0"]}
    # crc32 % 20: "abk" 0, "owl" 1, "read" 7 (the shared data's README split)
    assert [cmudict_part(w) for w in ("abk", "owl", "read")] == ["test", "val", "train"]


def test_pairs_from_a_table_fold_repeated_sources(tmp_path):
    (tmp_path / "p.tsv").write_text("src\ttgt\nhello\tbonjour\nhello\tsalut\ncat\tchat\n")
    p = read_table(tmp_path / "p.tsv", "src", "tgt")
    assert p.sources == ["hello", "cat"] and p.references == [["bonjour", "salut"], ["chat"]]
    assert Pairs.from_rows([("a", "x"), ("a", "x")]).references == [["x"]]


def test_error_rates_by_hand():
    assert edit_distance(list("kitten"), list("sitting")) == 3
    hyps = [["K", "AE1", "T"], ["D", "AO1", "G"]]
    refs = [[["K", "AE1", "T"]], [["D", "AA1", "G", "Z"], ["D", "AO1", "G", "Z"]]]
    r = error_rates(hyps, refs)
    assert r["wer"] == 0.5  # the second is none of its references
    assert r["ter"] == pytest.approx((0 + 1) / (3 + 4))  # closest reference of the second: 1 edit, length 4


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("s2s") / "run"
    fit(TINY, out, quiet=True)
    return out


def _model_and_task(run):
    import rnnkit

    r = rnnkit.Run.load(run)
    return r.model, r.task


def test_attention_ignores_padding_and_beam_one_is_greedy(run):
    model, task = _model_and_task(run)
    srcs = [task.src_vocab.encode(w) for w in ("cat", "photographers")]
    batch = pad(srcs)
    lengths = torch.tensor([len(s) for s in srcs])
    enc = model.encode(batch, lengths)
    _, _, w = model.step(torch.full((2,), 2), enc)
    assert torch.all(w[0, 3:] == 0) and torch.allclose(w.sum(-1), torch.ones(2))
    seqs, scores, _ = greedy(model, batch, lengths, 30)
    alone, _, _ = greedy(model, pad(srcs[:1]), lengths[:1], 30)
    assert seqs[0] == alone[0]  # padding does not change the short item's output
    beams = beam_search(model, batch, lengths, 30, beam=1)
    assert [b[0][0] for b in beams] == seqs
    assert beams[0][0][1] == pytest.approx(scores[0], abs=1e-4)
    five = beam_search(model, batch, lengths, 30, beam=5, n_best=3)
    assert all(len(b) == 3 and len({tuple(ids) for ids, _ in b}) == 3 for b in five)  # three different outputs


def test_attention_rows_match_labels_when_decoding_hits_the_length_cap(run, monkeypatch):
    """A decoding cut by the length cap has no </s> step: the labels must still match the weights' rows, and the
    report's heat map must draw (it crashed on an under-trained model before)."""
    pytest.importorskip("matplotlib")
    from rnnkit.tasks.seq2seq import attention_figure

    model, task = _model_and_task(run)
    for cap in (1, 30):
        monkeypatch.setattr(task, "_max_len", lambda n, cap=cap: cap)
        for item in task.attention(model, ["photographers", "cat"], torch.device("cpu")):
            assert len(item["output"]) == item["weights"].shape[0] <= cap
            assert cap == 1 or item["output"][-1] == "</s>"  # uncut, the last row is the </s> step
            attention_figure(item)


def test_metrics_and_resume_are_exact(run, tmp_path):
    m = json.loads((run / "metrics.json").read_text())
    assert {"loss", "wer", "ter", "count"} <= set(m["test"]) and 0 <= m["test"]["wer"] <= 1
    cut, _ = fit({**TINY, "training": {**TINY["training"], "epochs": 1}}, tmp_path / "cut", quiet=True)
    _, resumed = fit(None, resume=cut, overrides=["training.epochs=2"], quiet=True)
    assert resumed["test"] == m["test"]


def test_cli_predict_beam_n_best_and_explain(run, tmp_path, capsys):
    assert main(["predict", str(run), "--text", "zyzzyva", "--text", "cat", "--beam", "4", "--n-best", "2",
                 "--output", str(tmp_path / "p.json")]) == 0
    recs = json.loads((tmp_path / "p.json").read_text())
    assert [r["rank"] for r in recs] == [1, 2, 1, 2] and recs[0]["source"] == "zyzzyva"
    assert recs[0]["log_prob"] >= recs[1]["log_prob"]
    assert main(["explain", str(run), "--text", "cat", "--output", str(tmp_path / "a.json")]) == 0
    att = json.loads((tmp_path / "a.json").read_text())
    assert att[0]["source"] == ["c", "a", "t"] and len(att[0]["weights"][0]) == 3
    assert main(["predict", str(run), "--text", "cat", "--beam", "2", "--n-best", "3"]) == 2
    assert "--n-best 3 cannot exceed the beam (2)" in capsys.readouterr().err


def test_config_checks():
    with pytest.raises(ConfigError, match="model.n_best"):
        load_config({**TINY, "model": {**TINY["model"], "n_best": 3}})
    with pytest.raises(ConfigError, match="beam_size: 1000000 is too wide"):  # it decoded for hours
        load_config({**TINY, "model": {**TINY["model"], "beam_size": 10**6}})
    with pytest.raises(ConfigError, match=r"max_length_ratio must be in \(0, 100\]"):  # an endless output ran for ever
        load_config({**TINY, "model": {**TINY["model"], "max_length_ratio": 1e6}})
    with pytest.raises(ConfigError, match=r"length_penalty must be in \[0, 5\]"):  # length ** 1e6 overflowed
        load_config({**TINY, "model": {**TINY["model"], "length_penalty": 1e6}})
    with pytest.raises(ConfigError, match="data.limit must be > 0"):  # limit: 0 left no training part (KeyError)
        load_config({**TINY, "data": {**TINY["data"], "limit": 0}})
    with pytest.raises(ConfigError, match="dot needs equal"):  # a bidirectional encoder is twice as wide
        load_config({**TINY, "model": {**TINY["model"], "attention": "dot"}})
    with pytest.raises(DataError, match="data.min_freq 1000000 leaves no source token"):  # all <unk>: it trained
        Seq2SeqTask(load_config({**TINY, "data": {**TINY["data"], "min_freq": 10**6}})).setup()
    task = Seq2SeqTask(load_config({**TINY, "model": {**TINY["model"], "attention": "dot", "bidirectional": False}}))
    task.setup()
    assert task.build_model().attn.kind == "dot"


@pytest.mark.parametrize("attention,cell", [("bahdanau", "gru"), ("general", "lstm"), ("dot", "gru"),
                                            ("none", "lstm")])
def test_teacher_forcing_in_one_call_equals_step_by_step(attention, cell):
    """Without input feeding the decoder runs over all target positions at once; the log-probabilities and the
    gradients are those of stepping it one token at a time (padding in both source and target included)."""
    model_cfg = {**TINY["model"], "cell": cell, "attention": attention, "input_feeding": False, "num_layers": 2,
                 "bidirectional": attention != "dot"}
    task = Seq2SeqTask(load_config({**TINY, "model": model_cfg}))
    task.setup()
    torch.manual_seed(0)
    model = task.build_model().eval()
    batch = task.make_batch(task.splits["train"], torch.arange(6))
    assert int((batch["tgt_out"] == 0).sum()) > 0 and int(batch["lengths"].min()) < batch["src"].shape[1]
    outs, grads = [], []
    for path in ("parallel", "steps"):
        model.zero_grad()
        enc = model.encode(batch["src"], batch["lengths"])
        logp = model.forward_parallel(enc, batch["tgt_in"]) if path == "parallel" else \
            model.forward_steps(enc, batch["tgt_in"])
        logp.gather(-1, batch["tgt_out"][..., None]).sum().backward()
        outs.append(logp.detach())
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert torch.allclose(outs[0], outs[1], atol=1e-5)
    assert torch.allclose(grads[0], grads[1], atol=1e-4) and float(grads[0].abs().sum()) > 0
    assert torch.equal(model(batch["src"], batch["lengths"], batch["tgt_in"]), outs[0])  # forward takes it


def test_the_estimator(tmp_path):
    import rnnkit

    words = ["cat", "cats", "bat", "bats", "hat", "hats", "mat", "mats"] * 8
    phones = [" ".join(w.upper()) for w in words]  # a toy "pronunciation": the letters
    est = rnnkit.Seq2Seq(cell="gru", hidden_size=16, embedding_dim=8, epochs=15, lr=0.02, batch_size=16,
                         num_threads=1, device="cpu", val_fraction=0.0, monitor="train_loss", out=str(tmp_path / "est"))
    est.fit(words, phones)
    assert est.predict(["cat"])[0] in {"C A T", "C A T S", "B A T", "H A T", "M A T"}
    assert 0.0 <= est.score(words[:8], phones[:8]) <= 1.0
    again = rnnkit.load(tmp_path / "est")
    assert isinstance(again, rnnkit.Seq2Seq) and again.predict(["cat"]) == est.predict(["cat"])


def test_error_rates_are_minimised_by_the_best_checkpoint_and_tune():
    from rnnkit.training.engine import better, lower_is_better
    from rnnkit.tune import lower_is_better as tune_rule

    for m in ("val_wer", "val_ter", "val_loss", "val_mse", "val_bpc", "val_mase"):
        assert lower_is_better(m) and tune_rule(m), m
    for m in ("val_accuracy", "val_macro_f1", "val_roc_auc", "val_coverage"):
        assert not lower_is_better(m) and not tune_rule(m), m
    assert better(0.3, 0.4, "val_wer") and not better(0.5, 0.4, "val_wer")


def test_an_ensemble_of_copies_decodes_as_its_member_and_a_trained_one_reloads(run, tmp_path):
    import copy

    from rnnkit.tasks.seq2seq import DecoderEnsemble

    model, task = _model_and_task(run)
    twins = task.ensemble([model, copy.deepcopy(model)]).eval()
    assert isinstance(twins, DecoderEnsemble) and twins.attn is not None
    srcs = [task.src_vocab.encode(w) for w in ("cat", "photographers", "zyzzyva")]
    batch, lengths = pad(srcs), torch.tensor([len(s) for s in srcs])
    one, s1, w1 = greedy(model, batch, lengths, 30, want_attention=True)
    two, s2, w2 = greedy(twins, batch, lengths, 30, want_attention=True)
    assert one == two and s1 == pytest.approx(s2, abs=1e-5) and torch.allclose(w1[0], w2[0], atol=1e-6)
    b1, b2 = (beam_search(m, batch, lengths, 30, beam=4, n_best=2) for m in (model, twins))
    assert [[ids for ids, _ in b] for b in b1] == [[ids for ids, _ in b] for b in b2]  # beams reorder both members

    ens, m = fit({**TINY, "training": {**TINY["training"], "ensemble": 2}}, tmp_path / "ens", quiet=True)
    assert m["ensemble"] == 2 and len(m["members"]) == 2 and "wer" in m["spread"]
    losses = [mm["test"]["loss"] for mm in m["members"]]
    assert min(losses) < max(losses)  # two different members (seeds 0 and 1)
    assert m["test"]["loss"] <= sum(losses) / 2 + 1e-6  # -log of the mean probability <= the mean of -log p
    assert all(abs(m["test"]["loss"] - x) > 1e-6 for x in losses)  # the combination, not one member passed on
    assert main(["predict", str(ens), "--text", "cat", "--beam", "3", "--output", str(tmp_path / "e.json")]) == 0
    assert json.loads((tmp_path / "e.json").read_text())[0]["output"]
    assert main(["explain", str(ens), "--text", "cat", "--output", str(tmp_path / "a.json")]) == 0
    weights = json.loads((tmp_path / "a.json").read_text())[0]["weights"]  # the members' mean attention
    assert len(weights[0]) == 3 and all(abs(sum(row) - 1) < 1e-3 for row in weights)  # rounded to 4 places


def test_explain_takes_any_text_and_draws_a_long_one_cut(run, tmp_path, capsys):
    """A lone surrogate (undecodable argv bytes) and a 3 000-character source: one page each, no internal error.
    The first crashed matplotlib's text layout; a long source decodes to the length cap (6 010 steps here), and
    the whole map of a 5 000-character one failed to allocate."""
    pytest.importorskip("matplotlib")
    from rnnkit.tasks.seq2seq import attention_figure

    for text in ("ca\udcfft", "a" * 3000):
        out = tmp_path / "a.html"
        assert main(["explain", str(run), "--text", text, "--output", str(out)]) == 0
        assert "<img" in out.read_text()
    model, task = _model_and_task(run)
    item = task.attention(model, ["a" * 300], torch.device("cpu"))[0]
    fig = attention_figure(item, most=20)
    assert fig.get_size_inches()[0] < 10 and "the first 20 of 300 tokens" in fig.axes[0].get_xlabel()
