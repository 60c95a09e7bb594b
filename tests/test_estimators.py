"""The scikit-learn-style estimators: conventions (clone, get/set_params, grid search, pipelines, pickling), every
job on in-memory data, run folders (temporary, out=, save, rnnkit.load)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

import rnnkit

FAST = {"hidden_size": 12, "epochs": 4, "lr": 0.02, "batch_size": 16, "num_threads": 1, "device": "cpu"}


def _sequences(n: int, seed: int = 0, labels=("down", "up")):
    """(N, 10, 3) sequences whose label is the sign of the first feature's sum."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 10, 3)).astype(np.float32)
    y = np.where(X[:, :, 0].sum(1) > 0, labels[1], labels[0])
    return X, y


@pytest.fixture(scope="module")
def fitted():
    X, y = _sequences(160)
    return rnnkit.SequenceClassifier(cell="gru", **FAST).fit(X, y), X, y


def test_sequence_classifier_learns_with_original_labels(fitted):
    clf, X, y = fitted
    assert list(clf.classes_) == ["down", "up"]
    Xt, yt = _sequences(80, seed=1)
    proba = clf.predict_proba(Xt)
    assert proba.shape == (80, 2) and np.allclose(proba.sum(1), 1, atol=1e-5)
    assert set(clf.predict(Xt)) <= {"down", "up"}
    assert clf.score(Xt, yt) > 0.8  # chance is about 0.5
    assert clf.run_dir_.is_dir() and (clf.run_dir_ / "data" / "train.npz").is_file()
    assert clf.history_ and "val" in clf.metrics_


def test_conventions_without_sklearn(fitted):
    clf, _, _ = fitted
    params = clf.get_params()
    assert params["cell"] == "gru" and params["hidden_size"] == 12 and params["epochs"] == 4
    again = type(clf)(**params)
    assert again.get_params() == params and not hasattr(again, "classes_")
    assert again.set_params(hidden_size=5) is again and again.hidden_size == 5
    with pytest.raises(TypeError, match="did you mean 'hidden_size'"):
        rnnkit.SequenceClassifier(hiden_size=3)
    with pytest.raises(TypeError, match="unexpected keyword argument 'hiden_size'"):
        again.set_params(hiden_size=3)
    with pytest.raises(ValueError, match="not fitted yet"):
        again.predict(np.zeros((1, 10, 3)))
    assert "SequenceClassifier(cell='gru'" in repr(clf) and "<b>SequenceClassifier</b> (fitted)" in clf._repr_html_()


def test_sklearn_clone_cross_val_grid_search_and_pipeline():
    sklearn = pytest.importorskip("sklearn")
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV, cross_val_score
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    X, y = _sequences(96)
    est = rnnkit.SequenceClassifier(**{**FAST, "epochs": 2})
    c = clone(est)
    assert c.get_params() == est.get_params() and c is not est
    scores = cross_val_score(est, X, y, cv=2)
    assert scores.shape == (2,) and np.all((0 <= scores) & (scores <= 1))
    grid = GridSearchCV(est, {"hidden_size": [4, 8]}, cv=2).fit(X, y)
    assert grid.best_params_["hidden_size"] in (4, 8)
    pipe = Pipeline([("scale", FunctionTransformer(lambda a: a * 2.0)), ("rnn", clone(est))]).fit(X, y)
    assert pipe.predict(X[:3]).shape == (3,)
    assert sklearn.__version__


def test_variable_lengths_validation_data_and_refit(tmp_path):
    rng = np.random.default_rng(2)
    seqs = [rng.normal(size=(int(rng.integers(3, 12)), 2)).astype(np.float32) for _ in range(80)]
    y = np.array([int(s[:, 0].mean() > 0) for s in seqs])
    val = ([rng.normal(size=(5, 2)) for _ in range(10)], np.array([0, 1] * 5))
    clf = rnnkit.SequenceClassifier(out=tmp_path / "run", **FAST)
    clf.fit(seqs, y, validation_data=val)
    assert list(clf.classes_) == [0, 1]
    assert clf.predict(seqs[:4]).shape == (4,)
    assert (tmp_path / "run" / "data" / "val.npz").is_file()
    assert (tmp_path / "run" / "report.html").is_file()  # a folder of the user's: written as rnnkit train does
    first = clf.run_dir_
    clf.fit(seqs, y)  # fit again: retrains from scratch into its own folder
    assert clf.run_dir_ == first
    with pytest.raises(ValueError, match="already exists"):
        rnnkit.SequenceClassifier(out=tmp_path / "run", **FAST).fit(seqs, y)


def test_per_step_tagger():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(64, 8, 2)).astype(np.float32)
    y = (X[:, :, 0] > 0).astype(int)
    tagger = rnnkit.SequenceClassifier(**{**FAST, "epochs": 6}).fit(X, y)
    assert tagger.predict_proba(X[:5]).shape == (5, 8, 2)
    assert tagger.predict(X[:5]).shape == (5, 8)
    assert tagger.score(X, y) > 0.8


def test_save_load_and_pickle(fitted, tmp_path):
    clf, X, _ = fitted
    assert not (clf.run_dir_ / "report.html").exists()  # a temporary folder: the report waits for save
    saved = clf.save(tmp_path / "kept")
    page = (saved / "report.html").read_text()
    assert all(f"<h2>{t}" in page for t in ("Results", "Training curves", "Confusion matrix (val)", "Hidden states"))
    back = rnnkit.load(saved)
    assert isinstance(back, rnnkit.SequenceClassifier)
    assert back.get_params()["hidden_size"] == 12 and list(back.classes_) == ["down", "up"]
    np.testing.assert_allclose(back.predict_proba(X[:5]), clf.predict_proba(X[:5]), atol=1e-6)
    assert str(saved.resolve()) in (saved / "config.yaml").read_text()  # the copy reads its own data
    assert str(clf.run_dir_) not in (saved / "run.json").read_text() + page  # nor names the temporary folder
    clone = pickle.loads(pickle.dumps(clf))
    np.testing.assert_allclose(clone.predict_proba(X[:5]), clf.predict_proba(X[:5]), atol=1e-6)


def test_an_estimator_unpickled_after_its_temporary_folder_is_gone_still_predicts(tmp_path):
    """joblib.dump, then joblib.load in another process: the temporary run folder (and the training data in it)
    went with the first estimator; unpickling checked the data files and failed."""
    import gc

    X, y = _sequences(64)
    clf = rnnkit.SequenceClassifier(cell="gru", **FAST).fit(X, y)
    want, blob, folder = clf.predict_proba(X[:4]), pickle.dumps(clf), clf.run_dir_
    del clf
    gc.collect()
    assert not folder.exists()
    back = pickle.loads(blob)
    np.testing.assert_allclose(back.predict_proba(X[:4]), want, atol=1e-6)
    with pytest.raises(ValueError, match="is gone"):
        back.save(tmp_path / "kept")


def test_text_classifier():
    rng = np.random.default_rng(4)
    good, bad = ["great", "lovely", "tasty"], ["awful", "stale", "bland"]
    texts, labels = [], []
    for _ in range(160):
        pos = bool(rng.random() < 0.5)
        words = list(rng.choice(["the", "box", "it", "was"], 5)) + [str(rng.choice(good if pos else bad))]
        texts.append(" ".join(rng.permutation(words)))
        labels.append("pos" if pos else "neg")
    clf = rnnkit.TextClassifier(**{**FAST, "epochs": 6, "embedding_dim": 8}).fit(texts, labels)
    assert list(clf.classes_) == ["neg", "pos"]
    assert clf.predict(["it was great", "stale box"]).tolist() == ["pos", "neg"]
    assert clf.predict_proba(["lovely"]).shape == (1, 2)
    assert clf.score(texts, labels) > 0.9
    (e,) = clf.explain(["great box"])
    assert e.predicted == clf.predict(["great box"])[0] == "pos"  # the user's label, not the index "1"


def test_forecaster_on_arrays_and_dated_series():
    t = np.arange(150)
    series = 10 + 0.05 * t + 3 * np.sin(2 * np.pi * t / 12)
    f = rnnkit.Forecaster(lookback=24, horizon=3, season=12, relative=True, cell="gru", hidden_size=12, epochs=5,
                          lr=0.01, num_threads=1, device="cpu").fit(series)
    out = f.predict(6)
    assert out.shape == (6,) and np.isfinite(out).all()
    pd = pytest.importorskip("pandas")
    dated = pd.Series(series, index=pd.date_range("2000-01-01", periods=150, freq="MS"))
    g = rnnkit.Forecaster(**{**f.get_params(), "epochs": 2}).fit(dated)
    frame = g.predict(4)
    assert list(frame.columns)[:1] == ["forecast"] and len(frame) == 4
    assert frame.index[0] == pd.Timestamp("2012-07-01")  # the month after the last observation


def test_language_model():
    text = "the cat sat on the mat. " * 200
    lm = rnnkit.LanguageModel(hidden_size=24, embedding_dim=8, chunk_length=16, epochs=2, steps_per_epoch=20,
                              lr=0.02, batch_size=8, num_threads=1, device="cpu").fit(text)
    assert lm.score("the cat sat on the mat. ") < lm.score("zqxj wvkp yrtz qqqq ")
    a, b = lm.generate("the ", 30, seed=1), lm.generate("the ", 30, seed=1)
    assert a == b and len(a) == 30
    from rnnkit.errors import UsageError

    for bad, name in (({"temperature": float("nan")}, "temperature"), ({"temperature": float("inf")}, "temperature"),
                      ({"length": 10**8}, "length"), ({"length": 2.5}, "length"), ({"top_k": 1.5}, "top_k"),
                      ({"seed": None}, "seed")):
        with pytest.raises(UsageError, match=f"^{name} must be"):  # was torch's RuntimeError, or ran for hours
            lm.generate("the ", **{"length": 5, **bad})
    with pytest.raises(ValueError, match="at least 2 tokens"):
        lm.score("")  # scored 0.0 bits: nothing was predicted


def test_fit_is_seeded_and_repeatable():
    torch.manual_seed(0)
    X, y = _sequences(64)
    a = rnnkit.SequenceClassifier(**{**FAST, "epochs": 1}).fit(X, y)
    b = rnnkit.SequenceClassifier(**{**FAST, "epochs": 1}).fit(X, y)
    np.testing.assert_allclose(a.predict_proba(X[:4]), b.predict_proba(X[:4]), atol=1e-6)  # seeded: repeatable


def test_train_takes_arrays_in_the_config_and_twice_is_two_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    X, y = _sequences(60)
    cfg = {"name": "arr", "model": {"hidden_size": 6}, "data": {"X": X, "y": (y == "up").astype(int),
           "test_fraction": 0.2}, "training": {"epochs": 1, "num_threads": 1, "device": "cpu"}}
    first, second = rnnkit.train(cfg), rnnkit.train(cfg)
    assert first.path.name == "arr" and second.path.name == "arr-2"  # a notebook re-run trains a new run
    assert (second.path / "data" / "train.npz").is_file() and first.metrics["test"]["count"] == 12
    assert "arr" in first._repr_html_() and "test accuracy" in first._repr_html_()
    fc = rnnkit.train({"name": "fc", "task": "forecasting", "data": {"values": np.sin(np.arange(90) / 3.0),
                       "lookback": 12}, "training": {"epochs": 1, "num_threads": 1, "device": "cpu"}})
    assert fc.metrics["test"]["count"] > 0
    before = sorted(p.name for p in first.path.rglob("*"))
    with pytest.raises(FileExistsError, match="already exists"):
        rnnkit.train(cfg, out=first.path)
    assert sorted(p.name for p in first.path.rglob("*")) == before  # nothing of the existing run touched


def test_odd_documents_and_too_few_pairs(tmp_path):
    """A one-line document longer than a file name may be is text, not an OSError from asking whether it is a
    file; pairs too few to leave a training part are a DataError, not a KeyError inside the engine."""
    from rnnkit.errors import DataError

    lm = rnnkit.LanguageModel(hidden_size=4, chunk_length=8, steps_per_epoch=2, epochs=1, num_threads=1,
                              device="cpu").fit("ab" * 500)
    assert lm.score("abab") > 0
    with pytest.raises(DataError, match="leave none for training"):
        rnnkit.Seq2Seq(hidden_size=4, epochs=1, num_threads=1, device="cpu").fit(["cat"] * 3, ["K AE T"] * 3)


def test_bad_arrays_are_named_before_training():
    """Missing labels or texts, an empty or non-numeric X and a NaN in a series are one-line errors that say what
    and where, raised before anything trains: NaN labels used to become a class of their own, None texts the
    word "None", and a series' NaN was reported with the whole list of values."""
    from rnnkit.errors import ConfigError, DataError

    X, y = _sequences(40)
    clf = rnnkit.SequenceClassifier(**FAST)
    with pytest.raises(ValueError, match="y holds 1 missing labels .* first at 3"):
        clf.fit(X, np.where(np.arange(40) == 3, None, y))
    with pytest.raises(DataError, match=r"X has shape \(0, 10, 3\): it needs at least one sequence"):
        clf.fit(X[:0], y[:0])
    with pytest.raises(DataError, match="X must hold numbers"):
        clf.fit(np.full((40, 10), "a"), y)
    with pytest.raises(DataError, match=r"text 1 is missing \(None\)"):
        rnnkit.TextClassifier(**FAST).fit(["good", None] * 20, [1, 0] * 20)
    series = np.sin(np.arange(80) / 3.0)
    series[5] = np.nan
    with pytest.raises(ConfigError) as e:
        rnnkit.Forecaster(lookback=6, horizon=2, **FAST).fit(series)
    assert "got nan at position 5 (of 80)" in str(e.value) and len(str(e.value)) < 200


def test_inputs_of_the_wrong_form_are_named_not_misread(fitted):
    """A column-vector y scores as the 1-D one (it broadcast to an N x N table), a wrong validation_data is named
    (IndexError, or an array read as the pair), a (T, 2) undated series is refused (it was flattened into one
    series of alternating columns), a tensor is a series, data.fill applies to undated values, and a series with
    times of day says what the calendar counts (hourly dates were cut to days, then refused as repeated)."""
    clf, X, y = fitted
    assert clf.score(X, y[:, None]) == clf.score(X, y)
    with pytest.raises(ValueError, match="true labels y"):
        clf.score(X, None)
    with pytest.raises(ValueError, match=r"y has shape \(3,\), but X holds 160"):
        clf.score(X, y[:3])
    for bad in ((X,), X):
        with pytest.raises(ValueError, match="validation_data must be a tuple"):
            rnnkit.SequenceClassifier(**FAST).fit(X, y, validation_data=bad)
    small = {"lookback": 6, "horizon": 2, "hidden_size": 4, "epochs": 1, "num_threads": 1, "device": "cpu"}
    series = np.sin(np.arange(80) / 3.0)
    with pytest.raises(ValueError, match=r"shape \(80, 2\); give a 1-D array"):
        rnnkit.Forecaster(**small).fit(np.stack([series, series], 1))
    gappy = series.copy()
    gappy[5] = np.nan
    f = rnnkit.Forecaster(**small, fill="interpolate").fit(torch.from_numpy(gappy))
    assert f.run_.config.data.values[5] == pytest.approx((series[4] + series[6]) / 2)
    pd = pytest.importorskip("pandas")
    hourly = pd.Series(series, index=pd.date_range("2000-01-01", periods=80, freq="h"))
    with pytest.raises(ValueError, match="times of day.*to_numpy"):
        rnnkit.Forecaster(**small).fit(hourly)

