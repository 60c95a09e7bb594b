"""Sequence pairs for sequence-to-sequence tasks: a source and one or more reference targets per item.

Sources of the ``pairs`` modality (``data.source``):

* ``csv`` / ``tsv`` / ``jsonl``: ``data.path`` (and ``test_path``, ``val_path``), columns ``data.source_column`` and
  ``data.target_column``; rows with the same source fold into one item with several references.
* ``cmudict``: the CMU Pronouncing Dictionary (``data.path``: the ``cmudict.dict`` file or its folder): words and
  their ARPAbet phones with stress digits, ``# comments`` stripped, ``word(2)`` folded into ``word``'s references;
  split by ``zlib.crc32(word) % 20``: 0 test, 1 validation, the rest training (the split of the shared data's
  README, so every pronunciation of a word lands in the same part).
* ``embedded``: the small grapheme-to-phoneme sample shipped inside the package (``data.name: g2p``).
"""

from __future__ import annotations

import csv
import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rnnkit.data.errors import DataError, not_utf8
from rnnkit.data.sources import register_source

EMBEDDED = Path(__file__).with_name("embedded")


@dataclass
class Pairs:
    """``sources`` (N,) strings and ``references`` (N,) lists of target strings (at least one each)."""

    sources: list[str]
    references: list[list[str]]

    def __len__(self) -> int:
        return len(self.sources)

    @classmethod
    def from_rows(cls, rows: list[tuple[str, str]]) -> Pairs:
        """Pairs from (source, target) rows, references of a repeated source folded together in first-seen order."""
        refs: dict[str, list[str]] = {}
        for src, tgt in rows:
            have = refs.setdefault(src, [])
            if tgt not in have:
                have.append(tgt)
        return cls(list(refs), list(refs.values()))


def read_table(path: str | Path, source_column: str, target_column: str, delimiter: str | None = None) -> Pairs:
    """Pairs from a CSV/TSV file with a header, or JSON lines (``{"source": ..., "target": ...}`` per line)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"file not found: {path}; check data.path")
    rows: list[tuple[str, str]] = []
    try:
        with open(path, encoding="utf-8", newline="") as f:
            if path.suffix in (".jsonl", ".ndjson"):
                for n, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        obj = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise DataError(f"{path}:{n}: not a JSON object ({e.msg}); one object per line") from None
                    rows.append(_pick(obj, source_column, target_column, f"{path}:{n}"))
            else:
                sep = delimiter or ("\t" if path.suffix in (".tsv", ".tab") else ",")
                for n, obj in enumerate(csv.DictReader(f, delimiter=sep), 2):
                    rows.append(_pick(obj, source_column, target_column, f"{path}:{n}"))
    except UnicodeDecodeError:
        raise not_utf8(path) from None
    if not rows:
        raise DataError(f"{path} holds no pairs; give a header row and one pair per row")
    return Pairs.from_rows(rows)


def _pick(obj: Any, source_column: str, target_column: str, where: str) -> tuple[str, str]:
    if not isinstance(obj, dict) or source_column not in obj or target_column not in obj:
        have = ", ".join(map(str, obj)) if isinstance(obj, dict) else type(obj).__name__
        raise DataError(f"{where}: needs the columns '{source_column}' and '{target_column}' (set "
                        f"data.source_column / data.target_column); found {have}")
    src, tgt = obj[source_column], obj[target_column]
    if not isinstance(src, str) or not isinstance(tgt, str) or not src.strip() or not tgt.strip():
        raise DataError(f"{where}: the source and target must be non-empty texts; fill them in or drop the row")
    return src.strip(), tgt.strip()


def read_cmudict(path: str | Path) -> dict[str, list[str]]:
    """``word -> [pronunciation, ...]`` from a ``cmudict.dict`` file (or the folder holding it): one
    ``word PH1 PH2 ...`` per line, ``# comments`` stripped, ``word(2)`` folded into ``word``."""
    path = Path(path)
    if path.is_dir():
        path = path / "cmudict.dict"
    if not path.is_file():
        raise DataError(f"CMU dictionary not found: {path}; give the cmudict.dict file (or its folder) as data.path")
    out: dict[str, list[str]] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise not_utf8(path) from None
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        word, *phones = line.split()
        if not phones:
            continue
        if word.endswith(")") and "(" in word:
            word = word[: word.index("(")]
        pron = " ".join(phones)
        have = out.setdefault(word, [])
        if pron not in have:
            have.append(pron)
    if not out:
        raise DataError(f"{path} holds no 'word PHONES' lines")
    return out


def cmudict_part(word: str) -> str:
    """The split of a word: test (crc32 % 20 == 0), val (== 1), else train."""
    r = zlib.crc32(word.encode("utf-8")) % 20
    return "test" if r == 0 else "val" if r == 1 else "train"


_PATHS = {"train": "path", "val": "val_path", "test": "test_path"}


@register_source("csv", modality="pairs")
def table_source(d: Any, part: str, *, delimiter: str | None = None) -> Pairs | None:
    """A CSV/TSV/JSONL file per part (``data.path``, ``val_path``, ``test_path``)."""
    path = getattr(d, _PATHS[part])
    return None if path is None else read_table(path, d.source_column, d.target_column, delimiter)


register_source("tsv", modality="pairs")(table_source)
register_source("jsonl", modality="pairs")(table_source)


@register_source("cmudict", modality="pairs")
def cmudict_source(d: Any, part: str) -> Pairs | None:
    """The CMU Pronouncing Dictionary at ``data.path``, split by crc32 of the word (see the module docstring)."""
    entries = read_cmudict(d.path)
    words = [w for w in entries if cmudict_part(w) == part]
    return Pairs(words, [entries[w] for w in words])


@register_source("embedded", modality="pairs")
def embedded_source(d: Any, part: str) -> Pairs | None:
    """The package's small sample (``data.name: g2p``): split as cmudict."""
    if d.name != "g2p":
        raise DataError(f"data.name: no embedded pairs named '{d.name}'; use g2p")
    entries = read_cmudict(EMBEDDED / "g2p_sample.dict")
    words = [w for w in entries if cmudict_part(w) == part]
    return Pairs(words, [entries[w] for w in words])


__all__ = ["Pairs", "cmudict_part", "read_cmudict", "read_table"]
