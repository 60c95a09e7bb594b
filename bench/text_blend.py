"""Does averaging a text run's probabilities with TF-IDF + logistic regression beat either alone?

For each trained text-classification run folder given, the script re-splits the run's data exactly as the run
did (same seeds), fits the run's own TF-IDF + LR baseline (word 1-2 grams, sublinear tf, min_df 2, C = 10) on
the run's training split, and scores the blend ``(1 - w) * p_network + w * p_tfidf`` for w = 0, 0.1, ..., 1 on
the validation and the test split. The weight is meant to be chosen on the validation rows (their mean over
the runs); the test rows are printed so the choice can be checked afterwards, not to choose by. Needs
``rnnkit[baselines]`` (scikit-learn). Run from the repository root, e.g. on four validation splits:

    for s in 0 1 2 3; do rnnkit train examples/fine_foods.yaml --set training.split_seed=$s --out runs/ff_s$s; done
    python bench/text_blend.py runs/ff_s0 runs/ff_s1 runs/ff_s2 runs/ff_s3
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from rnnkit.api import Run

WEIGHTS = np.linspace(0.0, 1.0, 11)


def blend_accuracy(run_dir: str) -> dict[str, np.ndarray]:
    """-> {"val": (11,), "test": (11,)} accuracy in % of the blend at each weight in WEIGHTS."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    run = Run.load(run_dir)
    task = run.task
    state = task.state()
    task.setup()  # re-splits with the run's seeds
    task.load_state(state)
    if len(task.classes) != 2:
        raise SystemExit(f"{run_dir}: the blend here is for two classes, the run has {len(task.classes)}")
    texts = task.texts["train"]  # the baseline's settings (rnnkit.tasks.baselines.text_baselines)
    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2 if len(texts) >= 100 else 1, sublinear_tf=True)
    clf = LogisticRegression(max_iter=2000, C=10.0)
    clf.fit(vec.fit_transform(texts), task.splits["train"].y.numpy())
    out = {}
    for split in ("val", "test"):
        _, probs = task.probabilities(run.model, task.splits[split], torch.device("cpu"))
        net, y = probs[:, 1], task.splits[split].y.numpy()
        lin = clf.predict_proba(vec.transform(task.texts[split]))[:, 1]
        out[split] = np.array([np.mean(((1 - w) * net + w * lin > 0.5) == y) * 100 for w in WEIGHTS])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="text-classification run folders (binary)")
    args = ap.parse_args()
    rows = {"val": [], "test": []}
    print("weight w:        " + " ".join(f"{w:6.1f}" for w in WEIGHTS))
    for r in args.runs:
        acc = blend_accuracy(r)
        for split in rows:
            rows[split].append(acc[split])
            print(f"{split:5s} {Path(r).name[-10:]:>10s} " + " ".join(f"{a:6.2f}" for a in acc[split]))
    for split in rows:
        print(f"{split:5s}       mean " + " ".join(f"{a:6.2f}" for a in np.mean(rows[split], 0)))
    best = int(np.argmax(np.mean(rows["val"], 0)))
    print(f"chosen on validation: w = {WEIGHTS[best]:.1f}; test mean there {np.mean(rows['test'], 0)[best]:.2f} %")


if __name__ == "__main__":
    main()
