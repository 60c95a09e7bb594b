"""Text classification: tokenizer, vocabulary, truncation, bucketing, sources, model, metrics, task, CLI, explain."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnkit.build import load_config
from rnnkit.cli import main
from rnnkit.config import ConfigError
from rnnkit.data import DataError
from rnnkit.data import text as T
from rnnkit.explain import explain_texts, integrated_gradients
from rnnkit.tasks.text_classification import TextClassifier, TextModelConfig, roc_auc, text_metrics


# ---- tokenizer, vocabulary, truncation -----------------------------------------------------------------
def test_tokenizer_word_and_char() -> None:
    text = "I <b>LOVED</b> it!<br /><br />Don't &amp; won't... 10/10"
    assert T.clean(text) == "I LOVED it! Don't & won't... 10/10"
    assert T.Tokenizer()(text) == ["i", "loved", "it", "!", "don't", "&", "won't", ".", ".", ".", "10", "/", "10"]
    assert T.Tokenizer(punctuation="drop", lower=False)(text) == ["I", "LOVED", "it", "Don't", "won't", "10", "10"]
    assert T.Tokenizer(level="char")("Ab <br/> c") == ["a", "b", " ", "c"]
    assert T.Tokenizer()("") == [] and T.Tokenizer()("<br />") == []
    with pytest.raises(DataError):
        T.Tokenizer(level="bpe")


def test_vocabulary_cap_min_freq_and_json() -> None:
    docs = [["b", "a", "a"], ["c", "a", "b"], ["d"]]
    v = T.Vocabulary.build(docs)
    assert v.itos == ["<pad>", "<oov>", "a", "b", "c", "d"]  # by count, ties alphabetical
    assert T.Vocabulary.build(docs, num_words=4).itos == ["<pad>", "<oov>", "a", "b"]  # specials count
    assert T.Vocabulary.build(docs, min_freq=2).itos == ["<pad>", "<oov>", "a", "b"]
    capped = T.Vocabulary.build(docs, num_words=3)
    assert capped.encode(["a", "zzz", "b"]) == [2, 1, 1]
    back = T.Vocabulary.from_dict(json.loads(json.dumps(v.to_dict())))
    assert back.encode(["d", "a", "?"]) == v.encode(["d", "a", "?"]) == [5, 2, 1]
    assert back.decode([2, 0, 99]) == ["a", "<pad>", "<oov>"]


def test_truncate_pre_and_post() -> None:
    assert T.truncate([1, 2, 3, 4], 2, "pre") == [3, 4]
    assert T.truncate([1, 2, 3, 4], 2, "post") == [1, 2]
    assert T.truncate([1, 2], 5) == [1, 2] and T.truncate([1, 2], None) == [1, 2]


def test_corpus_batch_pads_only_to_the_batch_maximum() -> None:
    c = T.Corpus.from_ids([[5, 6, 7], [], [8, 9, 10, 11, 12]], [0, 1, 0], max_length=4, truncating="post")
    assert c.lengths.tolist() == [3, 1, 4]  # the empty text is one <oov>; the long one is cut
    x, lengths = c.batch(torch.tensor([0, 1]))
    assert x.tolist() == [[5, 6, 7], [1, 0, 0]] and lengths.tolist() == [3, 1]
    x, _ = c.batch(torch.tensor([2]), pad_to=6)
    assert x.tolist() == [[8, 9, 10, 11, 0, 0]]
    assert c.subset([2, 0]).ids(0) == [8, 9, 10, 11] and c.subset([2, 0]).y.tolist() == [0, 0]


def test_bucket_batches() -> None:
    g = torch.Generator().manual_seed(3)
    lengths = torch.randint(1, 400, (1003,), generator=g)
    b = T.bucket_batches(lengths, 32, seed=1, epoch=0, bucket=10)
    flat = torch.cat(b)
    assert sorted(flat.tolist()) == list(range(1003)) and len(b) == -(-1003 // 32)
    assert [t.tolist() for t in b] == [t.tolist() for t in T.bucket_batches(lengths, 32, seed=1, epoch=0, bucket=10)]
    assert [t.tolist() for t in b] != [t.tolist() for t in T.bucket_batches(lengths, 32, seed=1, epoch=1, bucket=10)]

    def padding(batches: list[torch.Tensor]) -> int:
        return sum(int(lengths[i].max()) * len(i) - int(lengths[i].sum()) for i in batches)

    from rnnkit.tasks.base import batch_indices

    assert padding(b) < padding(batch_indices(1003, 32, 1, 0)) / 5
    shards = [T.bucket_batches(lengths, 32, 1, 0, 10, rank=r, world=2) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == len(b)
    assert sorted(torch.cat(shards[0] + shards[1]).tolist()) == list(range(1003))


# ---- sources -------------------------------------------------------------------------------------------
def test_tables_folder_and_lines(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text('body,y\n"Nice, really",pos\nbad,neg\n')
    (tmp_path / "a.tsv").write_text("text\tlabel\nnice\t1\nbad\t0\n")
    (tmp_path / "a.jsonl").write_text('{"text": "nice", "label": "pos"}\n\n{"text": "bad", "label": "neg"}\n')
    t = T.load_table(tmp_path / "a.csv", "body", "y")
    assert t.texts == ["Nice, really", "bad"] and t.labels == ["pos", "neg"]
    assert T.load_table(tmp_path / "a.tsv").labels == ["1", "0"]
    assert T.load_table(tmp_path / "a.jsonl").texts == ["nice", "bad"]
    with pytest.raises(DataError, match="no column 'review'"):
        T.load_table(tmp_path / "a.csv", "review", "y")
    (tmp_path / "bad.csv").write_bytes(b"text,label\n\xff\xfe,1\n")
    with pytest.raises(DataError, match="UTF-8"):
        T.load_table(tmp_path / "bad.csv")
    for c, txt in (("neg", "dull"), ("pos", "fun")):
        (tmp_path / "f" / c).mkdir(parents=True)
        (tmp_path / "f" / c / "1.txt").write_text(txt)
    f = T.load_folder(tmp_path / "f")
    assert f.texts == ["dull", "fun"] and f.labels == ["neg", "pos"]
    (tmp_path / "lines.txt").write_bytes(b"ok\n\xc3\x28 broken\n")
    with pytest.raises(DataError, match="line 2 is not valid UTF-8"):
        T.read_lines(tmp_path / "lines.txt")


def test_glove(tmp_path: Path) -> None:
    v = T.Vocabulary.build([["good", "film"]])
    (tmp_path / "g.txt").write_text("good 1 2 3\nunrelated 4 5 6\nfilm 7 8 9\n")
    w, found = T.load_glove(tmp_path / "g.txt", v, 3)
    assert found == 2 and w[v.stoi["good"]].tolist() == [1, 2, 3] and w[0].abs().sum() == 0
    with pytest.raises(DataError, match="embedding_dim"):
        T.load_glove(tmp_path / "g.txt", v, 4)


# ---- model and metrics ---------------------------------------------------------------------------------
@pytest.mark.parametrize("pooling", ["last", "mean", "max", "attention"])
@pytest.mark.parametrize(("cell", "bidirectional", "packed"), [("lstm", True, True), ("gru", True, True),
                                                              ("lstm", False, True), ("gru", False, False)])
def test_padding_does_not_change_the_output(pooling: str, cell: str, bidirectional: bool, packed: bool) -> None:
    torch.manual_seed(0)
    m = TextModelConfig(cell=cell, hidden_size=6, embedding_dim=5, num_layers=2, bidirectional=bidirectional,
                        pooling=pooling, packed=packed)
    model = TextClassifier(m, 20, 3).eval()
    seqs = [[3, 4, 5, 6, 7], [8, 9], [10, 11, 12]]
    c = T.Corpus.from_ids(seqs)
    x, lengths = c.batch(torch.arange(3))
    batched = model(x, lengths)
    alone = torch.cat([model(torch.tensor([s]), None) for s in seqs])
    assert batched.shape == (3, 3)
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=1e-5)


def test_roc_auc_matches_pairs_and_metrics() -> None:
    rng = np.random.default_rng(0)
    score, pos = np.round(rng.random(60), 1), rng.random(60) < 0.4  # rounding makes ties
    pairs = [(1.0 if a > b else 0.5 if a == b else 0.0) for a, b in itertools.product(score[pos], score[~pos])]
    assert roc_auc(score, pos) == pytest.approx(np.mean(pairs))
    assert np.isnan(roc_auc(score, np.zeros(60, bool)))
    m = text_metrics(np.array([0, 1, 1, 0]), np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]]))
    assert m["accuracy"] == 0.5 and m["f1"] == pytest.approx(0.5) and m["roc_auc"] == 0.75
    assert m["confusion_matrix"] == [[1, 1], [1, 1]]


def test_config_errors(tmp_path: Path) -> None:
    base = {"task": "text_classification", "data": {"source": "csv", "path": str(tmp_path / "none.csv")}}
    with pytest.raises(ConfigError, match="file not found"):
        load_config(base)
    with pytest.raises(ConfigError, match="not one of"):
        load_config({**base, "model": {"pooling": "sum"}})
    with pytest.raises(ConfigError, match="imdb-npz is indexed by word"):
        load_config({"task": "text_classification", "data": {"source": "imdb-npz", "level": "char"}})
    with pytest.raises(ConfigError, match="not both"):
        load_config({"task": "text_classification", "data": {"source": "imdb"},
                     "model": {"class_weights": [1, 2], "balance_classes": True}})


# ---- the task, end to end ------------------------------------------------------------------------------
GOOD, BAD = ["great", "lovely", "tasty", "fresh"], ["awful", "stale", "bland", "broken"]


def make_csv(path: Path, n: int, seed: int) -> Path:
    """Reviews whose label is set by which word list they draw from, padded with neutral filler."""
    rng = np.random.default_rng(seed)
    rows = ["review,score"]
    for _ in range(n):
        good = rng.random() < 0.6
        words = list(rng.choice(["the", "a", "box", "it", "was", "and"], rng.integers(2, 30)))
        words.insert(int(rng.integers(0, len(words))), str(rng.choice(GOOD if good else BAD)))
        rows.append(f"\"{' '.join(words)}<br />!\",{'yes' if good else 'no'}")
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import rnnkit

    d = tmp_path_factory.mktemp("text")
    cfg = {"name": "tiny-text", "task": "text_classification",
           "model": {"cell": "gru", "hidden_size": 16, "embedding_dim": 16, "pooling": "max", "balance_classes": True},
           "data": {"source": "csv", "path": str(make_csv(d / "train.csv", 300, 0)),
                    "test_path": str(make_csv(d / "test.csv", 60, 1)), "text_column": "review",
                    "label_column": "score", "positive_label": "yes", "max_length": 20, "val_fraction": 0.1},
           "training": {"epochs": 4, "lr": 0.01, "batch_size": 16, "monitor": "val_accuracy", "seed": 0,
                        "num_threads": 1}}
    run = rnnkit.train(cfg, out=d / "run")
    return run.path


def test_a_min_freq_that_leaves_no_word_is_a_data_error(tmp_path: Path) -> None:
    """data.min_freq: 10**6 trained a model that read every text as <oov> and scored the majority class."""
    import rnnkit

    cfg = {"task": "text_classification", "data": {"source": "csv", "path": str(make_csv(tmp_path / "t.csv", 60, 0)),
           "text_column": "review", "label_column": "score", "min_freq": 10**6}}
    with pytest.raises(DataError, match="data.min_freq 1000000 leaves no token in the vocabulary"):
        rnnkit.train(cfg, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_task_learns_and_saves_its_vocabulary(run_dir: Path) -> None:
    import rnnkit

    run = rnnkit.Run.load(run_dir)
    assert run.metrics["test"]["accuracy"] > 0.9 and run.metrics["test"]["roc_auc"] > 0.9
    assert run.task.classes == ["no", "yes"] and run.task.weights[0] > run.task.weights[1]  # balanced: 40/60
    saved = json.loads((run_dir / "tokenizer.json").read_text())
    assert saved["itos"][:2] == ["<pad>", "<oov>"] and "tasty" in saved["itos"] and "<br" not in saved["itos"]
    recs = run.predict(["so tasty", "", "awful " * 500, "caf\udcff stale"])
    assert [r["predicted"] for r in recs[:1]] == ["yes"] and recs[2]["predicted"] == "no"
    assert recs[1]["tokens"] == 0 and recs[2]["tokens"] == 500 and recs[2]["truncated"] is True
    assert all(abs(r["p_no"] + r["p_yes"] - 1) < 1e-5 and r["probability"] >= 0.5 for r in recs)
    html = (run_dir / "report.html").read_text()
    assert "Explanations" in html and "Confusion matrix" in html


def test_integrated_gradients(run_dir: Path) -> None:
    import rnnkit

    run = rnnkit.Run.load(run_dir)
    ids = torch.tensor(run.task.vocab.encode(run.task.tokenizer("the box was awful and the")))
    ig, target, p, delta = integrated_gradients(run.model, ids, steps=200)
    assert run.task.classes[target] == "no" and p > 0.5
    assert abs(delta) < 0.02 * max(float(ig.abs().sum()), 1.0)  # completeness
    assert int(ig.argmax()) == 3  # "awful" carries the decision
    (e,) = explain_texts(run, ["the box was awful and the"], steps=50)
    assert e.tokens == ["the", "box", "was", "awful", "and", "the"] and e.predicted == "no"
    with pytest.raises(ConfigError, match=r"integration steps must be in \[1, 10000\], got 0"):
        explain_texts(run, ["the box"], steps=0)


def test_cli_predict_and_explain(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["predict", str(run_dir), "--text", "lovely and fresh", "--text", ""]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("index,predicted,probability") and lines[1].startswith("0,yes,")
    (tmp_path / "in.txt").write_text("lovely\nbland box\n")
    assert main(["predict", str(run_dir), str(tmp_path / "in.txt"), "--output", str(tmp_path / "p.json")]) == 0
    assert [r["predicted"] for r in json.loads((tmp_path / "p.json").read_text())] == ["yes", "no"]
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe nope\n")
    assert main(["predict", str(run_dir), str(tmp_path / "bad.txt")]) == 2
    assert "not valid UTF-8" in capsys.readouterr().err
    assert main(["predict", str(run_dir)]) == 2
    out = tmp_path / "e.html"
    assert main(["explain", str(run_dir), "--text", "a <b>stale</b> box", "--output", str(out), "--steps", "8"]) == 0
    page = out.read_text()
    assert "<b>stale</b>" not in page and ">stale</span>" in page and "predicted <b>no</b>" in page
    assert main(["explain", str(run_dir), "--text", "x", "--output", str(tmp_path / "e.png")]) == 2


def _bench_script(name: str):
    """The module bench/<name>.py (skips where bench/ is absent: it is not shipped with the package)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "bench" / f"{name}.py"
    if not path.is_file():
        pytest.skip("bench/ is not shipped with the package")
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_blend_refits_the_baseline_on_the_runs_split(run_dir: Path) -> None:
    """bench/text_blend.py: at w = 0 it scores the run's own test accuracy, at w = 1 the run's TF-IDF baseline."""
    pytest.importorskip("sklearn")
    acc = _bench_script("text_blend").blend_accuracy(str(run_dir))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert acc["test"].shape == acc["val"].shape == (11,)
    assert acc["test"][0] == pytest.approx(100 * metrics["test"]["accuracy"])
    assert acc["test"][-1] == pytest.approx(100 * metrics["baselines"]["tfidf_logistic_regression"]["accuracy"])


def test_bench_long_texts_groups_same_label_reviews_in_file_order() -> None:
    """bench/long_texts.py: documents of k consecutive reviews of one label, leftovers dropped, no review twice."""
    mod = _bench_script("long_texts")
    labels = ["great", "other", "great", "great", "other", "other", "great", "great", "other"]
    rows = [{"product": f"p{i}", "review": f"r{i}", "score": s} for i, s in enumerate(labels)]
    docs = mod.long_documents(rows, 2)
    assert [d["product"] for d in docs] == ["p0+p2", "p1+p4", "p3+p6", "p5+p8"]  # by first review
    assert [d["score"] for d in docs] == ["great", "other", "great", "other"]
    assert docs[0]["review"] == "r0\n\nr2"  # p7 (a fifth great) has no partner and is dropped
