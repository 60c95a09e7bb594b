"""Recipes for small data, long inputs and seasonal series: per-sequence normalisation, mean+max pooling, EMA,
ensembles, chunking, the n-gram bag, target transforms and deseasonalising (through resume)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rnnkit.build import fit, load_config
from rnnkit.config import ConfigError
from rnnkit.tasks.sequence_classification import per_sequence


def test_per_sequence_normalisation_over_valid_steps_only():
    X = np.array([[[1.0, 5.0], [3.0, 5.0], [99.0, 99.0]], [[10.0, 0.0], [20.0, 1.0], [30.0, 2.0]]])
    Z = per_sequence(X, np.array([2, 3]))
    np.testing.assert_allclose(Z[0, :2, 0], [-1.0, 1.0])
    np.testing.assert_allclose(Z[0, :2, 1], [0.0, 0.0])  # a constant feature becomes 0
    assert Z[0, 2].tolist() == [0.0, 0.0]  # padding stays 0
    np.testing.assert_allclose(Z[1].mean(0), 0.0, atol=1e-6)
    np.testing.assert_allclose(Z[1].std(0), 1.0, atol=1e-6)


def test_scaled_and_shifted_series_look_alike_to_the_model(tmp_path):
    rng = np.random.default_rng(0)
    t = np.linspace(0, 6, 60)
    y = rng.integers(0, 2, 120)
    shape = np.where(y[:, None] == 1, np.sin(t), np.sign(np.sin(t)))  # the class is the shape
    X = shape * rng.uniform(0.1, 100, (120, 1)) + rng.uniform(-500, 500, (120, 1))  # scale/offset are noise
    np.savez(tmp_path / "d.npz", X=X[:, :, None].astype(np.float32), y=y)
    cfg = {"name": "s", "task": "sequence_classification", "model": {"cell": "gru", "hidden_size": 16},
           "data": {"source": "npz", "path": str(tmp_path / "d.npz"), "normalize": "per_sequence",
                    "val_fraction": 0.2, "test_fraction": 0.2},
           "training": {"epochs": 30, "lr": 0.01, "batch_size": 16, "num_threads": 1, "device": "cpu",
                        "baselines": False}}
    _, m = fit(cfg, tmp_path / "run", quiet=True)
    assert m["test"]["accuracy"] >= 0.9
    with pytest.raises(ConfigError, match="data.normalize does not apply to forecasting"):
        load_config({"task": "forecasting", "data": {"source": "array", "values": [1.0] * 50,
                                                     "normalize": "per_sequence"}})


@pytest.mark.parametrize("task", ["sequence_classification", "text_classification"])
def test_meanmax_pooling_concatenates_mean_and_max(task):
    from rnnkit.tasks import get_task

    if task == "sequence_classification":
        from rnnkit.tasks.sequence_classification import ClassifierModelConfig, SequenceClassifier

        net = SequenceClassifier(ClassifierModelConfig(cell="gru", hidden_size=4, pooling="meanmax"), 3, 2, False)
        x, lengths = torch.randn(2, 5, 3), torch.tensor([5, 2])
        assert net.head.in_features == 8
        out, _ = net.rnn(x, lengths=lengths)
        want_mean = torch.stack([out[0].mean(0), out[1, :2].mean(0)])
        want_max = torch.stack([out[0].amax(0), out[1, :2].amax(0)])
        torch.testing.assert_close(net(x, lengths), net.head(torch.cat([want_mean, want_max], -1)))
    else:
        assert get_task(task).model_config(pooling="meanmax").pooling == "meanmax"


def _adding(**training) -> dict:
    return {"name": "ema", "task": "adding", "model": {"cell": "gru", "hidden_size": 8},
            "data": {"num_steps": 10, "train_size": 64, "val_size": 16, "test_size": 16},
            "training": {"epochs": 4, "batch_size": 16, "lr": 0.01, "num_threads": 1, "device": "cpu", **training}}


def test_ema_weights_are_what_is_evaluated_saved_and_resumed_exactly(tmp_path):
    from safetensors.torch import load_file

    full, m_full = fit(_adding(ema=0.9), tmp_path / "full", quiet=True)
    cut, _ = fit(_adding(ema=0.9, epochs=2), tmp_path / "cut", quiet=True)
    _, m_res = fit(None, resume=cut, overrides=["training.epochs=4"], quiet=True)
    a = load_file(full / "checkpoints" / "last" / "model.safetensors")
    b = load_file(cut / "checkpoints" / "last" / "model.safetensors")
    trained = load_file(full / "checkpoints" / "last" / "training.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)  # resumed: the same average, bit for bit
    assert any(not torch.equal(a[k], trained[k]) for k in a)  # the average is not the last weights
    assert m_full["test"]["mse"] == m_res["test"]["mse"]
    plain, m_plain = fit(_adding(), tmp_path / "plain", quiet=True)
    assert not (plain / "checkpoints" / "last" / "training.safetensors").exists()
    assert m_plain["test"]["mse"] != m_full["test"]["mse"]
    with pytest.raises(ConfigError, match="training.ema is the decay"):
        load_config(_adding(ema=1.5))


DIGITS = {"name": "ens", "task": "sequence_classification", "model": {"cell": "gru", "hidden_size": 8},
          "data": {"source": "embedded", "name": "digits", "test_fraction": 0.2, "val_fraction": 0.1, "limit": 600},
          "training": {"epochs": 2, "batch_size": 64, "lr": 0.01, "num_threads": 1, "device": "cpu", "ensemble": 3,
                       "baselines": False}}


def test_an_ensemble_averages_its_members_and_resumes(tmp_path):
    import json

    import rnnkit
    from rnnkit.build import member_config

    run, m = fit(DIGITS, tmp_path / "ens", quiet=True)
    accs = [x["test"]["accuracy"] for x in m["members"]]
    assert m["ensemble"] == 3 and len(set(accs)) > 1  # different seeds, different members
    assert m["spread"]["accuracy"]["min"] == min(accs) and m["spread"]["accuracy"]["max"] == max(accs)
    cfgs = [member_config(load_config(DIGITS), k) for k in range(3)]
    assert [c.training.seed for c in cfgs] == [0, 1, 2] and {c.training.split_seed for c in cfgs} == {0}
    counts = {json.loads((run / "members" / str(k) / "metrics.json").read_text())["test"]["count"] for k in range(3)}
    assert counts == {m["test"]["count"]}  # the same test split for every member
    # the ensemble's probabilities are the mean of the members'
    r = rnnkit.Run.load(run)
    x = r.task.splits["test"].X[:5] if r.task.splits else None
    if x is None:
        r.task.setup()
        x = r.task.splits["test"].X[:5]
    with torch.no_grad():
        p = torch.stack([mem(x).softmax(-1) for mem in r.model.members]).mean(0)
        torch.testing.assert_close(r.model(x).exp(), p)
    assert "Ensemble of 3 members" in (run / "report.html").read_text()
    # an interruption after member 0: members 1 and 2 are trained again from their last checkpoints
    (run / "metrics.json").unlink()
    for k in (1, 2):
        (run / "members" / str(k) / "metrics.json").unlink()
    _, again = fit(None, resume=run, quiet=True)
    assert again["test"] == m["test"]


def test_ensembles_refused_where_they_do_not_combine():
    from rnnkit.build import fit as build_fit

    bad = {"name": "x", "task": "adding", "data": {"num_steps": 5, "train_size": 20, "val_size": 5, "test_size": 5},
           "training": {"ensemble": 2, "device": "cpu"}}
    with pytest.raises(ConfigError, match="training.ensemble does not apply to task: adding"):
        build_fit(bad, None, quiet=True)


def test_chunked_long_texts_keep_what_truncation_drops(tmp_path):
    from rnnkit.data.text import chunks

    assert chunks(list(range(10)), 4) == [[0, 1, 2, 3], [4, 5, 6, 7], [6, 7, 8, 9]]
    assert chunks([1, 2], 4) == [[1, 2]]
    rng = np.random.default_rng(0)
    filler = [f"w{i}" for i in range(20)]
    rows = ["text,label"]
    for i in range(160):  # the class word is among the first 3 of 40 words: pre-truncation to 10 drops it
        label = "pos" if i % 2 else "neg"
        words = [("good" if label == "pos" else "bad")] + list(rng.choice(filler, 39))
        rows.append(f"{' '.join(words)},{label}")
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    results = {}
    for mode in ("pre", "chunk"):
        cfg = {"name": mode, "task": "text_classification",
               "model": {"cell": "gru", "hidden_size": 16, "embedding_dim": 16, "pooling": "meanmax"},
               "data": {"source": "csv", "path": str(tmp_path / "d.csv"), "max_length": 10, "truncating": mode,
                        "test_fraction": 0.25, "val_fraction": 0.1},
               "training": {"epochs": 8, "lr": 0.01, "batch_size": 16, "num_threads": 1, "device": "cpu",
                            "baselines": False}}
        _, m = fit(cfg, tmp_path / mode, quiet=True)
        results[mode] = m["test"]
    assert results["pre"]["count"] == results["chunk"]["count"] == 40  # documents, not windows
    assert results["chunk"]["accuracy"] >= 0.9 and results["pre"]["accuracy"] <= 0.75


def test_ngram_bag_reads_a_text_as_tfidf_of_its_distinct_ngrams():
    from rnnkit.tasks.text_classification import NgramBag

    bag = NgramBag(10, 1, 2, 16)
    ids, lengths = torch.tensor([[2, 3, 2, 3, 0], [4, 4, 4, 7, 7]]), torch.tensor([4, 3])
    row, f = bag.features(ids, lengths)
    hashed = lambda a, b: 10 + (a * 10 + b) * NgramBag.MULT % 16  # noqa: E731
    assert row.tolist() == [0, 0, 0, 0, 1, 1]  # (2,3) twice counts once; text 1's 7s are padding
    assert f.tolist() == sorted([2, 3, hashed(2, 3), hashed(3, 2)]) + sorted([4, hashed(4, 4)])
    sk = pytest.importorskip("sklearn.feature_extraction.text")
    texts = ["a b c a", "b b d", "c d e e e", "a e"]
    vocab = {w: i + 2 for i, w in enumerate("abcde")}
    seqs = [[vocab[w] for w in t.split()] for t in texts]
    n = torch.tensor([len(s) for s in seqs])
    x = torch.zeros(4, int(n.max()), dtype=torch.int64)
    for i, s in enumerate(seqs):
        x[i, : len(s)] = torch.tensor(s)
    uni = NgramBag(7, 3, 1, 0)
    uni.fit_idf([(x, n)])
    torch.nn.init.normal_(uni.weight)
    tfidf = sk.TfidfVectorizer(binary=True, vocabulary={w: i for i, w in enumerate("abcde")},
                               token_pattern=r"\S+")
    want = torch.tensor(tfidf.fit_transform(texts).toarray(), dtype=torch.float32) @ uni.weight.detach()[2:7]
    torch.testing.assert_close(uni(x, n).detach(), want + uni.bias.detach())


def test_the_prefit_bag_is_scikit_learns_logistic_regression_on_its_features():
    """NgramBag.fit_logistic minimises the same objective as LogisticRegression(C=10) on the bag's TF-IDF rows."""
    from rnnkit.tasks.text_classification import NgramBag

    lm = pytest.importorskip("sklearn.linear_model")
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.integers(2, 12, (60, 9)))
    n = torch.from_numpy(rng.integers(3, 10, 60))
    y = ((x[:, :3] == 4).any(1) | (x[:, :3] == 5).any(1)).long()  # a word-presence label, not separable by all
    bag = NgramBag(12, 1, 2, 32)
    bag.fit_idf([(x, n)])
    bag.fit_logistic([(x, n)], y, c=10.0)
    row, f = bag.features(x, n)
    w = bag.idf[f]
    norm = torch.zeros(60).index_add_(0, row, w * w).sqrt()
    X = torch.zeros(60, 12 + 32).index_put_((row, f), w / norm[row]).numpy()
    ref = lm.LogisticRegression(C=10.0, tol=1e-10, max_iter=10000).fit(X, y.numpy())
    np.testing.assert_allclose(bag.weight.detach().numpy()[:, 0], ref.coef_[0], atol=2e-3)
    np.testing.assert_allclose(bag.bias.detach().numpy(), ref.intercept_, atol=2e-3)
    with pytest.raises(ConfigError, match="ngrams_prefit"):
        load_config({**_wide("x.csv"), "model": {"ngrams_prefit": True}})


def _bigram_csv(path) -> str:
    rng = np.random.default_rng(0)
    rows = ["text,label"]
    for i in range(200):  # the label is whether "not" comes right before "good": a bigram
        words = list(rng.choice(["good", "film", "plot", "was", "the", "not"], 12))
        neg = i % 2 == 0
        k = int(rng.integers(0, 11))
        words[k : k + 2] = ["not", "good"] if neg else ["very", "good"]
        words = [w if j in (k, k + 1) or w != "not" else "a" for j, w in enumerate(words)]
        rows.append(f"{' '.join(words)},{'neg' if neg else 'pos'}")
    path.write_text("\n".join(rows) + "\n")
    return str(path)


def _wide(path: str, **training) -> dict:
    return {"name": "wide", "task": "text_classification",
            "model": {"cell": "gru", "hidden_size": 4, "embedding_dim": 4, "ngrams": 2, "ngram_buckets": 512},
            "data": {"source": "csv", "path": path, "test_fraction": 0.25, "val_fraction": 0.1},
            "training": {"epochs": 6, "lr": 0.02, "batch_size": 16, "num_threads": 1, "device": "cpu",
                         "baselines": False, **training}}


def test_a_wide_and_deep_text_model_learns_bigrams_and_reloads_its_idf(tmp_path):
    import rnnkit

    cfg = _wide(_bigram_csv(tmp_path / "d.csv"))
    run_dir, m = fit(cfg, tmp_path / "run", quiet=True)
    assert m["test"]["accuracy"] >= 0.95
    run = rnnkit.Run.load(run_dir)
    assert not torch.equal(run.model.bag.idf, torch.ones_like(run.model.bag.idf))  # fitted, and saved
    texts = ["the film was not good", "the plot was very good"]
    predicted = run.predict(texts)
    assert [p["predicted"] for p in predicted] == ["neg", "pos"]
    from rnnkit.explain import explain_texts

    for e, p in zip(explain_texts(run, texts, steps=4), predicted, strict=True):  # the whole model's decision
        assert e.predicted == p["predicted"] and e.probability == pytest.approx(p["probability"], abs=1e-4)
    with pytest.raises(ConfigError, match="model.ngrams must be in 0..4"):
        load_config({**cfg, "model": {**cfg["model"], "ngrams": 7}})


def test_a_prefit_bag_starts_training_where_the_logistic_regression_ends(tmp_path, monkeypatch):
    """model.ngrams_prefit: with a learning rate too small to learn anything in one epoch, only the prefit model
    knows the bigram rule; the bag's fitted weights are saved, so a reloaded run predicts the same."""
    import rnnkit

    data = _bigram_csv(tmp_path / "d.csv")
    results = {}
    for prefit in (False, True):
        cfg = _wide(data, epochs=1, lr=1e-7)
        cfg["model"]["ngrams_prefit"] = prefit
        results[prefit] = fit(cfg, tmp_path / f"run{prefit}", quiet=True)
    assert results[True][1]["test"]["accuracy"] >= 0.95 and results[False][1]["test"]["accuracy"] <= 0.75
    run = rnnkit.Run.load(results[True][0])
    assert run.model.bag.weight.abs().max() > 0.5
    texts = ["the film was not good", "the plot was very good"]
    assert [p["predicted"] for p in run.predict(texts)] == ["neg", "pos"]
    # resumed for a second epoch, the run does not fit the bag again and ends where two epochs straight end
    cfg = _wide(data, epochs=2, lr=0.01)
    cfg["model"]["ngrams_prefit"] = True
    _, straight = fit(cfg, tmp_path / "straight", quiet=True)
    first, _ = fit(cfg, tmp_path / "resumed", overrides=["training.epochs=1"], quiet=True)
    from rnnkit.tasks.text_classification import NgramBag

    def refit(*args, **kwargs):
        raise AssertionError("a resumed run fitted its bag again")

    monkeypatch.setattr(NgramBag, "fit_logistic", refit)
    _, resumed = fit(None, resume=first, overrides=["training.epochs=2"], quiet=True)
    assert resumed["test"] == straight["test"] and resumed["epochs"] == 2


def test_pretrained_vectors_start_a_fresh_run_and_a_resume_does_not_read_them_again(tmp_path, monkeypatch):
    import rnnkit
    import rnnkit.data.text as text

    vectors = tmp_path / "vectors.txt"
    vectors.write_text("good 1 2 3 4\nnot -1 -2 -3 -4\n")
    cfg = _wide(_bigram_csv(tmp_path / "d.csv"), epochs=1)
    cfg["model"].update(pretrained=str(vectors), freeze_embeddings=True, ngrams_prefit=True)
    run_dir, _ = fit(cfg, tmp_path / "run", quiet=True)
    run = rnnkit.Run.load(run_dir)
    emb = run.model.embedding.weight.detach()
    torch.testing.assert_close(emb[run.task.vocab.stoi["good"]], torch.tensor([1.0, 2.0, 3.0, 4.0]))
    torch.testing.assert_close(emb[run.task.vocab.stoi["not"]], torch.tensor([-1.0, -2.0, -3.0, -4.0]))

    def again(*args, **kwargs):
        raise AssertionError("a resumed run read its pretrained vectors again")

    monkeypatch.setattr(text, "load_glove", again)
    _, resumed = fit(None, resume=run_dir, overrides=["training.epochs=2"], quiet=True)
    assert resumed["epochs"] == 2


@pytest.mark.parametrize("target", ["log", "boxcox"])
def test_target_transforms_invert_and_are_fitted_on_the_training_part_only(target):
    from rnnkit.data.series import Scaler, boxcox_lambda

    rng = np.random.default_rng(0)
    train = np.exp(rng.normal(2.0, 0.5, (200, 2)))
    sc = Scaler("standard", target=target).fit(train)
    v = np.exp(rng.normal(3.0, 0.8, (50, 2)))  # other data, also outside the training range
    np.testing.assert_allclose(sc.inverse(sc.transform(v)[:, 0]), v[:, 0], rtol=1e-9)
    z = sc.transform(train)[:, 0]
    assert abs(z.mean()) < 1e-9 and abs(z.std() - 1.0) < 1e-9  # scaled after the transform, on train
    if target == "boxcox":
        assert sc.lam == boxcox_lambda(train[:, 0]) and abs(sc.lam) < 0.5  # log-normal data: λ near 0
        grid = np.linspace(-2, 2, 401)
        logy = np.log(train[:, 0])

        def llf(lam):
            t = logy if abs(lam) < 1e-8 else (train[:, 0] ** lam - 1) / lam
            return -0.5 * len(t) * np.log(t.var()) + (lam - 1) * logy.sum()
        assert abs(sc.lam - grid[np.argmax([llf(g) for g in grid])]) <= 0.011  # the maximum-likelihood λ
    back = Scaler.from_state(json.loads(json.dumps(sc.state())))
    np.testing.assert_allclose(back.transform(v), sc.transform(v))


def _seasonal(**data) -> dict:
    t = np.arange(180)
    y = (20 + 0.2 * t) * (1 + 0.3 * np.sin(2 * np.pi * t / 12)) * np.exp(np.random.default_rng(1).normal(0, .02, 180))
    d = {"source": "array", "values": y.tolist(), "lookback": 24, "horizon": 6, "season": 12, "val_fraction": 0.15,
         "test_fraction": 0.2, "transform": "boxcox", "deseasonalize": "difference"} | data
    return {"name": "tr", "task": "forecasting", "model": {"cell": "gru", "hidden_size": 8, "loss": "quantile",
                                                           "quantiles": [0.1, 0.5, 0.9]},
            "data": d, "training": {"epochs": 6, "lr": 0.01, "batch_size": 16, "num_threads": 1, "device": "cpu",
                                    "seed": 0, "baselines": False}}


def test_transformed_deseasonalised_forecasts_resume_exactly_with_intervals_on_the_original_scale(tmp_path):
    import rnnkit
    from rnnkit.training import checkpoint as ckpt

    whole, m_whole = fit(_seasonal(), tmp_path / "whole", quiet=True)
    cut, _ = fit(_seasonal() | {"training": _seasonal()["training"] | {"epochs": 3}}, tmp_path / "cut", quiet=True)
    cut, m_cut = fit(None, resume=cut, overrides=["training.epochs=6"], quiet=True)
    last = [ckpt.read_checkpoint(r / "checkpoints" / "last") for r in (whole, cut)]
    assert last[0]["model.safetensors"] == last[1]["model.safetensors"]  # bit-exact through the resume
    assert json.loads(last[0]["state.json"])["task"] == json.loads(last[1]["state.json"])["task"]  # λ, scaler
    assert m_whole["test"] == m_cut["test"]
    from rnnkit.tasks.forecasting import forecast

    run = rnnkit.Run.load(whole)
    assert run.task.scaler.target == "boxcox" and run.task.scaler.lam != 1.0
    rows = forecast(run, 6)
    lo, mid, hi = (np.array([r[k] for r in rows]) for k in ("lower_80", "forecast", "upper_80"))
    assert len(rows) == 6 and np.all(lo <= mid) and np.all(mid <= hi)
    assert 40 < mid.mean() < 100  # the series' own scale (it ends near 56 ± 30 %), not the transformed one


def test_a_text_ensemble_reports_and_explains_through_its_members(tmp_path, capsys):
    from rnnkit.cli import main

    run_dir, m = fit(_wide(_bigram_csv(tmp_path / "d.csv"), ensemble=2, epochs=2), tmp_path / "ens", quiet=True)
    assert m["ensemble"] == 2 and "explain a member" in (run_dir / "report.html").read_text()
    assert main(["explain", str(run_dir), "--text", "not good"]) == 2
    err = capsys.readouterr().err
    assert "members/0" in err and len(err.strip().splitlines()) == 1  # one line, no traceback
    out = tmp_path / "member.json"
    assert main(["explain", str(run_dir / "members" / "0"), "--text", "not good", "--output", str(out)]) in (0, None)
    assert json.loads(out.read_text())


def test_a_seasonal_profile_is_fitted_on_the_training_part_and_inverted_by_phase():
    from rnnkit.data.series import Scaler, seasonal_profile

    m, t = 12, np.arange(240)
    season = 1 + 0.3 * np.sin(2 * np.pi * t / m)
    y = (50 + 0.5 * t) * season  # multiplicative: the swing grows with the level
    train = 120
    p = seasonal_profile(y[:train], t[:train] % m, m, "multiplicative")
    assert abs(p.mean() - 1) < 1e-12 and np.abs(p - season[:m]).max() < 0.02  # the season, not the trend
    a = seasonal_profile(y[:train], t[:train] % m, m, "additive")
    assert abs(a.mean()) < 1e-12 and a.argmax() == p.argmax() and a.argmin() == p.argmin()
    sc = Scaler("standard", seasonal="multiplicative").fit(y[:train, None], t[:train] % m, m)
    np.testing.assert_array_equal(sc.profile, p)  # the test part did not enter the fit
    z = sc.transform(y[:, None], t % m)[:, 0]
    assert np.corrcoef(z[train:], season[train:])[0, 1] ** 2 < 0.05  # deseasonalised, past the training part too
    np.testing.assert_allclose(sc.inverse(z[None], phase=(t % m)[None])[0], y, rtol=1e-12)
    back = Scaler.from_state(json.loads(json.dumps(sc.state())))
    np.testing.assert_array_equal(back.transform(y[:, None], t % m), sc.transform(y[:, None], t % m))
    with pytest.raises(ValueError, match="phase"):
        sc.transform(y[:, None])
    with pytest.raises(ValueError, match="needs at least"):
        seasonal_profile(y[:15], t[:15] % m, m, "multiplicative")


def test_multiplicative_deseasonalising_resumes_exactly_and_forecasts_the_season(tmp_path):
    import rnnkit
    from rnnkit.tasks.forecasting import forecast

    cfg = _seasonal(transform="none", deseasonalize="multiplicative")
    whole, m_whole = fit(cfg, tmp_path / "whole", quiet=True)
    cut, _ = fit(cfg | {"training": cfg["training"] | {"epochs": 3}}, tmp_path / "cut", quiet=True)
    _, m_cut = fit(None, resume=cut, overrides=["training.epochs=6"], quiet=True)
    assert m_whole["test"] == m_cut["test"]
    run = rnnkit.Run.load(whole)
    assert run.task.scaler.seasonal == "multiplicative" and len(run.task.scaler.profile) == 12
    recorded = json.loads((whole / "run.json").read_text())["data"]["seasonal_profile"]
    assert recorded["kind"] == "multiplicative"
    assert np.allclose(recorded["by_phase"], run.task.scaler.profile, atol=1e-4)  # recorded in run.json
    rows = forecast(run, 12)
    mid = np.array([r["forecast"] for r in rows])
    t = 180 + np.arange(12)
    assert np.corrcoef(mid, np.sin(2 * np.pi * t / 12))[0, 1] > 0.8  # the season is put back on the forecasts
    lo, hi = (np.array([r[k] for r in rows]) for k in ("lower_80", "upper_80"))
    assert np.all(lo <= mid) and np.all(mid <= hi)


def test_the_online_season_is_the_ets_filter_and_uses_nothing_after_the_origin():
    pytest.importorskip("statsmodels")
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    from rnnkit.data.series import Scaler, ets_season

    m, t = 12, np.arange(240)
    amp = 0.05 + 0.35 * t / 240  # the season keeps growing, past the training part too
    y = (50 + 0.1 * t) * (1 + amp * np.sin(2 * np.pi * t / m)) * np.exp(np.random.default_rng(0).normal(0, .01, 240))
    train, phase = 120, t % m
    sc = Scaler("standard", seasonal="ets").fit(y[:train, None], phase[:train], m)
    fitted = ETSModel(y[:train], error="add", seasonal="mul", seasonal_periods=m).fit(disp=False).fittedvalues
    prior, _, level = ets_season(y[:train], phase[:train], **sc.ets)
    ours = np.r_[sc.ets["level0"], level[:-1]] * prior  # one-step forecasts
    np.testing.assert_allclose(ours, fitted, rtol=1e-2)  # statsmodels' filter, with its fitted parameters
    origins = np.arange(125, 200)
    f = sc.ets_ahead(sc.ets_states(y, phase)[1], phase[0], origins, 18)
    later = y.copy()
    later[150:] *= 3.0  # changing the future of origins before 150 ...
    g = sc.ets_ahead(sc.ets_states(later, phase)[1], phase[0], origins, 18)
    np.testing.assert_array_equal(f[origins < 150], g[origins < 150])  # ... changes none of their factors
    assert not np.allclose(f[origins >= 150], g[origins >= 150])
    peak = (phase[origins[-1] + 1 + np.arange(18)] == 3)  # sin peaks at phase 3: the season was re-learnt
    fixed = Scaler("standard", seasonal="multiplicative").fit(y[:train, None], phase[:train], m).profile[3]
    assert f[-1][peak].min() > 1 + amp[199] - 0.05 > fixed + 0.1  # it followed the growth; a fixed profile did not
    prior = sc.ets_states(y, phase)[0]
    z = sc.transform(y[:, None], factors=prior)[:, 0]
    np.testing.assert_allclose(sc.inverse(z, factors=prior), y, rtol=1e-12)
    back = Scaler.from_state(json.loads(json.dumps(sc.state())))
    np.testing.assert_array_equal(back.ets_ahead(back.ets_states(y, phase)[1], phase[0], origins, 18), f)
    with pytest.raises(ValueError, match="factors"):
        sc.transform(y[:, None], phase)


def test_ets_deseasonalising_resumes_exactly_and_forecasts_the_season(tmp_path):
    pytest.importorskip("statsmodels")
    import rnnkit
    from rnnkit.tasks.forecasting import forecast

    cfg = _seasonal(transform="none", deseasonalize="ets", relative=True)
    cfg["training"] |= {"epochs": 20, "lr": 0.02}
    whole, m_whole = fit(cfg, tmp_path / "whole", quiet=True)
    cut, _ = fit(cfg | {"training": cfg["training"] | {"epochs": 9}}, tmp_path / "cut", quiet=True)
    _, m_cut = fit(None, resume=cut, overrides=["training.epochs=20"], quiet=True)
    assert m_whole["test"] == m_cut["test"]  # the fitted filter is part of the run's state
    run = rnnkit.Run.load(whole)
    recorded = json.loads((whole / "run.json").read_text())["data"]["seasonal_profile"]
    assert recorded["kind"] == "ets" and 0 <= recorded["alpha"] <= 1 and 0 <= recorded["gamma"] <= 1
    rows = forecast(run, 18)  # past the horizon: forecasts fed back
    mid = np.array([r["forecast"] for r in rows])
    assert len(rows) == 18 and np.corrcoef(mid, np.sin(2 * np.pi * (180 + np.arange(18)) / 12))[0, 1] > 0.8
    lo, hi = (np.array([r[k] for r in rows]) for k in ("lower_80", "upper_80"))
    assert np.all(lo <= mid) and np.all(mid <= hi) and 40 < mid.mean() < 100
    assert m_whole["test"]["mase"] < 0.5 * m_whole["baselines"]["seasonal_naive"]["mase"]


def test_an_ets_season_that_cannot_be_fitted_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    pytest.importorskip("statsmodels")
    import yaml

    from rnnkit.cli import main
    from rnnkit.data import series

    def fail(*args):
        raise ValueError("optimizer did not converge")

    monkeypatch.setattr(series, "fit_ets_season", fail)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_seasonal(transform="none", deseasonalize="ets")))
    assert main(["train", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "could not fit exponential smoothing" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_the_seasonal_phase_follows_the_calendar_of_new_history(tmp_path):
    from rnnkit.tasks import get_task

    t = np.arange(120)
    y = (30 + 0.1 * t) * (1 + 0.25 * np.cos(2 * np.pi * t / 12))
    path = tmp_path / "monthly.csv"
    path.write_text("date,value\n" + "".join(f"{2000 + i // 12}-{i % 12 + 1:02d}-01,{v}\n" for i, v in enumerate(y)))
    cfg = load_config({"name": "cal", "task": "forecasting", "model": {"cell": "gru", "hidden_size": 4},
                       "data": {"source": "csv", "path": str(path), "date_col": "date", "target": "value",
                                "lookback": 12, "horizon": 3, "deseasonalize": "additive"},
                       "training": {"epochs": 1, "device": "cpu"}})
    task = get_task("forecasting")(cfg)
    task.setup()
    later = tmp_path / "later.csv"  # the same values, starting five months later
    later.write_text("date,value\n" + "".join(path.read_text().splitlines(keepends=True)[6:]))
    a, b = task.as_input(str(path)), task.as_input(str(later))
    torch.testing.assert_close(b.X, a.X[5:])  # step k of the later history is deseasonalised by its own month
    torch.testing.assert_close(b.Y, a.Y[5:])


@pytest.mark.parametrize(("data", "problem"), [
    ({"deseasonalize": "multiplicative"}, "after data.transform: boxcox"),
    ({"deseasonalize": "ets"}, "after data.transform: boxcox"),
    ({"deseasonalize": "additive", "season": 1}, "m >= 2"),
    ({"deseasonalize": "additive", "season": 60}, "needs at least"),
])
def test_a_seasonal_profile_that_cannot_be_fitted_is_refused_in_one_line(tmp_path, capsys, data, problem):
    import yaml

    from rnnkit.cli import main

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_seasonal(**data)))
    assert main(["train", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert problem in err and len(err.splitlines()) == 1 and not (tmp_path / "run").exists()


def test_multiplicative_deseasonalising_needs_a_positive_training_part(tmp_path, capsys):
    import yaml

    from rnnkit.cli import main

    cfg = _seasonal(transform="none", deseasonalize="multiplicative")
    cfg["data"]["values"][3] = -1.0
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "must be positive" in err and len(err.splitlines()) == 1


def test_a_warm_started_ensemble_chains_its_members_and_resumes(tmp_path):
    import csv

    training = DIGITS["training"] | {"ensemble": 2, "epochs": 4, "lr": 0.03}
    run, m = fit(DIGITS | {"training": training | {"ensemble_warm_start": True}}, tmp_path / "snap", quiet=True)
    first = [list(csv.DictReader(open(run / "members" / str(k) / "metrics.csv")))[0] for k in (0, 1)]
    cold, _ = fit(DIGITS | {"training": training}, tmp_path / "cold", quiet=True)
    cold1 = list(csv.DictReader(open(cold / "members" / "1" / "metrics.csv")))[0]
    # member 1 starts where member 0 ended: its first epoch is far better than a fresh start's
    assert float(first[1]["train_loss"]) < 0.8 * min(float(first[0]["train_loss"]), float(cold1["train_loss"]))
    assert m["members"][0]["test"] == json.loads((cold / "metrics.json").read_text())["members"][0]["test"]
    (run / "metrics.json").unlink()
    (run / "members" / "1" / "metrics.json").unlink()
    _, again = fit(None, resume=run, quiet=True)  # member 1 continues from its own checkpoint
    assert again["test"] == m["test"]
    with pytest.raises(ConfigError, match="ensemble_warm_start"):
        load_config(DIGITS | {"training": DIGITS["training"] | {"ensemble": 1, "ensemble_warm_start": True}})


@pytest.mark.parametrize("loss", ["quantile", "gaussian", "mse"])
def test_shrink_moves_the_point_towards_the_base_keeps_the_interval_width_and_not_the_training_loss(loss):
    from rnnkit.tasks.forecasting import Forecaster, ForecastModelConfig, RelativeInput

    torch.manual_seed(0)
    k = {"quantile": 3, "gaussian": 2, "mse": 1}[loss]
    net = Forecaster(ForecastModelConfig(cell="gru", hidden_size=8, loss=loss), 1, 4, k)
    x = torch.randn(5, 6, 1)
    full, half, none = (RelativeInput(net, loss == "gaussian", relative=True, shrink=w, centre=1 if k == 3 else 0)
                        for w in (0.0, 0.5, 1.0))
    net.eval()
    base, c = x[:, -1:, :1], 1 if k == 3 else 0
    a, b, z = full(x), half(x), none(x)
    torch.testing.assert_close(z[..., c], base[..., 0].expand(5, 4))  # shrink 1: the base alone (here naive)
    torch.testing.assert_close(b[..., c], (a[..., c] + z[..., c]) / 2)  # a combination half way
    if loss == "quantile":
        torch.testing.assert_close(b[..., 2] - b[..., 0], a[..., 2] - a[..., 0])  # the interval keeps its width
    if loss == "gaussian":
        torch.testing.assert_close(b[..., 1], a[..., 1])  # and its scale
    net.train()
    torch.testing.assert_close(none(x), full(x))  # training always sees the network's own offsets


def test_shrink_needs_a_base_and_a_share():
    base = {"task": "forecasting", "data": {"source": "array", "values": [1.0] * 50}}
    with pytest.raises(ConfigError, match="model.shrink moves forecasts towards the base"):
        load_config({**base, "model": {"shrink": 0.5}})
    with pytest.raises(ConfigError, match=r"model.shrink must be a number in \[0, 1\]"):
        load_config({**base, "model": {"shrink": 2}})
    load_config({**base, "model": {"shrink": 0.5}, "data": {**base["data"], "relative": True}})


def test_quantile_heads_are_sorted_when_predicting_but_not_in_the_training_loss():
    from rnnkit.tasks.forecasting import Forecaster, ForecastModelConfig, RelativeInput

    torch.manual_seed(0)
    net = Forecaster(ForecastModelConfig(cell="gru", hidden_size=4, loss="quantile"), 1, 3, 3)
    with torch.no_grad():  # heads that cross: the 10 % head reads +x, the 90 % head -x
        net.head.weight.zero_()
        net.head.bias.copy_(torch.tensor([1.0, 0.0, -1.0]).repeat(3))
    for base in (False, True):
        wrapped = RelativeInput(net, False, relative=base, base=base, sort=True)
        x = torch.randn(4, 5, 1)
        net.train()
        raw = wrapped(x)
        assert (raw[..., 0] > raw[..., 2]).all()  # the training loss sees the heads as they are
        net.eval()
        out = wrapped(x)
        assert (out.diff(dim=-1) >= 0).all()  # what evaluation, forecasts and exports see
        torch.testing.assert_close(out, raw.sort(dim=-1).values)


def test_the_small_data_example_trains_min_steps_and_learns(tmp_path):
    """examples/cbf.yaml, shortened (one member, 90 test series of 64 steps): 24 training series make 2 steps an
    epoch, so min_steps sets the length of training; the run learns and judges itself against 1-NN."""
    from pathlib import Path

    import yaml

    path = Path(__file__).resolve().parents[1] / "examples" / "cbf.yaml"
    cfg = yaml.safe_load(path.read_text())
    cfg["data"]["options"].update(n_test=90, length=64)
    cfg["model"]["hidden_size"] = 16
    cfg["training"].update(ensemble=1, min_steps=200)
    _, m = fit(cfg, tmp_path / "run", quiet=True)
    assert m["steps"] >= 200 and m["epochs"] >= 100  # without min_steps: at most 40 epochs of 2 steps
    assert m["test"]["count"] == 90 and m["test"]["accuracy"] > 0.8
    assert set(m["baselines"]) == {"majority", "logistic_regression_summary", "1nn"}


def test_the_seasonal_example_beats_ets_where_the_plain_network_loses_to_seasonal_naive(tmp_path):
    """examples/seasonal.yaml (a generated 144-month series with a multiplicative season, 36 months ahead): the
    plain network, no transform and no seasonal adjustment, forecasts worse than seasonal naive; the example's
    log + seasonal differencing + relative windows beats seasonal naive and ETS on the same forecast."""
    from pathlib import Path

    import yaml

    path = Path(__file__).resolve().parents[1] / "examples" / "seasonal.yaml"
    cfg = yaml.safe_load(path.read_text())
    _, m = fit(cfg, tmp_path / "recipe", quiet=True)
    b = m["baselines"]
    assert m["test"]["count"] == 36  # one origin, three years ahead
    assert m["test"]["mape"] < b["ets"]["mape"] < b["seasonal_naive"]["mape"] and m["beats_baselines"]
    plain = {**cfg, "data": {**cfg["data"], "transform": "none", "deseasonalize": "none", "relative": False},
             "training": {**cfg["training"], "epochs": 30}}
    _, p = fit(plain, tmp_path / "plain", quiet=True)
    assert p["test"]["mape"] > b["seasonal_naive"]["mape"] and not p["beats_baselines"]


def test_every_example_config_validates(monkeypatch, tmp_path):
    """Every examples/*.yaml passes the config checks (keys, types, sources, options); the ones that read the
    shared data or word vectors may fail only on their missing files."""
    from pathlib import Path

    monkeypatch.setenv("RNNKIT_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("RNNKIT_VECTORS", str(tmp_path / "vectors"))
    examples = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.yaml"))
    assert len(examples) >= 15
    for path in examples:
        try:
            load_config(path)
        except ConfigError as exc:
            assert "not found" in str(exc) and str(tmp_path) in str(exc), f"{path.name}: {exc}"
