"""Text for recurrent models: cleaning, tokenizing, a capped vocabulary, truncation, length bucketing.

    tok = Tokenizer(level="word")                       # lower-case, HTML removed, punctuation split
    vocab = Vocabulary.build(map(tok, texts), num_words=10000, min_freq=2)
    ids = vocab.encode(tok("A <br /> great film!"))     # [id("a"), id("great"), id("film"), id("!")]
    corpus = Corpus.from_ids([...], max_length=200, truncating="pre")
    for idx in bucket_batches(corpus.lengths, 32, seed=0, epoch=0): ...
    x, lengths = corpus.batch(idx)                      # (B, T_batch) int64 padded with 0, (B,) int64

Index 0 is always padding (``<pad>``) and unknown tokens map to ``<oov>``; ``num_words`` counts every
index, specials included, so ``Embedding(num_words, dim)`` is the matching layer (Keras' ``num_words``).
Tokenizer and vocabulary round-trip through JSON (:meth:`Vocabulary.to_dict`), which is what a run folder
keeps so that prediction encodes new text exactly as training did.

Loaders return :class:`TextData` (raw texts and integer labels): CSV/TSV/JSONL files with a text and a
label column, and a folder holding one sub-folder of ``.txt`` files per class. Standard library only.
"""

from __future__ import annotations

import csv
import html
import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rnnkit.data.errors import DataError, not_utf8
from rnnkit.data.sources import register_source

PAD, OOV = "<pad>", "<oov>"

_TAG = re.compile(r"<[^>]{0,200}>")  # HTML tags such as <br /> or <i>
_SPACE = re.compile(r"\s+")
_WORD_PUNCT = re.compile(r"\w+(?:'\w+)*|[^\w\s]")  # words (don't, it's) and single punctuation marks
_WORD = re.compile(r"\w+(?:'\w+)*")


def clean(text: str) -> str:
    """Drop HTML tags, decode entities (``&amp;`` -> ``&``) and collapse whitespace."""
    return _SPACE.sub(" ", html.unescape(_TAG.sub(" ", text))).strip()


@dataclass
class Tokenizer:
    """Text -> tokens. ``level``: "word" or "char"; ``punctuation``: "split" (one token per mark) or
    "drop"; ``lower``: lower-case first. Calling it returns a list of strings."""

    level: str = "word"
    lower: bool = True
    punctuation: str = "split"

    def __post_init__(self) -> None:
        if self.level not in ("word", "char"):
            raise DataError(f"tokenizer level '{self.level}' is not one of word, char")
        if self.punctuation not in ("split", "drop"):
            raise DataError(f"tokenizer punctuation '{self.punctuation}' is not one of split, drop")

    def __call__(self, text: str) -> list[str]:
        text = clean(text)
        if self.lower:
            text = text.lower()
        if self.level == "char":
            return list(text)
        return (_WORD_PUNCT if self.punctuation == "split" else _WORD).findall(text)

    def to_dict(self) -> dict:
        return {"level": self.level, "lower": self.lower, "punctuation": self.punctuation}


@dataclass
class Vocabulary:
    """Token <-> index. ``itos[0]`` is padding; ``oov`` is the index of unknown tokens; ``bos``, when set,
    is prepended to every encoded text (Keras' pre-indexed IMDB starts each review with index 1)."""

    itos: list[str]
    oov: int = 1
    bos: int | None = None
    stoi: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.stoi = {t: i for i, t in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    @classmethod
    def build(cls, token_lists: Iterable[Sequence[str]], num_words: int | None = None,
              min_freq: int = 1) -> Vocabulary:
        """The most frequent tokens (ties broken alphabetically) seen at least ``min_freq`` times, capped
        so that the vocabulary, ``<pad>`` and ``<oov>`` included, holds at most ``num_words`` entries."""
        counts: Counter[str] = Counter()
        for tokens in token_lists:
            counts.update(tokens)
        ranked = sorted((t for t, c in counts.items() if c >= min_freq), key=lambda t: (-counts[t], t))
        if num_words is not None:
            ranked = ranked[: max(num_words - 2, 0)]
        return cls([PAD, OOV, *ranked], oov=1)

    def encode(self, tokens: Sequence[str]) -> list[int]:
        ids = [self.stoi.get(t, self.oov) for t in tokens]
        return ids if self.bos is None else [self.bos, *ids]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.itos[i] if 0 <= i < len(self.itos) else OOV for i in ids]

    def to_dict(self) -> dict:
        return {"itos": self.itos, "oov": self.oov, "bos": self.bos}

    @classmethod
    def from_dict(cls, d: dict) -> Vocabulary:
        return cls(list(d["itos"]), oov=int(d["oov"]), bos=d.get("bos"))


def truncate(ids: Sequence[int], max_length: int | None, mode: str = "pre") -> list[int]:
    """Keep at most ``max_length`` ids: ``pre`` drops from the start (keeps the end, Keras' default),
    ``post`` drops from the end (``chunk``, which keeps everything in windows, shows the start here)."""
    ids = list(ids)
    if max_length is None or len(ids) <= max_length:
        return ids
    return ids[-max_length:] if mode == "pre" else ids[:max_length]


def chunks(ids: Sequence[int], max_length: int) -> list[list[int]]:
    """A text's ids in windows of ``max_length``: consecutive, the last one ending at the text's end (so it may
    overlap the one before); a text that fits is one window."""
    ids = list(ids)
    if len(ids) <= max_length:
        return [ids]
    starts = list(range(0, len(ids) - max_length, max_length)) + [len(ids) - max_length]
    return [ids[s: s + max_length] for s in starts]


# ---- encoded corpora and batches -----------------------------------------------------------------------


@dataclass
class Corpus:
    """Encoded texts stored flat: ``tokens`` (sum of lengths,) int32, ``offsets`` (N + 1,) int64,
    ``lengths`` (N,) int64 (every length >= 1: an empty text is one ``<oov>``), ``y`` (N,) int64."""


    tokens: torch.Tensor
    offsets: torch.Tensor
    lengths: torch.Tensor
    y: torch.Tensor
    raw_lengths: torch.Tensor | None = None  # (N,) token counts before truncation, when known
    doc: torch.Tensor | None = None  # (N,) with chunking: the document each row (a window) comes from
    doc_lengths: torch.Tensor | None = None  # (documents,) with chunking: each document's token count

    def __len__(self) -> int:
        return len(self.lengths)

    @classmethod
    def from_ids(cls, seqs: Sequence[Sequence[int]], y: Sequence[int] | np.ndarray | None = None, *,
                 max_length: int | None = None, truncating: str = "pre", oov: int = 1) -> Corpus:
        seqs = [truncate(s, max_length, truncating) or [oov] for s in seqs]
        lengths = torch.tensor([len(s) for s in seqs], dtype=torch.int64)
        offsets = torch.zeros(len(seqs) + 1, dtype=torch.int64)
        offsets[1:] = torch.cumsum(lengths, 0)
        flat = np.fromiter((i for s in seqs for i in s), dtype=np.int32, count=int(offsets[-1]))
        labels = torch.zeros(len(seqs), dtype=torch.int64) if y is None else torch.as_tensor(np.asarray(y, np.int64))
        return cls(torch.from_numpy(flat), offsets, lengths, labels)

    def ids(self, i: int) -> list[int]:
        return self.tokens[self.offsets[i] : self.offsets[i + 1]].tolist()

    def batch(self, idx: torch.Tensor, pad_to: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows ``idx`` -> (x (B, T) int64 padded with 0 at the end, lengths (B,)); T is the longest row,
        or ``pad_to`` when given (pad-to-maximum batching)."""
        lengths = self.lengths[idx]
        x = torch.zeros(len(idx), pad_to or int(lengths.max()), dtype=torch.int64)
        for row, (i, n) in enumerate(zip(idx.tolist(), lengths.tolist(), strict=True)):
            start = int(self.offsets[i])
            x[row, :n] = self.tokens[start : start + n]
        return x, lengths

    def subset(self, idx: Sequence[int] | np.ndarray) -> Corpus:
        idx = np.asarray(idx, dtype=np.int64)
        return Corpus.from_ids([self.ids(int(i)) for i in idx], self.y[torch.from_numpy(idx)].numpy())


def bucket_batches(lengths: torch.Tensor, batch_size: int, seed: int, epoch: int, bucket: int = 50,
                   rank: int = 0, world: int = 1) -> list[torch.Tensor]:
    """One epoch's batches of indices grouped by length, a pure function of ``(seed, epoch)``.

    Draw a seeded permutation, cut it into chunks of ``bucket`` batches, sort each chunk by length and cut
    it into batches, then shuffle the batches. Batches hold texts of similar length (little padding) while
    each epoch still mixes the data differently. The batch count equals plain shuffling's; with ``world``
    processes each batch is split ``rank::world`` as :func:`rnnkit.tasks.base.batch_indices` does.
    """
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(len(lengths), generator=g)
    chunk = batch_size * bucket
    batches: list[torch.Tensor] = []
    for c in range(0, len(perm), chunk):
        part = perm[c : c + chunk]
        part = part[torch.argsort(lengths[part], descending=True, stable=True)]
        batches += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
    batches = [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]
    if world > 1:
        batches = [b[rank::world] for b in batches if len(b) >= world]
    return batches


# ---- labelled text sources -----------------------------------------------------------------------------


@dataclass
class TextData:
    """Raw texts with labels as strings (``None`` when a source has no labels)."""

    texts: list[str]
    labels: list[str] | None

    def __len__(self) -> int:
        return len(self.texts)


def _label(value: object) -> str:
    return str(value).strip() if value is not None else ""


def load_table(path: str | Path, text_column: str = "text", label_column: str | None = "label",
               delimiter: str | None = None) -> TextData:
    """A CSV (``,``), TSV (``\\t``, by suffix ``.tsv``) or JSONL file (one JSON object per line) with a
    text column and a label column (``label_column=None``: labels not read)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"file not found: {path}; check the path")
    rows: list[dict] = []
    try:
        with open(path, encoding="utf-8", newline="") as f:
            if path.suffix in (".jsonl", ".ndjson"):
                for n, line in enumerate(f, 1):
                    if line.strip():
                        try:
                            rows.append(json.loads(line))
                        except json.JSONDecodeError as e:
                            raise DataError(f"{path} line {n} is not valid JSON ({e.msg}); give one JSON object "
                                            "per line") from None
            else:
                sep = delimiter or ("\t" if path.suffix in (".tsv", ".tab") else ",")
                rows = list(csv.DictReader(f, delimiter=sep))
    except UnicodeDecodeError:
        raise not_utf8(path) from None
    except csv.Error as e:
        raise DataError(f"{path} is not a valid CSV/TSV file ({e}); check the quoting") from None
    if not rows:
        raise DataError(f"{path} holds no rows; give a file with a header line and one text per row")
    if not all(isinstance(r, dict) for r in rows):
        raise DataError(f"{path}: every JSONL line must be an object such as {{\"text\": ..., \"label\": ...}}")
    cols = list(rows[0])
    for key, what in ((text_column, "data.text_column"), (label_column, "data.label_column")):
        if key is not None and key not in cols:
            raise DataError(f"{path} has no column '{key}' (columns: {', '.join(map(str, cols))}); set {what}")
    texts = [str(r.get(text_column) or "") for r in rows]
    labels = [_label(r.get(label_column)) for r in rows] if label_column is not None else None
    if labels is not None:
        empty = next((i for i, v in enumerate(labels) if v == ""), None)
        if empty is not None:
            line = empty + (1 if path.suffix in (".jsonl", ".ndjson") else 2)  # the header is line 1 of a CSV
            raise DataError(f"{path} row {empty + 1} (line {line}) has no label in column '{label_column}'; fill "
                            "it in or drop the row")
    return TextData(texts, labels)


def load_folder(path: str | Path, classes: Sequence[str] | None = None) -> TextData:
    """``path/<class>/*.txt``: one sub-folder per class (all, or only ``classes``), one text per file,
    files in sorted order."""
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"folder not found: {path}; give a folder with one sub-folder of .txt files per class")
    texts, labels = [], []
    subs = [path / c for c in classes] if classes is not None else sorted(p for p in path.iterdir() if p.is_dir())
    for sub in subs:
        for f in sorted(sub.glob("*.txt")):
            texts.append(f.read_bytes().decode("utf-8", errors="replace"))
            labels.append(sub.name)
    if not texts:
        raise DataError(f"{path} has no <class>/*.txt files; give one sub-folder of .txt files per class")
    return TextData(texts, labels)


def read_lines(path: str | Path) -> list[str]:
    """One text per line (for prediction); a clear error instead of a crash on non-UTF-8 bytes."""
    raw = Path(path).read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(f"{path} line {line} is not valid UTF-8; re-save the file as UTF-8") from None
    return text.splitlines()


def load_glove(path: str | Path, vocab: Vocabulary, dim: int) -> tuple[torch.Tensor, int]:
    """Vectors in the GloVe text format (``word v1 v2 ... v_dim`` per line) for the tokens of ``vocab`` ->
    (weights (len(vocab), dim) float32, number of tokens found). Missing tokens get N(0, 0.1^2) rows
    (seeded), ``<pad>`` a zero row."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"pretrained vectors not found: {path}; set model.pretrained to a GloVe .txt file")
    g = torch.Generator().manual_seed(0)
    w = torch.randn(len(vocab), dim, generator=g) * 0.1
    w[0] = 0.0
    found = 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            word, _, rest = line.rstrip().partition(" ")
            i = vocab.stoi.get(word)
            if i is None or i == 0:
                continue
            values = rest.split(" ")
            if len(values) != dim:
                raise DataError(f"{path} line {n} has {len(values)} numbers but model.embedding_dim is {dim}; "
                                "set embedding_dim to the file's dimension")
            w[i] = torch.tensor([float(v) for v in values])
            found += 1
    return w, found


def safe_text(t: object) -> str:
    """Any input -> a valid str: undecodable bytes (lone surrogates from argv) become U+FFFD."""
    if t is None:
        return ""
    if isinstance(t, bytes):
        return t.decode("utf-8", errors="replace")
    t = str(t)
    try:
        t.encode("utf-8")
        return t
    except UnicodeEncodeError:
        try:
            return t.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        except UnicodeEncodeError:
            return t.encode("utf-8", "replace").decode("utf-8")


_PATHS = {"train": "path", "val": "val_path", "test": "test_path"}


def _table_source(delimiter: str | None):
    def load(d: Any, part: str) -> TextData | None:
        path = getattr(d, _PATHS[part])
        return None if path is None else load_table(path, d.text_column, d.label_column, delimiter)

    return load


for _name, _sep in (("csv", None), ("tsv", "\t"), ("jsonl", None)):
    register_source(_name, modality="text")(_table_source(_sep))


@register_source("folder", modality="text")
def folder_source(d: Any, part: str) -> TextData | None:
    """``path/<class>/*.txt``: one sub-folder per class, one text per file."""
    path = getattr(d, _PATHS[part])
    return None if path is None else load_folder(path)


__all__ = ["OOV", "PAD", "Corpus", "TextData", "Tokenizer", "Vocabulary", "bucket_batches", "clean", "load_folder",
           "load_glove", "load_table", "read_lines", "safe_text", "truncate"]
