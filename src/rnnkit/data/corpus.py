"""Text corpora for language models: files and folders, vocabularies, contiguous splits, parallel streams.

A corpus is a list of documents (one per file). :class:`Vocab` maps text to token ids, one character
(``level="char"``) or one word / punctuation mark / paragraph break (``level="word"``) per token, with id 0
reserved for tokens it has not seen. Encoded documents are concatenated into a :class:`TokenStream` that
remembers where each document starts, so truncated backpropagation through time can reset the recurrent
state there.

Splits are contiguous: :func:`split_tail` cuts the last fraction of every document off as one block (no
sample is ever interleaved with another split). :func:`stream_chunk` reads ``S`` parallel streams ``k``
tokens at a time::

    ids     a b c d | e f g h | i j k l        (| = where stream 0, 1, 2 start: positions p_s)
    chunk   x (S, k) = ids[p_s + t], y (S, k) = ids[p_s + t + 1], t < k   (indices modulo N)

Only the standard library and NumPy are imported here.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from rnnkit.data.errors import DataError
from rnnkit.data.sources import register_source

UNK = "<unk>"
UNK_CHAR = "\ufffd"  # how an unknown character decodes
# a paragraph break, a word (with inner apostrophes: don't, Bennet's), or one punctuation mark
WORD_RE = re.compile(r"\n[ \t]*\n\s*|[\w]+(?:['\u2019][\w]+)*|[^\w\s]")
PARAGRAPH = "\n\n"

#: embedded texts: name -> (file in ``rnnkit/data/embedded/``, description); provenance in its README.md
EMBEDDED_TEXTS = {
    "pride_and_prejudice": ("pride_and_prejudice.txt", "Jane Austen, Pride and Prejudice (1813), chapters 1-19, "
                                                       "191 KB, public domain"),
}


# ---- reading -------------------------------------------------------------------------------------------


def read_text(path: str | Path) -> str:
    """A UTF-8 text file with ``\\r\\n`` / ``\\r`` line ends made ``\\n``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"text file not found: {path}; check the path")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(f"{path} is not UTF-8 text (byte {e.start}, line {line}); convert it, e.g. "
                        f"iconv -f latin1 -t utf-8") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def text_files(path: str | Path, exclude: Iterable[str | Path] = ()) -> list[Path]:
    """``path`` itself if a file; if a folder, its ``*.txt`` files sorted by name, less ``exclude``."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(f"text file or folder not found: {path}; check the path")
    skip = {Path(p).resolve() for p in exclude}
    files = sorted(p for p in path.glob("*.txt") if p.is_file() and p.resolve() not in skip)
    if not files:
        raise DataError(f"{path} holds no .txt files (besides the test/validation files); give a folder of "
                        "UTF-8 .txt files or a file")
    return files


def read_documents(paths: Sequence[str | Path], exclude: Iterable[str | Path] = ()) -> list[tuple[str, str]]:
    """``[(name, text), ...]``: one document per file of the given files and folders, in order."""
    exclude = list(exclude)
    docs = [(f.name, read_text(f)) for p in paths for f in text_files(p, exclude)]
    empty = [name for name, text in docs if not text]
    if empty:
        raise DataError(f"empty text file: {empty[0]}; remove it from the data")
    return docs


def embedded_text(name: str) -> str:
    """The text of an embedded corpus (see ``EMBEDDED_TEXTS``)."""
    if name not in EMBEDDED_TEXTS:
        raise DataError(f"unknown embedded text {name!r}; use one of {', '.join(EMBEDDED_TEXTS)}")
    source = resources.files("rnnkit.data") / "embedded" / EMBEDDED_TEXTS[name][0]
    try:
        return source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"embedded text {name!r} is missing or damaged ({type(e).__name__}); "
                        "reinstall rnnkit") from None


# ---- vocabularies --------------------------------------------------------------------------------------


def tokenize(text: str, level: str) -> list[str]:
    """Characters, or words / punctuation marks / paragraph breaks (``"\\n\\n"``)."""
    if level == "char":
        return list(text)
    return [PARAGRAPH if m[0] == "\n" else m for m in WORD_RE.findall(text)]


@dataclass
class Vocab:
    """Tokens by id; id 0 is the unknown token. ``lowercase`` folds case before lookup."""

    tokens: list[str]
    level: str = "char"
    lowercase: bool = False

    def __post_init__(self) -> None:
        self.index = {t: i for i, t in enumerate(self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    @classmethod
    def build(cls, texts: Iterable[str], level: str = "char", max_size: int | None = None, min_count: int = 1,
              lowercase: bool = False) -> Vocab:
        """The tokens of ``texts`` seen at least ``min_count`` times, the ``max_size - 1`` most frequent
        (ties broken by first appearance)."""
        counts: Counter = Counter()
        for text in texts:
            counts.update(tokenize(text.lower() if lowercase else text, level))
        kept = [t for t, c in counts.most_common() if c >= min_count]
        if max_size is not None:
            kept = kept[: max_size - 1]
        order = sorted(kept) if level == "char" else kept  # characters in code-point order, words by frequency
        return cls([UNK, *order], level, lowercase)

    def encode(self, text: str) -> np.ndarray:
        """(N,) int64 ids; unseen tokens are 0."""
        toks = tokenize(text.lower() if self.lowercase else text, self.level)
        return np.fromiter((self.index.get(t, 0) for t in toks), dtype=np.int64, count=len(toks))

    def decode(self, ids: Iterable[int]) -> str:
        d = Detokenizer(self)
        return "".join(d.piece(int(i)) for i in ids)

    def to_dict(self) -> dict:
        return {"tokens": self.tokens, "level": self.level, "lowercase": self.lowercase}

    @classmethod
    def from_dict(cls, d: dict) -> Vocab:
        return cls(list(d["tokens"]), d["level"], d["lowercase"])


class Detokenizer:
    """Token ids -> text, one piece at a time (for streaming). Words are joined by spaces except before
    closing punctuation, after opening brackets and around paragraph breaks; straight double quotes
    alternate between opening and closing."""

    NO_SPACE_BEFORE = set(".,;:!?)]}\u2019\u201d'") | {PARAGRAPH}
    NO_SPACE_AFTER = set("([{\u2018\u201c") | {PARAGRAPH}

    def __init__(self, vocab: Vocab) -> None:
        self.vocab, self.prev, self.quote_open = vocab, None, False

    def piece(self, i: int) -> str:
        tok = self.vocab.tokens[i] if 0 < i < len(self.vocab) else None
        if self.vocab.level == "char":
            return UNK_CHAR if tok is None else tok
        tok = UNK if tok is None else tok
        space = self.prev is not None and tok not in self.NO_SPACE_BEFORE and self.prev not in self.NO_SPACE_AFTER
        if tok == '"':
            space = self.prev is not None and not self.quote_open and self.prev != PARAGRAPH
            self.quote_open = not self.quote_open
        elif self.prev == '"' and self.quote_open:
            space = False
        self.prev = tok
        return (" " if space else "") + tok


# ---- streams -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenStream:
    """Documents encoded and concatenated: ``ids`` (N,) int64, ``starts`` (N,) bool (True at each
    document's first token), ``names`` one per document."""

    ids: np.ndarray
    starts: np.ndarray
    names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def from_arrays(cls, docs: Sequence[np.ndarray], names: Sequence[str]) -> TokenStream:
        kept = [(d, name) for d, name in zip(docs, names, strict=True) if len(d)]  # an empty document vanishes
        ids = np.concatenate([d for d, _ in kept]).astype(np.int64) if kept else np.zeros(0, np.int64)
        starts = np.zeros(len(ids), bool)
        if kept:
            starts[np.cumsum([0, *[len(d) for d, _ in kept[:-1]]]).astype(np.int64)] = True
        return cls(ids, starts, tuple(name for _, name in kept))

    def documents(self) -> list[np.ndarray]:
        return np.split(self.ids, np.flatnonzero(self.starts)[1:])

    @property
    def num_targets(self) -> int:
        """Tokens that get predicted: all but each document's first."""
        return int(len(self.ids) - self.starts.sum())


def split_tail(docs: Sequence[np.ndarray], fraction: float) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Cut the last ``fraction`` of every document off as one contiguous block: ``(heads, tails)``."""
    heads, tails = [], []
    for d in docs:
        cut = len(d) - int(round(len(d) * fraction))
        heads.append(d[:cut])
        tails.append(d[cut:])
    return heads, tails


@dataclass(frozen=True)
class Chunk:
    """``k`` steps of ``S`` streams: inputs ``x`` and targets ``y`` (S, k) int64; ``resets`` (S, k) bool
    (zero the state before reading ``x[:, t]``); ``mask`` (S, k) bool (``y[:, t]`` counts in the loss)."""

    x: np.ndarray
    y: np.ndarray
    resets: np.ndarray
    mask: np.ndarray


def stream_chunk(stream: TokenStream, pos: np.ndarray, k: int, end: np.ndarray | None = None) -> Chunk:
    """Tokens ``pos[s] + t`` (t < k, modulo N) of each stream as inputs and the next ones as targets.

    A target that opens a document is masked (it is not predictable from the previous document) and the
    state resets before it is read; the wrap from the last token to the first is such a boundary. With
    ``end`` (S,), targets at or beyond ``end[s]`` are masked too (evaluation reads each target once).
    """
    n = len(stream)
    t = pos[:, None] + np.arange(k + 1)[None, :]  # (S, k+1)
    idx = t % n
    mask = ~stream.starts[idx[:, 1:]]
    if end is not None:
        mask &= t[:, 1:] < end[:, None]
    return Chunk(stream.ids[idx[:, :-1]], stream.ids[idx[:, 1:]], stream.starts[idx[:, :-1]], mask)


def eval_layout(n: int, streams: int, k: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Split targets 1..n-1 over ``streams`` contiguous streams: ``(pos, end, chunks)`` such that reading
    ``chunks`` chunks of ``k`` from ``pos`` predicts every target exactly once (``end`` masks the rest)."""
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), 0
    streams = max(1, min(streams, (n - 1) // k))
    length = -(-(n - 1) // streams)  # ceil
    pos = np.arange(streams) * length
    end = np.minimum(pos + length, n - 1) + 1  # targets pos+1 .. end-1
    return pos, end, -(-length // k)


def unigram_bits(counts: np.ndarray, stream: TokenStream) -> float:
    """Bits per token of ``stream``'s targets under the unigram model ``counts`` (add-one smoothed)."""
    p = (counts + 1.0) / (counts.sum() + len(counts))
    targets = stream.ids[~stream.starts]
    return float(-np.log2(p[targets]).mean()) if len(targets) else float("nan")


@register_source("embedded", modality="corpus")
def embedded_corpus_source(d: Any) -> list[tuple[str, str]]:
    """A text shipped inside the package (``data.name``), as one document."""
    return [(d.name, embedded_text(d.name))]


@register_source("text", modality="corpus")
def text_corpus_source(d: Any) -> list[tuple[str, str]]:
    """UTF-8 text files: ``data.path`` (a file or a folder of .txt files) and ``data.files``, less the files of
    ``data.val_path`` / ``data.test_path``."""
    held = [d.val_path, d.test_path]
    paths = ([d.path] if d.path else []) + list(d.files or [])
    held_files = [f for p in held if p for f in (Path(p).glob("*.txt") if Path(p).is_dir() else [Path(p)])]
    return read_documents(paths, exclude=held_files)


__all__ = ["EMBEDDED_TEXTS", "PARAGRAPH", "UNK", "Chunk", "Detokenizer", "TokenStream", "Vocab", "embedded_text",
           "eval_layout", "read_documents", "read_text", "split_tail", "stream_chunk", "text_files", "tokenize",
           "unigram_bits"]
