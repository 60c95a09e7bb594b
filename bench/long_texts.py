"""Long documents for the text recipes, made from the shared fine-food reviews.

The issue's long-text failure was a sentiment set of about a thousand reviews of hundreds of words each; the
shared fine-food reviews are short (81 tokens on average), so chunking and mean+max pooling had nothing to do on
them. This script writes such a set: each document is ``--per-doc`` consecutive reviews of one label (in file
order), joined by blank lines, with that label; ``train.csv`` from the shared ``train.csv`` and ``test.csv`` from
its ``test.csv``, so no review is in both. With 4 a document (the default) that is 1 000 training documents of
about 330 words and 250 test documents. Run from the repository root, then train on it:

    python bench/long_texts.py ../shared/datasets/fine-foods /tmp/long_reviews
    rnnkit train examples/fine_foods.yaml --set data.path=/tmp/long_reviews/train.csv \
        --set data.test_path=/tmp/long_reviews/test.csv [--set data.truncating=post --set model.pooling=meanmax]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path


def long_documents(rows: list[dict], per_doc: int) -> list[dict]:
    """Group ``rows`` (dicts with ``product``, ``review``, ``score``) into documents of ``per_doc`` consecutive
    reviews of one score each, in file order; a score's leftover reviews (fewer than ``per_doc``) are dropped.
    The documents are interleaved back into the order of their first review."""
    out, pending = [], {}
    for i, row in enumerate(rows):
        group = pending.setdefault(row["score"], [])
        group.append((i, row))
        if len(group) == per_doc:
            out.append((group[0][0], {"product": "+".join(r["product"] for _, r in group),
                                      "review": "\n\n".join(r["review"] for _, r in group),
                                      "score": row["score"]}))
            pending[row["score"]] = []
    return [doc for _, doc in sorted(out, key=lambda item: item[0])]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source", type=Path, help="folder holding the fine-food train.csv and test.csv")
    ap.add_argument("out", type=Path, help="folder to write train.csv and test.csv into")
    ap.add_argument("--per-doc", type=int, default=4, help="reviews a document (default 4)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for part in ("train", "test"):
        with open(args.source / f"{part}.csv", newline="", encoding="utf-8") as f:
            docs = long_documents(list(csv.DictReader(f)), args.per_doc)
        with open(args.out / f"{part}.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=["product", "review", "score"])
            writer.writeheader()
            writer.writerows(docs)
        words = sum(len(d["review"].split()) for d in docs) / max(len(docs), 1)
        great = sum(d["score"] == "great" for d in docs) / max(len(docs), 1)
        print(f"{part}: {len(docs)} documents, {words:.0f} words on average, {100 * great:.1f} % great")


if __name__ == "__main__":
    main()
