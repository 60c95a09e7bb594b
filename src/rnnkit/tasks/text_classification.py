"""Text classification: raw text -> tokens -> Embedding -> rnnkit RNN/LSTM/GRU -> pooling -> head.

Data: CSV/TSV/JSONL files with a text and a label column, a folder of ``<class>/*.txt``, the IMDB tarball
(raw reviews) or Keras' pre-indexed ``imdb.npz``. The tokenizer and the vocabulary are fitted on the
training split only and saved with the run (``state.json`` of every checkpoint, and ``tokenizer.json`` in
the run folder), so prediction encodes new text exactly as training did.

Batches: texts are truncated to ``data.max_length`` (``pre`` keeps the end, Keras' default) and grouped by
length (:func:`rnnkit.data.text.bucket_batches`); each batch is padded only to its own longest text and the
lengths go to the recurrent layer, which skips the padding (packed sequences in the fused kernel).

Model: two classes -> one logit with a sigmoid (binary cross-entropy); more -> softmax over K logits.
Optional class weights (given, or ``balance_classes`` from the training counts) weight each item's loss.
Metrics: accuracy, F1 (of the positive class when binary, macro otherwise), macro-F1, ROC-AUC (binary;
macro one-vs-rest otherwise) and the confusion matrix.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rnnkit.config import Config, ConfigError, DataConfig, ModelConfig, absent, files_required
from rnnkit.data.text import Corpus, TextData, Tokenizer, Vocabulary, chunks, safe_text
from rnnkit.layers import Dropout
from rnnkit.tasks import register_task
from rnnkit.tasks.base import ExportSpec, StepResult, Task, batch_indices
from rnnkit.tasks.common import classification_metrics, confusion_matrix, make_rnn

TABLES = ("csv", "tsv", "jsonl")


@dataclass
class TextModelConfig(ModelConfig):
    embedding_dim: int = 128
    pretrained: str | None = None  # GloVe-format text file of word vectors to initialise the embedding
    freeze_embeddings: bool = False  # keep the (pretrained) embedding fixed
    embedding_dropout: float = 0.0
    pooling: Literal["last", "mean", "max", "meanmax", "attention"] = "last"  # meanmax: both, concatenated
    head_dropout: float = 0.0
    class_weights: list | None = None  # one loss weight per class (in the order of the run's classes)
    packed: bool = True  # pass lengths to the recurrent layer; false (one direction only): run the padded batch
    #                      through torch's unpacked kernel and mask the pooling - same result, faster on CPU
    balance_classes: bool = False  # weights n / (K * n_class) from the training split
    ngrams: int = 0  # > 0: add a linear model on the TF-IDF of word 1..ngrams-grams to the logits (wide + deep)
    ngram_buckets: int = 262144  # hashed slots for the 2..ngrams-grams (unigrams keep their own)
    ngrams_prefit: bool = False  # fit the bag alone first (logistic regression, C = 10, as the TF-IDF baseline)

    def check(self) -> None:
        super().check()
        if self.embedding_dim < 1:
            raise ConfigError(f"model.embedding_dim must be > 0, got {self.embedding_dim}")
        for key in ("embedding_dropout", "head_dropout"):
            if not 0.0 <= getattr(self, key) < 1.0:
                raise ConfigError(f"model.{key} must be in [0, 1), got {getattr(self, key)}")
        if self.pretrained is not None and absent(self.pretrained):
            raise ConfigError(f"model.pretrained: file not found: {self.pretrained} (a GloVe .txt file)")
        if not self.packed and self.bidirectional:
            raise ConfigError("model.packed: false needs bidirectional: false (the reverse direction needs lengths)")
        if not 0 <= self.ngrams <= 4 or self.ngram_buckets < 1:
            raise ConfigError(f"model.ngrams must be in 0..4 and model.ngram_buckets >= 1, got {self.ngrams}, "
                              f"{self.ngram_buckets}")
        if self.ngrams_prefit and not self.ngrams:
            raise ConfigError("model.ngrams_prefit fits the n-gram bag: set model.ngrams (e.g. 2) or remove it")
        if self.class_weights is not None:
            if self.balance_classes:
                raise ConfigError("give model.class_weights or model.balance_classes: true, not both")
            if not all(isinstance(w, int | float) and not isinstance(w, bool) and w > 0 for w in self.class_weights):
                raise ConfigError(f"model.class_weights must be a list of positive numbers, got {self.class_weights}")


@dataclass
class TextDataConfig(DataConfig):
    modality: ClassVar[str] = "text"
    source: str = "csv"  # csv, tsv, jsonl, folder, imdb, imdb-npz, or any registered text source
    text_column: str = "text"
    label_column: str = "label"
    positive_label: str | None = None  # binary: the class that counts as positive (F1, ROC-AUC, probability)
    level: Literal["word", "char"] = "word"
    lower: bool = True
    punctuation: Literal["split", "drop"] = "split"
    num_words: int | None = 10000  # vocabulary cap, <pad> and <oov> included (Keras' num_words)
    min_freq: int = 1  # tokens seen fewer times in the training split map to <oov>
    max_length: int | None = 200  # truncate texts to this many tokens; null: keep all
    truncating: Literal["pre", "post", "chunk"] = "pre"  # pre: drop the start (keep the end), post: drop the end;
    #   chunk: keep all, in windows of max_length (each trained on; their probabilities averaged per document)
    bucketing: bool = True  # batches of similar length (less padding); false: plain shuffling
    bucket_size: int = 50  # batches per sorted chunk

    def check(self) -> None:
        self.check_source()
        for key in ("path", "test_path", "val_path"):
            p = getattr(self, key)
            if p is None:
                continue
            if self.source in ("imdb", "imdb-npz"):
                raise ConfigError(f"data.{key} does not apply to source: {self.source} (use data.root for the folder)")
            if self.source == "folder" and absent(p, "dir"):
                raise ConfigError(f"data.{key}: folder not found: {p} (one sub-folder of .txt files per class)")
            if self.source in TABLES and absent(p):
                raise ConfigError(f"data.{key}: file not found: {p}")
        if self.source in (*TABLES, "folder") and not self.path and files_required():
            raise ConfigError(f"data.path is required for source: {self.source}")
        if self.source == "imdb-npz" and self.level != "word":
            raise ConfigError("source: imdb-npz is indexed by word; remove data.level: char")
        if not 0.0 <= self.val_fraction < 1.0 or not 0.0 <= self.test_fraction < 1.0:
            raise ConfigError("data.val_fraction and data.test_fraction must be in [0, 1)")
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ConfigError("data.val_fraction + data.test_fraction must leave some training data (< 1)")
        if self.standardize or self.normalize != "none":
            raise ConfigError("data.standardize and data.normalize do not apply to text; remove them")
        for key, low in (("limit", 1), ("num_words", 3), ("max_length", 1)):
            if getattr(self, key) is not None and getattr(self, key) < low:
                raise ConfigError(f"data.{key} must be >= {low}, got {getattr(self, key)}")
        if self.min_freq < 1 or self.bucket_size < 1:
            raise ConfigError("data.min_freq and data.bucket_size must be >= 1")


class NgramBag(nn.Module):
    """The "wide" half of a wide + deep text model: a linear model on a text's bag of word n-grams.

    ids (B, T) int64 with lengths (B,) -> logits (B, K). Features: every distinct 1..n-gram of the valid tokens
    (unigrams by id, longer ones hashed into ``buckets`` slots after them), each weighted by its inverse document
    frequency on the training split (``idf``, a buffer fitted by :meth:`fit_idf`, saved with the weights), then
    L2-normalised per text - TF-IDF with binary term frequency, as the TF-IDF + logistic regression baseline
    reads a text, but trained jointly with the recurrent model. Weights start at zero."""

    MULT = 0x9E3779B1  # multiplicative hashing of the n-gram keys

    def __init__(self, vocab_size: int, num_outputs: int, n: int, buckets: int) -> None:
        super().__init__()
        self.vocab, self.n, self.buckets = vocab_size, n, buckets if n > 1 else 0
        self.weight = nn.Parameter(torch.zeros(vocab_size + self.buckets, num_outputs))
        self.bias = nn.Parameter(torch.zeros(num_outputs))
        self.register_buffer("idf", torch.ones(vocab_size + self.buckets))

    def features(self, ids: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (row (M,), feature (M,)): each text's distinct n-gram features, sorted by row."""
        b, t = ids.shape
        valid = torch.arange(t, device=ids.device)[None, :] < lengths.to(ids.device)[:, None]
        size = self.vocab + self.buckets
        keys = []
        for n in range(1, min(self.n, t) + 1):
            k = ids[:, : t - n + 1]
            for j in range(1, n):
                k = k * self.vocab + ids[:, j : t - n + 1 + j]
            f = k if n == 1 else self.vocab + torch.remainder(k * self.MULT, self.buckets)
            rows = torch.arange(b, device=ids.device)[:, None].expand_as(f)
            ok = valid[:, n - 1 :]  # the n-gram ending at a valid token
            keys.append(rows[ok] * size + f[ok])
        key = torch.unique(torch.cat(keys))  # sorted: rows in order
        return key // size, key % size

    @torch.no_grad()
    def fit_idf(self, batches) -> None:
        """Smoothed idf, ln((1 + N) / (1 + df)) + 1, of the training texts, given as batches of (ids (B, T) padded,
        lengths (B,)): N texts in all."""
        df, n = torch.zeros(self.vocab + self.buckets, dtype=torch.float64), 0
        for ids, lengths in batches:
            _, f = self.features(ids, lengths)
            df += torch.bincount(f, minlength=len(df)).double()
            n += len(ids)
        self.idf.copy_((torch.log((1.0 + n) / (1.0 + df)) + 1.0).float())

    def fit_logistic(self, batches, y: torch.Tensor, c: float = 10.0, max_iter: int = 200) -> None:
        """Fit the weights alone, as a logistic regression on the TF-IDF features: minimise the mean log loss over
        the training texts (batches of (ids (B, T), lengths (B,)), labels ``y`` (N,)) plus ``|W|^2 / (2 c N)``
        (scikit-learn's ``C = c``), full batch, L-BFGS. After :meth:`fit_idf`; the bias is not penalised."""
        rows, cols, vals, n = [], [], [], 0
        with torch.no_grad():
            for ids, lengths in batches:
                row, f = self.features(ids, lengths)
                w = self.idf[f]
                norm = torch.zeros(len(ids)).index_add_(0, row, w * w).sqrt().clamp_min(1e-12)
                rows.append(row + n), cols.append(f), vals.append(w / norm[row])
                n += len(ids)
        X = torch.sparse_coo_tensor(torch.stack([torch.cat(rows), torch.cat(cols)]), torch.cat(vals),
                                    (n, self.weight.shape[0]), check_invariants=True).coalesce()
        W = torch.zeros_like(self.weight, requires_grad=True)
        b = torch.zeros_like(self.bias, requires_grad=True)
        opt = torch.optim.LBFGS([W, b], lr=1.0, max_iter=max_iter, tolerance_grad=1e-6, history_size=20,
                                line_search_fn="strong_wolfe")
        binary = W.shape[1] == 1

        def closure() -> torch.Tensor:
            opt.zero_grad()
            z = torch.sparse.mm(X, W) + b
            loss = (nn.functional.binary_cross_entropy_with_logits(z[:, 0], y.float()) if binary else
                    nn.functional.cross_entropy(z, y)) + (W * W).sum() / (2 * c * n)
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            self.weight.copy_(W), self.bias.copy_(b)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        row, f = self.features(ids, lengths)
        w = self.idf[f]
        norm = torch.zeros(ids.shape[0], device=w.device).index_add_(0, row, w * w).sqrt().clamp_min(1e-12)
        out = torch.zeros(ids.shape[0], self.weight.shape[1], device=w.device, dtype=self.weight.dtype)
        return out.index_add_(0, row, (w / norm[row])[:, None] * self.weight[f]) + self.bias


class TextClassifier(nn.Module):
    """ids (B, T) int64 with lengths (B,) -> logits (B, K), or (B,) for two classes (one sigmoid logit).
    With ``model.ngrams`` the logits are the recurrent model's plus an :class:`NgramBag`'s."""

    def __init__(self, m: TextModelConfig, vocab_size: int, num_classes: int) -> None:
        super().__init__()
        self.pooling, self.directions = m.pooling, 2 if m.bidirectional else 1
        self.binary, self.packed = num_classes == 2, m.packed or m.bidirectional
        self.embedding = nn.Embedding(vocab_size, m.embedding_dim, padding_idx=0)
        self.emb_drop = Dropout(m.embedding_dropout)
        self.rnn = make_rnn(m, m.embedding_dim)
        width = self.directions * m.hidden_size
        self.attention = nn.Linear(width, 1) if m.pooling == "attention" else None
        self.drop = Dropout(m.head_dropout)
        self.head = nn.Linear(width * (2 if m.pooling == "meanmax" else 1), 1 if self.binary else num_classes)
        self.bag = NgramBag(vocab_size, 1 if self.binary else num_classes, m.ngrams, m.ngram_buckets) \
            if m.ngrams else None

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        logits = self.forward_embedded(self.embedding(ids), lengths)
        if self.bag is None:
            return logits
        n = lengths if lengths is not None else torch.full((ids.shape[0],), ids.shape[1], dtype=torch.int64)
        wide = self.bag(ids, n)
        return logits + (wide.squeeze(-1) if self.binary else wide)

    def forward_embedded(self, emb: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """emb (B, T, E) -> logits; the entry point of integrated gradients."""
        masked = lengths is not None and not self.packed  # padded steps computed, then ignored (one direction)
        out, state = self.rnn(self.emb_drop(emb), lengths=None if masked else lengths)  # out (B, T, dirs*H)
        if self.pooling == "last" and masked:
            feats = out[torch.arange(out.shape[0]), lengths.to(out.device) - 1]  # output at each last real step
        elif self.pooling == "last":
            h = state[0] if isinstance(state, tuple) else state  # (layers*dirs, B, H)
            feats = torch.cat(list(h[-self.directions :]), dim=-1)
        else:
            b, t = out.shape[:2]
            n = lengths.to(out.device) if lengths is not None else torch.full((b,), t, device=out.device)
            valid = torch.arange(t, device=out.device)[None, :] < n[:, None]  # (B, T)
            if self.pooling == "mean":
                feats = out.masked_fill(~valid[..., None], 0.0).sum(1) / n[:, None].to(out.dtype)
            elif self.pooling in ("max", "meanmax"):
                feats = out.masked_fill(~valid[..., None], float("-inf")).amax(1)
                if self.pooling == "meanmax":
                    mean = out.masked_fill(~valid[..., None], 0.0).sum(1) / n[:, None].to(out.dtype)
                    feats = torch.cat([mean, feats], -1)
            else:
                w = self.attention(out).squeeze(-1).masked_fill(~valid, float("-inf")).softmax(-1)  # (B, T)
                feats = (w[..., None] * out).sum(1)
        logits = self.head(self.drop(feats))
        return logits.squeeze(-1) if self.binary else logits


@dataclass
class Batch:
    x: torch.Tensor  # (B, T) int64
    lengths: torch.Tensor  # (B,) int64, on the CPU
    y: torch.Tensor  # (B,) int64


def roc_auc(score: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties count half); NaN when a class is absent."""
    n_pos, n = int(positive.sum()), len(score)
    if n_pos == 0 or n_pos == n:
        return float("nan")
    ranks = np.empty(n)
    ranks[np.argsort(score, kind="stable")] = np.arange(1, n + 1)
    _, inv, counts = np.unique(score, return_inverse=True, return_counts=True)
    ranks = (np.bincount(inv, weights=ranks) / counts)[inv]  # average rank of tied scores
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * (n - n_pos)))


def text_metrics(y: np.ndarray, probs: np.ndarray) -> dict:
    """Accuracy, F1, macro-F1, ROC-AUC and the confusion matrix of probabilities (N, K) for labels (N,)."""
    k = probs.shape[1]
    cm = confusion_matrix(y, probs.argmax(1), k) if len(y) else np.zeros((k, k), np.int64)
    base = classification_metrics(cm)
    if k == 2:
        tp, fp, fn = cm[1, 1], cm[0, 1], cm[1, 0]
        f1 = float(2 * tp / (2 * tp + fp + fn)) if tp + fp + fn else 0.0
        auc = roc_auc(probs[:, 1], y == 1)
    else:
        f1 = base["macro_f1"]
        aucs = [roc_auc(probs[:, c], y == c) for c in range(k)]
        aucs = [a for a in aucs if not math.isnan(a)]
        auc = float(np.mean(aucs)) if aucs else float("nan")
    return {**base, "f1": f1, "roc_auc": auc, "confusion_matrix": cm.tolist()}


def _ordered_classes(labels: list[str], positive: str | None) -> list[str]:
    names = sorted(set(labels), key=lambda s: (0, int(s), "") if s.lstrip("-").isdigit() else (1, 0, s))
    if positive is not None:
        if positive not in names:
            raise ConfigError(f"data.positive_label: '{positive}' is not a label of the data ({', '.join(names)})")
        if len(names) != 2:
            raise ConfigError("data.positive_label only applies to two classes; remove it")
        names = [n for n in names if n != positive] + [positive]
    return names


@register_task("text_classification")
class TextClassification(Task):
    verbs = ("explain", "text")
    model_config = TextModelConfig
    data_config = TextDataConfig
    metrics = ("loss", "accuracy", "f1", "macro_f1", "roc_auc")
    running_metric = "accuracy"

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        d = cfg.data
        self.tokenizer = Tokenizer(d.level, d.lower, "drop" if d.source == "imdb-npz" else d.punctuation)
        self.vocab = Vocabulary(["<pad>", "<oov>"])
        self.classes: list[str] = []
        self.weights: list[float] | None = None

    # ---- data ------------------------------------------------------------------------------------------
    def _load(self) -> tuple[TextData, TextData | None, tuple | None]:
        """(train, test or None, token ids (train, test) or None) of the configured source; a source of
        pre-tokenized texts (imdb-npz) brings its own vocabulary."""
        from rnnkit.data.sources import load_part

        d = self.cfg.data
        train, test = load_part("text", d, "train"), load_part("text", d, "test")
        if getattr(train, "vocab", None) is not None:
            self.vocab = train.vocab
            return train, test, (train.ids, test.ids if test is not None else None)
        return train, test, None

    def setup(self) -> None:
        from rnnkit.data import DataError

        t = self.cfg.training
        d, seed = self.cfg.data, t.seed if t.split_seed is None else t.split_seed
        train, test, ids = self._load()
        tr_ids, te_ids = ids if ids is not None else (None, None)
        n = len(train) if d.limit is None else min(d.limit, len(train))
        order = np.arange(n)
        parts: dict[str, tuple[TextData, list | None, np.ndarray]] = {}
        if test is None and d.test_fraction > 0:
            perm = np.random.default_rng(seed).permutation(order)
            cut = int(round(len(perm) * d.test_fraction))
            parts["test"], order = (train, tr_ids, np.sort(perm[:cut])), np.sort(perm[cut:])
        elif test is not None:
            parts["test"] = (test, te_ids, np.arange(len(test)))
        if d.val_path:
            from rnnkit.data.sources import load_part

            val = load_part("text", d, "val")
            parts["val"] = (val, None, np.arange(len(val)))
        elif d.val_fraction > 0:
            perm = np.random.default_rng(seed + 1).permutation(order)
            cut = int(round(len(perm) * d.val_fraction))
            parts["val"], order = (train, tr_ids, np.sort(perm[:cut])), np.sort(perm[cut:])
        parts["train"] = (train, tr_ids, order)
        if len(order) == 0:
            raise DataError("the training split is empty; give more data or lower data.val_fraction/test_fraction")
        self.classes = _ordered_classes([train.labels[i] for i in order], d.positive_label)
        if len(self.classes) < 2:
            raise DataError("the training labels hold a single class; classification needs at least 2")
        if ids is None:  # fit the vocabulary on the training split only
            tokens = [self.tokenizer(train.texts[i]) for i in order]
            self.vocab = Vocabulary.build(tokens, d.num_words, d.min_freq)
            if len(self.vocab) <= 2:  # <pad> and <oov> only: every text would read as unknown words
                raise DataError(f"data.min_freq {d.min_freq} leaves no token in the vocabulary (none appears that "
                                f"often in the {len(order)} training texts); lower data.min_freq")
        self.splits, self.texts = {}, {}
        for name in ("train", "val", "test"):
            if name in parts:
                data, pre, idx = parts[name]
                sub = TextData([data.texts[i] for i in idx], [data.labels[i] for i in idx])
                self.texts[name] = sub.texts  # the baselines read the raw texts
                self.splits[name] = self.encode(sub, name, True, None if pre is None else [pre[i] for i in idx])
        counts = np.bincount(self.splits["train"].y.numpy(), minlength=len(self.classes))
        m = self.cfg.model
        if m.class_weights is not None:
            if len(m.class_weights) != len(self.classes):
                raise ConfigError(f"model.class_weights has {len(m.class_weights)} values but the data has "
                                  f"{len(self.classes)} classes ({', '.join(self.classes)})")
            self.weights = [float(w) for w in m.class_weights]
        elif m.balance_classes:
            self.weights = [float(counts.sum() / (len(counts) * max(c, 1))) for c in counts]

    def encode(self, data: TextData, where: str = "input", labels: bool = True,
               ids: list[list[int]] | None = None) -> Corpus:
        """TextData (or pre-encoded ``ids``) -> Corpus, truncated like training; ``raw_lengths`` holds the
        token counts before truncation (prediction reports them)."""
        from rnnkit.data import DataError

        d = self.cfg.data
        if ids is None:
            ids = [self.vocab.encode(self.tokenizer(safe_text(t))) for t in data.texts]
        y = None
        if labels:
            if data.labels is None:
                raise DataError(f"{where} has no labels; give a file with a '{d.label_column}' column")
            index = {c: i for i, c in enumerate(self.classes)}
            unknown = sorted({lab for lab in data.labels if lab not in index})
            if unknown:
                raise DataError(f"{where} has label(s) {', '.join(unknown[:5])} that the model does not know "
                                f"({', '.join(self.classes)}); relabel the data")
            y = [index[lab] for lab in data.labels]
        if d.truncating == "chunk" and d.max_length is not None:
            windows = [chunks(s, d.max_length) for s in ids]
            doc = [i for i, w in enumerate(windows) for _ in w]
            flat = [c for w in windows for c in w]
            corpus = Corpus.from_ids(flat, None if y is None else [y[i] for i in doc], oov=self.vocab.oov)
            corpus.raw_lengths = corpus.lengths.clone()  # no window is truncated
            corpus.doc = torch.tensor(doc, dtype=torch.int64)
            corpus.doc_lengths = torch.tensor([len(s) for s in ids], dtype=torch.int64)
            return corpus
        corpus = Corpus.from_ids(ids, y, max_length=d.max_length, truncating=d.truncating, oov=self.vocab.oov)
        corpus.raw_lengths = torch.tensor([len(s) for s in ids], dtype=torch.int64)
        return corpus

    @staticmethod
    def documents(data: Corpus, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-row probabilities -> (per-document probabilities (D, K): the mean over each document's windows,
        per-document labels (D,)); the rows themselves without chunking."""
        if data.doc is None:
            return probs, data.y.numpy()
        doc = data.doc.numpy()
        n = np.bincount(doc)
        out = np.zeros((len(n), probs.shape[1]))
        np.add.at(out, doc, probs)
        y = np.zeros(len(n), np.int64)
        y[doc] = data.y.numpy()
        return out / n[:, None], y

    def as_input(self, data, where: str = "input", labels: bool = True) -> Corpus:
        """A path (CSV/TSV/JSONL file, a folder of ``<class>/*.txt``, or any other file as one text per line),
        a TextData or a list of strings -> Corpus. ``labels=False``: labels are not read."""
        from rnnkit.data import DataError
        from rnnkit.data.text import load_folder, load_table, read_lines

        d = self.cfg.data
        if isinstance(data, Corpus):
            return data
        if isinstance(data, str | Path):
            path, where = Path(data), str(data)
            if path.is_dir():
                data = load_folder(path)
            elif not path.is_file():
                raise DataError(f"file not found: {path}; check the path")
            elif path.suffix in (".csv", ".tsv", ".jsonl", ".ndjson"):
                data = load_table(path, d.text_column, d.label_column if labels else None,
                                  "\t" if path.suffix == ".tsv" else None)
            elif labels:
                raise DataError(f"{path} has no labels; give a CSV/TSV/JSONL file with '{d.text_column}' and "
                                f"'{d.label_column}' columns, or a folder of <class>/*.txt")
            else:
                data = TextData(read_lines(path), None)
        elif isinstance(data, list | tuple):
            data = TextData([safe_text(t) for t in data], None)
        elif not isinstance(data, TextData):
            raise DataError(f"{where}: give texts as a list of strings, a TextData or a file path, not "
                            f"{type(data).__name__}")
        return self.encode(data, where, labels)

    def state(self) -> dict:
        d = self.cfg.data
        return {"classes": self.classes, "tokenizer": self.tokenizer.to_dict(), "vocab": self.vocab.to_dict(),
                "max_length": d.max_length, "truncating": d.truncating, "class_weights": self.weights}

    def load_state(self, state: dict) -> None:
        self.classes, self.weights = state["classes"], state["class_weights"]
        self.tokenizer = Tokenizer(**state["tokenizer"])
        self.vocab = Vocabulary.from_dict(state["vocab"])
        self.cfg.data.max_length, self.cfg.data.truncating = state["max_length"], state["truncating"]

    def summary(self) -> dict:
        tr = self.splits.get("train")
        out = {"splits": {k: len(v) for k, v in self.splits.items()}, "classes": self.classes,
               "vocabulary": len(self.vocab), "tokenizer": self.tokenizer.to_dict(),
               "max_length": self.cfg.data.max_length, "class_weights": self.weights}
        if tr is not None:
            out["train_class_counts"] = np.bincount(tr.y.numpy(), minlength=len(self.classes)).tolist()
            out["mean_tokens"] = round(float(tr.raw_lengths.float().mean()), 1)
            out["truncated_fraction"] = round(float((tr.raw_lengths > tr.lengths).float().mean()), 4)
        return out

    # ---- model and training ----------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        m = self.cfg.model
        model = TextClassifier(m, len(self.vocab), len(self.classes))
        if m.freeze_embeddings:
            model.embedding.weight.requires_grad_(False)
        return model

    def initialize(self, model: nn.Module) -> None:
        """A run from scratch: the pretrained vectors, the bag's idf and (``ngrams_prefit``) its logistic regression,
        all from the training split; loaded weights bring their own."""
        m = self.cfg.model
        if m.pretrained is not None:
            from rnnkit.data.text import load_glove

            weights, _ = load_glove(m.pretrained, self.vocab, m.embedding_dim)
            model.embedding.weight.data.copy_(weights)
        if model.bag is not None:
            train = self.splits["train"]
            model.bag.fit_idf(train.batch(idx) for idx in torch.arange(len(train)).split(512))
            if m.ngrams_prefit:
                model.bag.fit_logistic((train.batch(idx) for idx in torch.arange(len(train)).split(512)), train.y)

    def train_batches(self, epoch: int, start: int, rank: int, world: int):
        from rnnkit.data.text import bucket_batches

        t, d, train = self.cfg.training, self.cfg.data, self.splits["train"]
        if d.bucketing:
            batches = bucket_batches(train.lengths, t.batch_size, t.seed, epoch, d.bucket_size, rank, world)
        else:
            batches = batch_indices(len(train), t.batch_size, t.seed, epoch, rank, world)
        for idx in batches[start:]:
            yield self.make_batch(train, idx)

    def make_batch(self, data: Corpus, idx: torch.Tensor) -> Batch:
        x, lengths = data.batch(idx)
        return Batch(x, lengths, data.y[idx])

    def export_spec(self, model: nn.Module, data: Corpus | None) -> ExportSpec:
        if getattr(model, "bag", None) is not None:
            from rnnkit.errors import ExportError

            raise ExportError("a model with model.ngrams does not export (its n-gram bag is built with "
                              "torch.unique); use the run through rnnkit.load / rnnkit predict instead")
        if data is not None and len(data):
            b = self.make_batch(data, torch.arange(min(8, len(data))))
            ids, lengths = b.x, b.lengths
        else:
            g = torch.Generator().manual_seed(0)
            ids, lengths = torch.randint(2, len(self.vocab), (4, 16), generator=g), torch.tensor([16, 3, 9, 1])
        out = "one logit (batch,) for the second class" if len(self.classes) == 2 else "logits (batch, classes)"
        return ExportSpec(model, (ids, lengths.to(torch.int64)), ["ids", "lengths"], ["logits"],
                          {"ids": {0: "batch", 1: "time"}, "lengths": {0: "batch"}},
                          f"ids (batch, time) int64 token ids from the run's vocabulary (0 pads), lengths (batch,) "
                          f"int64 -> {out}; classes in order {list(self.classes)}")

    def loss_sum(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        w = None if self.weights is None else torch.tensor(self.weights, device=logits.device)
        if logits.dim() == 1:
            loss = F.binary_cross_entropy_with_logits(logits, y.float(), reduction="none")
            return (loss * w[y]).sum() if w is not None else loss.sum()
        return F.cross_entropy(logits, y, weight=w, reduction="sum")

    def step(self, model: nn.Module, batch: Batch, device: torch.device) -> StepResult:
        logits = model(batch.x.to(device, non_blocking=True), batch.lengths).float()
        y = batch.y.to(device, non_blocking=True)
        pred = (logits > 0).long() if logits.dim() == 1 else logits.argmax(-1)
        return StepResult(self.loss_sum(logits, y), len(y), {"accuracy": float((pred == y).sum())})

    # ---- evaluation and prediction ---------------------------------------------------------------------
    @torch.no_grad()
    def probabilities(self, model: nn.Module, data: Corpus, device: torch.device) -> tuple[float, np.ndarray]:
        """(summed loss, probabilities (N, K)) in the order of ``data``; batches run longest-first."""
        model.eval()
        order = torch.argsort(data.lengths, descending=True, stable=True)
        bs, loss, probs = self.cfg.training.eval_batch_size, 0.0, torch.zeros(len(data), len(self.classes))
        for i in range(0, len(data), bs):
            idx = order[i : i + bs]
            b = self.make_batch(data, idx)
            logits = model(b.x.to(device), b.lengths).float()
            loss += float(self.loss_sum(logits, b.y.to(device)))
            if logits.dim() == 1:
                p1 = torch.sigmoid(logits).cpu()
                probs[idx] = torch.stack([1 - p1, p1], 1)
            else:
                probs[idx] = logits.softmax(-1).cpu()
        return loss, probs.numpy()

    def evaluate(self, model: nn.Module, data: Corpus, device: torch.device) -> dict:
        loss, probs = self.probabilities(model, data, device)
        if data.doc is not None:  # one prediction per document: the mean of its windows' probabilities
            probs, y = self.documents(data, probs)
            loss = float(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, None)).sum())
        else:
            y = data.y.numpy()
        return {"loss": loss / max(len(y), 1), **text_metrics(y, probs), "count": len(y)}

    def predict(self, model: nn.Module, data: Corpus, device: torch.device) -> list[dict]:
        """One record per text: index, predicted class, its probability, every class's probability, the
        number of tokens and whether the text was truncated to ``data.max_length``."""
        _, probs = self.probabilities(model, data, device)
        raw = data.raw_lengths if getattr(data, "raw_lengths", None) is not None else data.lengths
        if data.doc is not None:  # documents, not windows
            probs, _ = self.documents(data, probs)
            raw = data.doc_lengths
            shown = torch.zeros(len(raw), dtype=torch.int64)  # nothing is dropped
        else:
            shown = data.lengths
        out = []
        for i, p in enumerate(probs.tolist()):
            c = int(np.argmax(p))
            rec = {"index": i, "predicted": self.classes[c], "probability": round(p[c], 6)}
            rec.update({f"p_{name}": round(v, 6) for name, v in zip(self.classes, p, strict=True)})
            rec["tokens"], rec["truncated"] = int(raw[i]), bool(data.doc is None and raw[i] > shown[i])
            out.append(rec)
        return out

    def combine(self, outputs: list) -> torch.Tensor:  # noqa: D102 - see Objective.combine
        from rnnkit.training.ensemble import mean_probabilities, mean_sigmoid

        return mean_sigmoid(outputs) if len(self.classes) == 2 else mean_probabilities(outputs)

    def finalize_metrics(self, metrics: dict) -> dict:
        """Add the baselines (majority, TF-IDF + logistic regression), fitted on the training texts and scored on
        the test split, and judge the model against them."""
        from rnnkit.tasks import baselines

        train, test = self.splits.get("train"), self.splits.get("test")
        if not self.cfg.training.baselines or train is None or test is None or "test" not in metrics:
            return metrics
        texts = {k: self.texts.get(k) if any(self.texts.get(k) or []) else self._decoded(self.splits[k])
                 for k in ("train", "test")}  # pre-tokenized sources (imdb-npz) have ids only
        labels = {k: self.documents(c, np.zeros((len(c), 1)))[1] for k, c in (("train", train), ("test", test))}
        base, skip = baselines.text_baselines(texts["train"], labels["train"], texts["test"], labels["test"])
        metrics["baselines"] = base
        if skip:
            metrics["baselines_skipped"] = skip
        return baselines.judge(metrics, "accuracy", True, "accuracy")

    def _decoded(self, c: Corpus) -> list[str]:
        tok, off = c.tokens.tolist(), c.offsets.tolist()
        return [" ".join(self.vocab.decode(tok[off[i]: off[i] + int(n)])) for i, n in enumerate(c.lengths.tolist())]

    def report_sections(self, run_dir: Path, metrics: dict, model: nn.Module | None = None) -> list:
        """Baselines, confusion matrix and a few test texts explained; also writes ``tokenizer.json``."""
        from rnnkit.report import Section, confusion_section
        from rnnkit.tasks import baselines

        (run_dir / "tokenizer.json").write_text(json.dumps(
            {"tokenizer": self.tokenizer.to_dict(), "max_length": self.cfg.data.max_length,
             "truncating": self.cfg.data.truncating, "classes": self.classes, **self.vocab.to_dict()}) + "\n")
        split = "test" if "test" in metrics else "val"
        out = [s for s in (baselines.section(metrics, "accuracy", True, "accuracy"),) if s is not None]
        cm = metrics.get(split, {}).get("confusion_matrix")
        if cm:
            out.append(confusion_section(np.asarray(cm), self.classes, split))
        data = self.splits.get(split)
        if data is not None and len(data) and (run_dir / "members").is_dir():  # an ensemble's run folder
            out.append(Section("Explanations", "<p>An ensemble has no single embedding to explain; explain a member "
                               "instead: <code>rnnkit explain RUN/members/0 --text ...</code>.</p>"))
        elif data is not None and len(data):
            from rnnkit.explain import explain_corpus, heatmap_html

            if model is None:  # a report rebuilt from the folder: the best checkpoint's weights
                from rnnkit.training import checkpoint as ckpt

                where = run_dir / "checkpoints" / "best"
                files = ckpt.read_checkpoint(where if where.exists() else run_dir / "checkpoints" / "last")
                model = self.build_model()
                model.load_state_dict(ckpt.tensors_from_bytes(files["model.safetensors"]))
            idx = list(range(min(4, len(data))))
            exps = explain_corpus(self, model, data, idx, steps=32)
            body = "".join(heatmap_html(e, f"{split} text {i} (true: {self.classes[int(data.y[i])]})")
                           for i, e in zip(idx, exps, strict=True))
            out.append(Section(f"Explanations ({split} texts, integrated gradients)", body))
        return out


__all__ = ["Batch", "NgramBag", "TextClassification", "TextClassifier", "TextDataConfig", "TextModelConfig", "roc_auc",
           "text_metrics"]
