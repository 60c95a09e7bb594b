"""Honest baselines: simple models fitted on the model's own training part and scored on its test split.

Each task calls these from ``finalize_metrics``, so ``metrics.json`` holds ``"baselines": {name: metrics}`` beside
the model's, and :func:`judge` adds ``"beats_baselines"`` (the model against the best of them on the task's main
metric), a warning on stderr when it loses, and ``"baselines_skipped"``: the baselines that need a library that is
not installed, with how to get it (``pip install 'rnnkit[baselines]'``: scikit-learn and statsmodels).

* sequence classification: majority class; logistic regression on per-sequence summary features (mean, std, min,
  max, first and last value of every feature over the sequence's valid steps; at most ``LR_MAX`` training
  sequences); 1-nearest neighbour on the raw sequences (equal lengths only; at most ``KNN_MAX`` training
  sequences, a seeded sample beyond that).
* text: majority class; TF-IDF of word 1-2 grams (min_df 2 from 100 training texts) + logistic regression.
* language model: unigram, and an interpolated Witten-Bell n-gram model (characters or words) — in bits per
  token, as the model.
* forecasting (``rnnkit.forecast.statistical``): ETS and Theta beside naive, seasonal naive and the mean.
"""

from __future__ import annotations

import importlib.util
import sys

import numpy as np

EXTRA = "pip install 'rnnkit[baselines]'"
KNN_MAX = 10_000  # training sequences the 1-nearest-neighbour baseline compares against
LR_MAX = 100_000  # training sequences the summary-feature logistic regression is fitted on (a seeded sample)


def have(module: str) -> bool:
    """Whether ``module`` can be imported (without importing it)."""
    return importlib.util.find_spec(module) is not None


def skipped(names: list[str], module: str) -> dict[str, str]:
    """``{name: why}`` for baselines that need ``module`` when it is missing (else {})."""
    if have(module):
        return {}
    return {n: f"needs {module}: {EXTRA}" for n in names}


def judge(metrics: dict, key: str, higher_is_better: bool, what: str) -> dict:
    """Compare ``metrics["test"][key]`` with every baseline's; set ``beats_baselines`` and ``best_baseline``, and
    warn on stderr when the model does not beat the best one. Returns ``metrics``."""
    base, test = metrics.get("baselines") or {}, metrics.get("test") or {}
    scored = {n: b[key] for n, b in base.items() if isinstance(b, dict) and _finite(b.get(key))}
    if not scored or not _finite(test.get(key)):
        return metrics
    pick = max if higher_is_better else min
    best = pick(scored, key=scored.get)
    beats = test[key] > scored[best] if higher_is_better else test[key] < scored[best]
    metrics["best_baseline"], metrics["beats_baselines"] = best, bool(beats)
    if not beats:
        print(f"rnnkit: warning: the model does NOT beat the {best} baseline on the test split ({what} "
              f"{test[key]:.4g} vs {scored[best]:.4g}); see the report's baselines", file=sys.stderr)
    return metrics


def _finite(v) -> bool:
    return isinstance(v, int | float) and bool(np.isfinite(v))


def section(metrics: dict, key: str, higher_is_better: bool, what: str):
    """The report's section: the model and every baseline on ``key``, a red flag when the model loses, and the
    baselines that were skipped."""
    from rnnkit.report import Section, table

    base, test = metrics.get("baselines") or {}, metrics.get("test") or {}
    if not base and not metrics.get("baselines_skipped"):
        return None
    rows = [["model", test.get(key, float("nan"))]] + [[n, b.get(key, float("nan"))] for n, b in base.items()]
    html = ""
    if metrics.get("beats_baselines") is False:
        html += ('<p style="color:#b00;font-size:1.3em;font-weight:bold">The model does not beat the '
                 f"{metrics['best_baseline']} baseline on the test split ({what} {test[key]:.4g} against "
                 f"{base[metrics['best_baseline']][key]:.4g}): a simpler model does as well on this data.</p>")
    html += table(rows, ["model", what])
    html += (f"<p>Every baseline is fitted on the model's training part and scored on the same test split "
             f"({'higher' if higher_is_better else 'lower'} is better).</p>")
    for name, why in (metrics.get("baselines_skipped") or {}).items():
        html += f"<p>Skipped: {name} ({why}).</p>"
    return Section("Baselines", html)


# ---- classification --------------------------------------------------------------------------------------
def _accuracy(pred: np.ndarray, y: np.ndarray) -> dict:
    return {"accuracy": float((pred == y).mean()) if len(y) else float("nan")}


def majority(train_y: np.ndarray, test_y: np.ndarray) -> dict:
    """The most frequent training class for everything."""
    values, counts = np.unique(train_y, return_counts=True)
    return _accuracy(np.full(len(test_y), values[counts.argmax()]), test_y)


def summary_features(X: np.ndarray, lengths: np.ndarray | None) -> np.ndarray:
    """(N, 6 D): mean, std, min, max, first and last of each feature over each sequence's valid steps."""
    N, T, D = X.shape
    n = np.full(N, T) if lengths is None else np.asarray(lengths)
    valid = (np.arange(T)[None, :] < n[:, None])[:, :, None]
    cnt = n[:, None].astype(np.float64)
    xs = np.where(valid, X, 0.0).astype(np.float64)
    mean = xs.sum(1) / cnt
    std = np.sqrt(np.maximum(np.where(valid, (X - mean[:, None]) ** 2, 0.0).sum(1) / cnt, 0.0))
    lo = np.where(valid, X, np.inf).min(1)
    hi = np.where(valid, X, -np.inf).max(1)
    last = X[np.arange(N), n - 1]
    return np.concatenate([mean, std, lo, hi, X[:, 0], last], 1)


def sequence_baselines(train: tuple, test: tuple, seed: int = 0) -> tuple[dict, dict]:
    """Baselines for sequence classification. ``train``/``test``: (X (N, T, D), y (N,), lengths or None), X as the
    model sees it (standardised if the run is). Returns (baselines, skipped)."""
    (Xa, ya, la), (Xb, yb, lb) = train, test
    out = {"majority": majority(ya, yb)}
    skip = skipped(["logistic_regression_summary", "1nn"], "sklearn")
    if skip:
        return out, skip
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(np.unique(ya)) > 1:
        # tol 1e-3 (scikit-learn's default is 1e-4): on 54 000 Fashion-MNIST sequences 8.6 s instead of 38 s, test
        # accuracy 81.8 % instead of 82.1 %; a sample of 20 000 at the default tol took 16 s and scored 81.2 %
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, tol=1e-3))
        clf.fit(*_capped(LR_MAX, seed, summary_features(Xa, la), ya))
        out["logistic_regression_summary"] = _accuracy(clf.predict(summary_features(Xb, lb)), yb)
    if la is None and lb is None and Xa.shape[1:] == Xb.shape[1:]:
        out["1nn"] = nearest_neighbour(Xa, ya, Xb, yb, seed)
    else:
        skip["1nn"] = "the sequences have different lengths (1-NN compares whole equal-length sequences)"
    return out, skip


def _capped(cap: int, seed: int, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Equal-length arrays -> themselves, or the same seeded sample of ``cap`` rows of each when longer."""
    if len(arrays[0]) <= cap:
        return arrays
    keep = np.random.default_rng(seed).choice(len(arrays[0]), cap, replace=False)
    return tuple(a[keep] for a in arrays)


def nearest_neighbour(Xa: np.ndarray, ya: np.ndarray, Xb: np.ndarray, yb: np.ndarray, seed: int) -> dict:
    """1-NN by Euclidean distance over whole sequences (at most KNN_MAX training sequences, a seeded sample)."""
    Xa, ya = _capped(KNN_MAX, seed, Xa, ya)
    A = Xa.reshape(len(Xa), -1).astype(np.float32)
    a2 = (A * A).sum(1)
    pred = np.empty(len(Xb), ya.dtype)
    for i in range(0, len(Xb), 1000):  # (1000 x N) distances at a time
        B = Xb[i: i + 1000].reshape(-1, A.shape[1]).astype(np.float32)
        d = a2[None, :] - 2.0 * B @ A.T
        pred[i: i + len(B)] = ya[d.argmin(1)]
    res = _accuracy(pred, yb)
    res["train_used"] = int(len(Xa))
    return res


def text_baselines(train_texts: list[str], train_y: np.ndarray, test_texts: list[str],
                   test_y: np.ndarray) -> tuple[dict, dict]:
    """Majority class and TF-IDF (word 1-2 grams, sublinear tf, min_df 2) + logistic regression."""
    out = {"majority": majority(train_y, test_y)}
    skip = skipped(["tfidf_logistic_regression"], "sklearn")
    if skip or len(np.unique(train_y)) < 2:
        return out, skip
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2 if len(train_texts) >= 100 else 1, sublinear_tf=True)
    clf = LogisticRegression(max_iter=2000, C=10.0)
    try:
        clf.fit(vec.fit_transform(train_texts), train_y)
    except ValueError as exc:  # no usable terms (tiny or empty texts): reported, not fatal
        return out, {"tfidf_logistic_regression": f"could not be fitted: {exc}"}
    out["tfidf_logistic_regression"] = _accuracy(clf.predict(vec.transform(test_texts)), test_y)
    return out, skip


# ---- language models ---------------------------------------------------------------------------------------
def unigram_bits(train: np.ndarray, test: np.ndarray, vocab: int) -> float:
    """Bits per token of the add-one unigram model of ``train`` on ``test`` (integer ids < vocab)."""
    counts = np.bincount(train, minlength=vocab).astype(np.float64) + 1.0
    p = counts / counts.sum()
    return float(-np.log2(p[test]).mean()) if len(test) else float("nan")


def ngram_bits(train: np.ndarray, test: np.ndarray, vocab: int, order: int = 5) -> float:
    """Bits per token on ``test`` of an interpolated Witten-Bell n-gram model of ``train`` (integer ids < vocab):

        P(w | h) = (c(h w) + N1+(h •) P(w | h')) / (c(h) + N1+(h •)),     h' = h without its oldest token

    down to the add-one unigram, where c counts the training n-grams and N1+(h •) the distinct tokens seen after
    h. Contexts are hashed into int64 keys (base ``vocab``), so the counts are sorted arrays, not dicts."""
    train, test = np.asarray(train, np.int64), np.asarray(test, np.int64)
    if len(test) == 0:
        return float("nan")
    base = np.int64(vocab)
    order = max(1, min(order, int(np.floor(62 / max(np.log2(vocab), 1)))))  # keys fit in int64
    p = (np.bincount(train, minlength=vocab).astype(np.float64) + 1.0)
    p = (p / p.sum())[test]  # order 1, for every test position
    for n in range(2, order + 1):
        ctx_train = _keys(train, n - 1, base)[:-1]  # context ending at i, followed by train[i + 1]
        full_train = ctx_train * base + train[n - 1:]
        ctx_keys, ctx_counts = np.unique(ctx_train, return_counts=True)
        full_keys, full_counts = np.unique(full_train, return_counts=True)
        distinct = np.unique(full_keys // base, return_counts=True)  # N1+(h •) per context
        ctx_test = np.full(len(test), -1, np.int64)
        ctx_test[n - 1:] = _keys(test, n - 1, base)[:-1]  # the context before test[i]
        c_h = _lookup(ctx_keys, ctx_counts, ctx_test)
        c_hw = _lookup(full_keys, full_counts, np.where(ctx_test >= 0, ctx_test * base + test, -1))
        t_h = _lookup(*distinct, ctx_test)
        seen = c_h > 0
        p = np.where(seen, (c_hw + t_h * p) / np.maximum(c_h + t_h, 1), p)
    return float(-np.log2(p).mean())


def _keys(ids: np.ndarray, n: int, base: np.int64) -> np.ndarray:
    """The int64 key of every window of ``n`` ids: len(ids) - n + 1 keys."""
    keys = np.zeros(len(ids) - n + 1, np.int64)
    for j in range(n):
        keys = keys * base + ids[j: len(ids) - n + 1 + j]
    return keys


def _lookup(keys: np.ndarray, values: np.ndarray, query: np.ndarray) -> np.ndarray:
    """values[key] for every query key (0 where absent or the query is -1)."""
    pos = np.searchsorted(keys, query)
    pos = np.minimum(pos, len(keys) - 1)
    hit = (keys[pos] == query) & (query >= 0) if len(keys) else np.zeros(len(query), bool)
    return np.where(hit, values[pos] if len(keys) else 0, 0).astype(np.float64)


__all__ = ["EXTRA", "judge", "majority", "ngram_bits", "section", "sequence_baselines", "skipped", "summary_features",
           "text_baselines", "unigram_bits"]
