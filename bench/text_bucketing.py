"""Text batching benchmark: training throughput of length bucketing against padding to the maximum length.

Real review lengths (fine-foods ``train.csv`` by default), the text model of rnnkit's text task
(Embedding -> rnnkit LSTM -> last state -> Linear(1), sigmoid + BCE), one training step (forward, backward,
Adam) per batch. Four ways to batch the same texts:

* ``pad-to-max``       every batch padded to ``--max-length``, no lengths: the recurrence runs over padding
                       (what the seed scripts did; their last state is then the state after the padding);
* ``pad-to-max+len``   padded to ``--max-length`` but the lengths are passed (the layer packs the batch);
* ``shuffled+len``     random batches padded to their own longest text, lengths passed;
* ``bucketed+len``     :func:`rnnkit.data.text.bucket_batches`, padded to their own longest, lengths passed;
* ``bucketed+mask``    bucketed, but the lengths only mask the pooling (``model.packed: false``): the few padded
                       steps of a bucket go through torch's unpacked kernel, which on CPU is faster than its
                       packed one. Same result for one direction.

Each mode draws its own batches of one epoch; the modes run interleaved, batch by batch, and each mode's
throughput is its texts per second summed over the timed batches. Run from the repository root:

    python bench/text_bucketing.py --data $RNNKIT_DATA/fine-foods/train.csv --batches 30
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import shlex
import sys
import time

import torch
import torch.nn.functional as F

from rnnkit.build import load_config
from rnnkit.data.text import Corpus, Tokenizer, Vocabulary, bucket_batches, load_table
from rnnkit.tasks.base import batch_indices
from rnnkit.tasks.text_classification import TextClassifier

MODES = ("pad-to-max", "pad-to-max+len", "shuffled+len", "bucketed+len", "bucketed+mask")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default = os.path.join(os.environ.get("RNNKIT_DATA", "../shared/datasets"), "fine-foods", "train.csv")
    p.add_argument("--data", default=default, help="CSV with the texts (default: fine-foods train.csv)")
    p.add_argument("--text-column", default="review")
    p.add_argument("--max-length", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--embedding-dim", type=int, default=64)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--cell", default="lstm", choices=["lstm", "gru"])
    p.add_argument("--batches", type=int, default=30, help="timed batches per mode")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not os.path.isfile(args.data):
        print(f"no data at {args.data}; give --data FILE.csv (fine-foods: $RNNKIT_DATA/fine-foods/train.csv)")
        return 2

    texts = load_table(args.data, args.text_column, None).texts
    tok = Tokenizer()
    tokens = [tok(t) for t in texts]
    vocab = Vocabulary.build(tokens, num_words=10000)
    corpus = Corpus.from_ids([vocab.encode(t) for t in tokens], max_length=args.max_length, truncating="post")
    y = torch.randint(0, 2, (len(corpus),), generator=torch.Generator().manual_seed(0))
    m = load_config({"task": "text_classification", "data": {"source": "imdb"},
                     "model": {"cell": args.cell, "hidden_size": args.hidden, "num_layers": args.layers,
                               "embedding_dim": args.embedding_dim}}).model
    torch.manual_seed(0)
    models = {mode: TextClassifier(dataclasses.replace(m, packed=mode != "bucketed+mask"), len(vocab), 2)
              for mode in MODES}
    for mode in MODES[1:]:
        models[mode].load_state_dict(models[MODES[0]].state_dict())
    opts = {mode: torch.optim.Adam(models[mode].parameters(), 1e-3) for mode in MODES}
    bs = args.batch_size
    shuffled = batch_indices(len(corpus), bs, 0, 0)
    order = {"pad-to-max": shuffled, "pad-to-max+len": shuffled, "shuffled+len": shuffled,
             "bucketed+len": bucket_batches(corpus.lengths, bs, 0, 0)}
    order["bucketed+mask"] = order["bucketed+len"]
    need = args.warmup + args.batches
    if min(len(b) for b in order.values()) < need:
        print(f"only {len(order['bucketed+len'])} batches in the data; lower --batches")
        return 2
    seconds = dict.fromkeys(MODES, 0.0)
    texts_done, steps_done, real_tokens = dict.fromkeys(MODES, 0), dict.fromkeys(MODES, 0), dict.fromkeys(MODES, 0)
    for k in range(need):
        for mode in MODES if k % 2 == 0 else MODES[::-1]:
            idx = order[mode][k]
            full = mode.startswith("pad-to-max")
            x, lengths = corpus.batch(idx, pad_to=args.max_length if full else None)
            model, opt = models[mode], opts[mode]
            t0 = time.perf_counter()
            logits = model(x, None if mode == "pad-to-max" else lengths)
            loss = F.binary_cross_entropy_with_logits(logits, y[idx].float())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            dt = time.perf_counter() - t0
            if k >= args.warmup:
                seconds[mode] += dt
                texts_done[mode] += len(idx)
                real_tokens[mode] += int(lengths.sum())
                steps_done[mode] += x.shape[0] * x.shape[1]

    print(f"# {shlex.join([sys.executable.split('/')[-1], *sys.argv])}")
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} "
          f"threads, {len(corpus)} texts, mean length {corpus.lengths.float().mean():.1f} tokens (cut at "
          f"{args.max_length}), batch {bs}, {args.cell.upper()} {args.hidden} x {args.layers}, "
          f"embedding {args.embedding_dim}")
    print(f"{'mode':<16} {'texts/s':>9} {'padding %':>10} {'vs pad-to-max':>14}")
    base = texts_done["pad-to-max"] / seconds["pad-to-max"]
    for mode in MODES:
        rate = texts_done[mode] / seconds[mode]
        pad = 100 * (1 - real_tokens[mode] / steps_done[mode])
        print(f"{mode:<16} {rate:>9.1f} {pad:>9.1f}% {rate / base:>13.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
