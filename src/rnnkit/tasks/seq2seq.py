"""Sequence to sequence (``task: seq2seq``): an encoder-decoder with attention, teacher forcing, beam search.

Model. The encoder is any rnnkit recurrent stack (``model.cell``, layers, bidirectional, lengths) over the
embedded source tokens. The decoder is a recurrent stack of the same cell stepped one target token at a time
through the layers' stateful call (``y, h = layer(x_t, h)``); its first state is a linear map (tanh) of the
encoder's final states. With ``model.attention`` it attends over the encoder outputs, masked to each source's
length: ``bahdanau`` (additive, ``v · tanh(W q + U k)``), ``dot`` or ``general`` (Luong et al. 2015:
``q · k``, ``q · W k``); the attentional state ``h̃_t = tanh(W_c [c_t; h_t])`` is fed to the output layer and,
with ``input_feeding``, into the next step's input. ``attention: none`` is the encoder-decoder of Sutskever et
al. 2014 (the final encoder state passed over). ``tie_embeddings`` shares the target embedding with the output
layer (through a projection of h̃ to the embedding size).

Training. Teacher forcing: the decoder reads the reference's previous token, or with probability
``scheduled_sampling`` its own previous prediction (Bengio et al. 2015); cross-entropy with
``label_smoothing``; batches of similar source lengths. An item with several references trains on the first.
Without input feeding and scheduled sampling the decoder runs over the whole target in one call of the layer.

Decoding. Greedy or beam search (``beam_size``, length normalisation ``score / length ** length_penalty``,
n-best lists with their log-probabilities), batched, at most ``max_length_ratio * source length + 10`` tokens.

Metrics. ``wer``: the share of items whose output equals none of the references (word error rate of g2p);
``ter``: token (phone) error rate, the edit distance to the closest reference summed over items and divided by
those references' summed length; ``bleu`` and ``chrf`` through sacrebleu when it is installed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rnnkit.config import MAX_BEAM, Config, ConfigError, DataConfig, ModelConfig, absent, files_required
from rnnkit.layers import Dropout
from rnnkit.tasks import register_task
from rnnkit.tasks.base import StepResult, Task
from rnnkit.training.ensemble import Ensemble, mean_probabilities

PAD, UNK, BOS, EOS = 0, 1, 2, 3
SPECIALS = ["<pad>", "<unk>", "<s>", "</s>"]


# ---- config ------------------------------------------------------------------------------------------------
@dataclass
class Seq2SeqModelConfig(ModelConfig):
    embedding_dim: int = 64
    attention: Literal["bahdanau", "dot", "general", "none"] = "bahdanau"
    input_feeding: bool = True
    tie_embeddings: bool = False
    embedding_dropout: float = 0.0
    output_dropout: float = 0.0  # on h̃ before the output layer
    scheduled_sampling: float = 0.0  # probability of feeding the model's own previous prediction while training
    label_smoothing: float = 0.0
    beam_size: int = 1  # test and prediction (validation during training is greedy)
    n_best: int = 1
    length_penalty: float = 1.0  # beam score = log p / length ** length_penalty
    max_length_ratio: float = 2.0  # outputs stop at ratio * source length + 10 tokens

    def check(self) -> None:
        super().check()
        for key in ("embedding_dropout", "output_dropout", "scheduled_sampling", "label_smoothing"):
            if not 0.0 <= getattr(self, key) < 1.0:
                raise ConfigError(f"model.{key} must be in [0, 1), got {getattr(self, key)}")
        if self.embedding_dim < 1 or self.beam_size < 1 or self.n_best < 1:
            raise ConfigError("model.embedding_dim, beam_size and n_best must be >= 1")
        if not 0 < self.max_length_ratio <= 100:  # an output that never ends runs to this cap: 10**6 ran for ever
            raise ConfigError(f"model.max_length_ratio must be in (0, 100] (outputs stop at ratio x source length "
                              f"+ 10 tokens; 2 is typical), got {self.max_length_ratio}")
        if not 0 <= self.length_penalty <= 5:  # length ** 10**6 overflowed
            raise ConfigError(f"model.length_penalty must be in [0, 5] (0: none, 1: log p per token; 0.6-1 is "
                              f"typical), got {self.length_penalty}")
        if self.attention == "dot" and self.bidirectional:
            raise ConfigError("model.attention: dot needs equal decoder and encoder widths, and a bidirectional "
                              "encoder is twice as wide; use general or bahdanau")
        if self.beam_size > MAX_BEAM:
            raise ConfigError(f"model.beam_size: {self.beam_size} is too wide (at most {MAX_BEAM}; 4-10 is typical)")
        if self.n_best > self.beam_size:
            raise ConfigError(f"model.n_best ({self.n_best}) cannot exceed model.beam_size ({self.beam_size})")


@dataclass
class Seq2SeqDataConfig(DataConfig):
    modality: ClassVar[str] = "pairs"
    source: str = "csv"  # csv, tsv, jsonl, cmudict, embedded
    name: str = "g2p"  # embedded sample
    source_column: str = "source"
    target_column: str = "target"
    source_level: Literal["char", "word"] = "char"  # word: split on white space
    target_level: Literal["char", "word"] = "word"
    lower: bool = False
    min_freq: int = 1
    bucket_size: int = 50

    def check(self) -> None:
        self.check_source()
        if self.source in ("csv", "tsv", "jsonl", "cmudict"):
            if not self.path and files_required():
                raise ConfigError(f"data.path is required for source: {self.source}")
            for key in ("path", "test_path", "val_path"):
                p = getattr(self, key)
                if p is not None and absent(p, "any"):
                    raise ConfigError(f"data.{key}: not found: {p}")
        if self.standardize or self.normalize != "none":
            raise ConfigError("data.standardize and data.normalize do not apply to seq2seq; remove them")
        if not 0.0 <= self.val_fraction < 1.0 or not 0.0 <= self.test_fraction < 1.0:
            raise ConfigError("data.val_fraction and data.test_fraction must be in [0, 1)")
        if self.min_freq < 1 or self.bucket_size < 1:
            raise ConfigError("data.min_freq and data.bucket_size must be >= 1")


# ---- vocabularies and metrics --------------------------------------------------------------------------------
class Vocab:
    """Tokens <-> ids with <pad> 0, <unk> 1, <s> 2, </s> 3; ``level`` char or word (white-space split)."""

    def __init__(self, tokens: list[str], level: str, lower: bool) -> None:
        self.itos, self.level, self.lower = list(tokens), level, lower
        self.stoi = {t: i for i, t in enumerate(self.itos)}

    @classmethod
    def build(cls, texts: list[str], level: str, lower: bool, min_freq: int) -> Vocab:
        from collections import Counter

        v = cls(SPECIALS, level, lower)
        counts = Counter(t for s in texts for t in v.split(s))
        return cls(SPECIALS + sorted(t for t, c in counts.items() if c >= min_freq and t not in SPECIALS),
                   level, lower)

    def split(self, text: str) -> list[str]:
        text = text.lower() if self.lower else text
        return list(text) if self.level == "char" else text.split()

    def encode(self, text: str) -> list[int]:
        return [self.stoi.get(t, UNK) for t in self.split(text)]

    def decode(self, ids) -> str:
        toks = [self.itos[i] for i in ids if i > EOS]
        return "".join(toks) if self.level == "char" else " ".join(toks)

    def __len__(self) -> int:
        return len(self.itos)

    def to_dict(self) -> dict:
        return {"itos": self.itos, "level": self.level, "lower": self.lower}

    @classmethod
    def from_dict(cls, d: dict) -> Vocab:
        return cls(d["itos"], d["level"], d["lower"])


def edit_distance(a: list, b: list) -> int:
    """Levenshtein distance between two token lists."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def error_rates(hyps: list[list[str]], refs: list[list[list[str]]]) -> dict:
    """``wer``: share of hypotheses equal to none of their references; ``ter``: edit distance to the closest
    reference (fewest edits, then shortest), summed, over those references' summed length."""
    wrong, edits, length = 0, 0, 0
    for h, rs in zip(hyps, refs, strict=True):
        wrong += all(h != r for r in rs)
        d, r = min(((edit_distance(h, r), len(r)) for r in rs), key=lambda t: (t[0] / max(t[1], 1), t[1]))
        edits, length = edits + d, length + r
    n = max(len(hyps), 1)
    return {"wer": wrong / n, "ter": edits / max(length, 1)}


def sacrebleu_scores(hyps: list[str], refs: list[list[str]]) -> dict:
    """BLEU and chrF of detokenised word-level outputs (sacrebleu, when installed; {} otherwise)."""
    try:
        import sacrebleu
    except ImportError:
        return {}
    k = max(len(r) for r in refs)
    streams = [[r[i] if i < len(r) else r[0] for r in refs] for i in range(k)]
    return {"bleu": float(sacrebleu.corpus_bleu(hyps, streams).score),
            "chrf": float(sacrebleu.corpus_chrf(hyps, streams).score)}


# ---- model ----------------------------------------------------------------------------------------------------
class Attention(nn.Module):
    """Scores of queries (B, T, Hq) against keys (B, S, Hk), masked to each source's length -> weights (B, T, S).
    Decoding passes one query a step (T = 1); teacher forcing without input feeding passes all T at once."""

    def __init__(self, kind: str, q: int, k: int) -> None:
        super().__init__()
        self.kind = kind
        if kind == "bahdanau":
            self.wq, self.wk, self.v = nn.Linear(q, q, bias=False), nn.Linear(k, q), nn.Linear(q, 1, bias=False)
        elif kind == "general":
            self.w = nn.Linear(k, q, bias=False)
        elif kind == "dot" and q != k:
            raise ConfigError(f"model.attention: dot needs equal decoder and encoder widths ({q} vs {k}: a "
                              "bidirectional encoder doubles it); use general or bahdanau")

    def forward(self, query: torch.Tensor, keys: torch.Tensor, pre: torch.Tensor | None,
                mask: torch.Tensor) -> torch.Tensor:
        if self.kind == "bahdanau":  # (B, T, 1, Hq) + (B, 1, S, Hq) -> (B, T, S)
            score = self.v(torch.tanh(self.wq(query)[:, :, None] + pre[:, None])).squeeze(-1)
        else:
            k = pre if self.kind == "general" else keys
            score = torch.bmm(query, k.transpose(1, 2))
        return score.masked_fill(~mask[:, None], float("-inf")).softmax(-1)

    def precompute(self, keys: torch.Tensor) -> torch.Tensor | None:
        """The key-side projection, once per source (bahdanau: U k; general: W k)."""
        return self.wk(keys) if self.kind == "bahdanau" else self.w(keys) if self.kind == "general" else None


class Seq2Seq(nn.Module):
    """Encoder-decoder. ``forward(src (B, S), lengths (B,), tgt_in (B, T))`` -> logits (B, T, V) under teacher
    forcing; :meth:`encode` and :meth:`step` are the pieces greedy and beam search use."""

    def __init__(self, m: Seq2SeqModelConfig, src_vocab: int, tgt_vocab: int) -> None:
        super().__init__()
        from rnnkit.tasks.common import make_rnn

        self.m = m
        H, E = m.hidden_size, m.embedding_dim
        self.dirs = 2 if m.bidirectional else 1
        self.src_emb = nn.Embedding(src_vocab, E, padding_idx=PAD)
        self.tgt_emb = nn.Embedding(tgt_vocab, E, padding_idx=PAD)
        self.drop = Dropout(m.embedding_dropout)
        self.encoder = make_rnn(m, E)
        dec_cfg = Seq2SeqModelConfig(**{**m.__dict__, "bidirectional": False})
        self.attn = None if m.attention == "none" else Attention(m.attention, H, self.dirs * H)
        feed = H if (self.attn is not None and m.input_feeding) else 0
        self.decoder = make_rnn(dec_cfg, E + feed)
        self.num_states = self.decoder.cell.num_states  # (h, c) for the LSTM
        self.bridge = nn.ModuleList(nn.Linear(self.dirs * H, H) for _ in range(self.num_states))
        self.combine = nn.Linear(self.dirs * H + H, H) if self.attn is not None else None
        self.out_drop = Dropout(m.output_dropout)
        if m.tie_embeddings:
            self.proj = nn.Linear(H, E, bias=False)
            self.out = None
        else:
            self.out = nn.Linear(H, tgt_vocab)

    # -- pieces
    def encode(self, src: torch.Tensor, lengths: torch.Tensor) -> dict:
        """src (B, S), lengths (B,) -> the decoder's start: keys (B, S, dirs*H), mask (B, S), state, feed."""
        out, state = self.encoder(self.drop(self.src_emb(src)), lengths=lengths.cpu())
        states = state if isinstance(state, tuple) else (state,)
        L, B = self.m.num_layers, src.shape[0]
        init = []
        for s, lin in zip(states, self.bridge, strict=False):
            s = s.view(L, self.dirs, B, -1).transpose(1, 2).reshape(L, B, -1)  # both directions side by side
            init.append(torch.tanh(lin(s)))
        mask = torch.arange(src.shape[1], device=src.device)[None] < lengths.to(src.device)[:, None]
        h = tuple(init) if self.num_states == 2 else init[0]
        feed = out.new_zeros(B, self.m.hidden_size) if self.combine is not None and self.m.input_feeding else None
        pre = self.attn.precompute(out) if self.attn is not None else None
        return {"keys": out, "pre": pre, "mask": mask, "state": h, "feed": feed}

    def attend(self, h: torch.Tensor, enc: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Decoder outputs h (B, T, H) -> the attentional states h̃ (B, T, H) and weights (B, T, S); without
        attention h itself and None."""
        if self.attn is None:
            return h, None
        weights = self.attn(h, enc["keys"], enc["pre"], enc["mask"])
        ctx = torch.bmm(weights, enc["keys"])
        return torch.tanh(self.combine(torch.cat([ctx, h], -1))), weights

    def step(self, prev: torch.Tensor, enc: dict) -> tuple[torch.Tensor, dict, torch.Tensor | None]:
        """One decoder step from the previous tokens (B,) -> log-probabilities (B, V), the next ``enc`` (state
        and feed updated), the attention weights (B, S) or None."""
        x = self.drop(self.tgt_emb(prev))
        if enc["feed"] is not None:
            x = torch.cat([x, enc["feed"]], -1)
        out, state = self.decoder(x[:, None], enc["state"])
        h, weights = self.attend(out, enc)
        h = h[:, 0]
        logits = self._logits(self.out_drop(h))
        nxt = {**enc, "state": state, "feed": h if enc["feed"] is not None else None}
        return logits.float().log_softmax(-1), nxt, None if weights is None else weights[:, 0]

    def _logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.proj(h) @ self.tgt_emb.weight.t() if self.out is None else self.out(h)

    def forward(self, src: torch.Tensor, lengths: torch.Tensor, tgt_in: torch.Tensor,
                sampling: float = 0.0) -> torch.Tensor:
        """Teacher forcing -> log-probabilities (B, T, V). Without input feeding or scheduled sampling no step
        depends on an earlier step's output, so the decoder runs over all T tokens in one call of the layer and
        attention is one batched product (:meth:`forward_parallel`); otherwise step by step."""
        enc = self.encode(src, lengths)
        if enc["feed"] is None and sampling == 0:
            return self.forward_parallel(enc, tgt_in)
        return self.forward_steps(enc, tgt_in, sampling)

    def forward_parallel(self, enc: dict, tgt_in: torch.Tensor) -> torch.Tensor:
        """All target positions at once (no input feeding) -> log-probabilities (B, T, V)."""
        out, _ = self.decoder(self.drop(self.tgt_emb(tgt_in)), enc["state"])
        h, _ = self.attend(out, enc)
        return self._logits(self.out_drop(h)).float().log_softmax(-1)

    def forward_steps(self, enc: dict, tgt_in: torch.Tensor, sampling: float = 0.0) -> torch.Tensor:
        """One :meth:`step` a target position (input feeding, scheduled sampling) -> log-probabilities (B, T, V)."""
        logps, prev = [], tgt_in[:, 0]
        for t in range(tgt_in.shape[1]):
            logp, enc, _ = self.step(prev, enc)
            logps.append(logp)
            if t + 1 < tgt_in.shape[1]:
                prev = tgt_in[:, t + 1]
                if sampling > 0:  # scheduled sampling: the model's own previous token for some items
                    own = logp.argmax(-1)
                    pick = torch.rand(prev.shape, device=prev.device) < sampling
                    prev = torch.where(pick & (prev != PAD), own, prev)
        return torch.stack(logps, 1)


class DecoderEnsemble(Ensemble):
    """K encoder-decoders decoded as one. Teacher-forced ``forward`` combines the members' log-probabilities by
    ``combine``; :meth:`encode` runs every member's encoder and :meth:`step` every member's decoder step, returning
    the log of the members' mean next-token probabilities (B, V) and their mean attention weights (B, S)."""

    @property
    def attn(self) -> nn.Module | None:
        return self.members[0].attn

    def encode(self, src: torch.Tensor, lengths: torch.Tensor) -> dict:
        return {"members": [m.encode(src, lengths) for m in self.members]}

    def step(self, prev: torch.Tensor, enc: dict) -> tuple[torch.Tensor, dict, torch.Tensor | None]:
        outs = [m.step(prev, e) for m, e in zip(self.members, enc["members"], strict=True)]
        logp = self.combine([o[0] for o in outs])  # the log of the mean next-token probabilities
        weights = None if outs[0][2] is None else torch.stack([o[2] for o in outs]).mean(0)
        return logp, {"members": [o[1] for o in outs]}, weights


# ---- decoding ---------------------------------------------------------------------------------------------------
def _select(enc: dict, idx: torch.Tensor) -> dict:
    """The decoder inputs of the rows ``idx`` (repeating items into beams, reordering beams)."""
    out = {}
    for k, v in enc.items():
        if k == "members":  # an ensemble: each member's inputs
            out[k] = [_select(e, idx) for e in v]
        elif k == "state":  # (layers, B, H) each
            out[k] = tuple(s.index_select(1, idx) for s in v) if isinstance(v, tuple) else v.index_select(1, idx)
        else:
            out[k] = None if v is None else v.index_select(0, idx)
    return out


@torch.no_grad()
def greedy(model: Seq2Seq, src: torch.Tensor, lengths: torch.Tensor, max_len: int,
           want_attention: bool = False) -> tuple[list[list[int]], list[float], list]:
    """Batched greedy decoding -> token ids per item (without <s>, </s>), their log-probabilities, attention."""
    enc = model.encode(src, lengths)
    B = src.shape[0]
    prev = torch.full((B,), BOS, dtype=torch.long, device=src.device)
    done = torch.zeros(B, dtype=torch.bool, device=src.device)
    out, score, attn = [[] for _ in range(B)], torch.zeros(B, device=src.device), []
    for _ in range(max_len):
        logp, enc, w = model.step(prev, enc)
        tok = logp.argmax(-1)
        score += torch.where(done, torch.zeros_like(score), logp.gather(1, tok[:, None])[:, 0])
        if want_attention and w is not None:
            attn.append(w.cpu())
        for i in torch.nonzero(~done).flatten().tolist():
            if int(tok[i]) != EOS:
                out[i].append(int(tok[i]))
        done |= tok == EOS
        prev = tok
        if bool(done.all()):
            break
    weights = torch.stack(attn, 1) if attn else None  # (B, steps, S)
    return out, score.tolist(), [weights[i, : len(o) + 1] for i, o in enumerate(out)] if weights is not None else []


@torch.no_grad()
def beam_search(model: Seq2Seq, src: torch.Tensor, lengths: torch.Tensor, max_len: int, beam: int,
                n_best: int = 1, alpha: float = 1.0) -> list[list[tuple[list[int], float]]]:
    """Batched beam search -> per item, the ``n_best`` (ids, log-probability) by length-normalised score
    ``log p / len ** alpha`` (len counts the </s>)."""
    B, dev = src.shape[0], src.device
    enc = model.encode(src, lengths)
    rows = torch.arange(B, device=dev).repeat_interleave(beam)
    enc = _select(enc, rows)
    scores = torch.full((B, beam), float("-inf"), device=dev)
    scores[:, 0] = 0.0  # one live hypothesis per item to start
    seqs = torch.full((B, beam, 0), BOS, dtype=torch.long, device=dev)
    prev = torch.full((B * beam,), BOS, dtype=torch.long, device=dev)
    finished: list[list[tuple[list[int], float, float]]] = [[] for _ in range(B)]
    for t in range(max_len):
        logp, enc, _ = model.step(prev, enc)
        V = logp.shape[-1]
        cand = (scores[:, :, None] + logp.view(B, beam, V)).view(B, -1)  # (B, beam*V)
        top, idx = cand.topk(2 * beam, dim=1)
        src_beam, tok = idx // V, idx % V
        new_scores = torch.full((B, beam), float("-inf"), device=dev)
        new_seqs = seqs.new_zeros(B, beam, t + 1)
        choose = torch.zeros(B, beam, dtype=torch.long, device=dev)
        for b in range(B):
            k = 0
            for j in range(2 * beam):
                s, sb, tk = float(top[b, j]), int(src_beam[b, j]), int(tok[b, j])
                if s == float("-inf"):
                    break
                if tk == EOS or t == max_len - 1:
                    ids = seqs[b, sb].tolist() + ([] if tk == EOS else [tk])
                    finished[b].append((ids, s, s / (len(ids) + 1) ** alpha))
                    continue
                if k < beam:
                    new_scores[b, k], choose[b, k] = s, b * beam + sb
                    new_seqs[b, k, :t] = seqs[b, sb]
                    new_seqs[b, k, t] = tk
                    k += 1
        best_live = new_scores.max(1).values
        enough = [len(finished[b]) >= beam and (
            max(f[2] for f in finished[b]) >= float(best_live[b]) / (t + 2) ** alpha) for b in range(B)]
        scores, seqs = new_scores, new_seqs
        if all(enough) or bool(torch.isinf(best_live).all()):
            break
        enc = _select(enc, choose.view(-1))
        prev = seqs[:, :, -1].reshape(-1)
    out = []
    for b in range(B):
        ranked = sorted(finished[b], key=lambda f: -f[2])[:n_best] or [([], float("-inf"), 0.0)]
        out.append([(ids, s) for ids, s, _ in ranked])
    return out


# ---- the task -------------------------------------------------------------------------------------------------
@dataclass
class PairSplit:
    """Encoded pairs: ``src`` list of id lists, ``tgt`` list of id lists (the first reference, with </s>),
    ``refs`` the references as token lists, ``texts`` the source strings."""

    src: list[list[int]]
    tgt: list[list[int]]
    refs: list[list[list[str]]]
    texts: list[str]

    def __len__(self) -> int:
        return len(self.src)


def pad(seqs: list[list[int]], front: int | None = None) -> torch.Tensor:
    """Lists of ids -> (B, max length) int64, 0-padded, with ``front`` prepended to each when given."""
    rows = [([front] if front is not None else []) + s for s in seqs]
    out = torch.zeros(len(rows), max(1, max(len(r) for r in rows)), dtype=torch.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r, dtype=torch.int64)
    return out


@register_task("seq2seq")
class Seq2SeqTask(Task):
    verbs = ("text", "explain")  # rnnkit predict --text, rnnkit explain (attention)
    model_config = Seq2SeqModelConfig
    data_config = Seq2SeqDataConfig
    metrics = ("loss", "wer", "ter")
    running_metric = "token_accuracy"

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        self.src_vocab: Vocab | None = None
        self.tgt_vocab: Vocab | None = None
        self.decode_options: dict[str, Any] = {}  # beam_size, n_best for prediction (the CLI sets them)

    @classmethod
    def check_config(cls, cfg: Config) -> None:
        if cfg.training.monitor not in ("val_loss", "train_loss", "val_wer", "val_ter"):
            raise ConfigError(f"training.monitor: {cfg.training.monitor} is not a seq2seq metric; use val_loss, "
                              "val_wer or val_ter")

    # -- data
    def setup(self) -> None:
        from rnnkit.data import DataError
        from rnnkit.data.pairs import Pairs
        from rnnkit.data.sources import load_part

        d = self.cfg.data
        parts = {p: load_part("pairs", d, p) for p in ("train", "val", "test")}
        train = parts["train"]
        if train is None or not len(train):
            raise DataError("the training part holds no pairs; check data.path / data.source")
        rng = np.random.default_rng(self.cfg.training.seed if self.cfg.training.split_seed is None
                                    else self.cfg.training.split_seed)
        for name, frac in (("test", d.test_fraction), ("val", d.val_fraction)):
            if parts[name] is None and frac > 0:
                perm = rng.permutation(len(train))
                cut = max(1, int(round(len(train) * frac)))
                take, keep = np.sort(perm[:cut]), np.sort(perm[cut:])
                parts[name] = Pairs([train.sources[i] for i in take], [train.references[i] for i in take])
                train = Pairs([train.sources[i] for i in keep], [train.references[i] for i in keep])
        if not len(train):
            raise DataError(f"{len(parts['train'])} pair(s) (repeated sources count once) leave none for training "
                            "after the validation and test parts; give more pairs or lower data.val_fraction and "
                            "data.test_fraction")
        parts["train"] = train
        if d.limit is not None:
            parts["train"] = Pairs(train.sources[: d.limit], train.references[: d.limit])
        self.src_vocab = Vocab.build(parts["train"].sources, d.source_level, d.lower, d.min_freq)
        self.tgt_vocab = Vocab.build([r for rs in parts["train"].references for r in rs], d.target_level, d.lower,
                                     d.min_freq)
        for side, vocab in (("source", self.src_vocab), ("target", self.tgt_vocab)):
            if len(vocab.itos) == len(SPECIALS):  # every token <unk>: the model would learn nothing
                raise DataError(f"data.min_freq {d.min_freq} leaves no {side} token in the vocabulary (none appears "
                                f"that often in the {len(parts['train'])} training pairs); lower data.min_freq")
        self.splits = {k: self.encode(v) for k, v in parts.items() if v is not None and len(v)}

    def encode(self, pairs) -> PairSplit:
        src = [self.src_vocab.encode(s) or [UNK] for s in pairs.sources]
        tgt = [self.tgt_vocab.encode(rs[0]) + [EOS] for rs in pairs.references]
        refs = [[self.tgt_vocab.split(r) for r in rs] for rs in pairs.references]
        return PairSplit(src, tgt, refs, list(pairs.sources))

    def as_input(self, data, where: str = "input", labels: bool = True) -> PairSplit:
        """A list of source strings, or a file of pairs (CSV/TSV/JSONL; one source per line otherwise)."""
        from rnnkit.data.pairs import Pairs, read_table

        if isinstance(data, PairSplit):
            return data
        if isinstance(data, str | Path):
            path = Path(data)
            if path.suffix in (".csv", ".tsv", ".jsonl", ".ndjson") and labels:
                data = read_table(path, self.cfg.data.source_column, self.cfg.data.target_column)
            else:
                from rnnkit.data.text import read_lines

                data = [s for s in read_lines(path) if s.strip()]
        if isinstance(data, list):
            from rnnkit.data.text import safe_text

            data = Pairs([safe_text(s).strip() for s in data], [["?"] for _ in data])
        return self.encode(data)

    def state(self) -> dict:
        return {"src_vocab": self.src_vocab.to_dict(), "tgt_vocab": self.tgt_vocab.to_dict()}

    def load_state(self, state: dict) -> None:
        self.src_vocab = Vocab.from_dict(state["src_vocab"])
        self.tgt_vocab = Vocab.from_dict(state["tgt_vocab"])

    def summary(self) -> dict:
        return {k: len(v) for k, v in self.splits.items()} | {"source_vocab": len(self.src_vocab),
                                                              "target_vocab": len(self.tgt_vocab)}

    def train_batches(self, epoch: int, start: int, rank: int, world: int):
        from rnnkit.data.text import bucket_batches

        train, t = self.splits["train"], self.cfg.training
        lengths = torch.tensor([len(s) for s in train.src])
        batches = bucket_batches(lengths, t.batch_size, t.seed, epoch, self.cfg.data.bucket_size, rank, world)
        for idx in batches[start:]:
            yield self.make_batch(train, idx)

    def make_batch(self, data: PairSplit, idx: torch.Tensor) -> dict:
        ids = idx.tolist()
        src = [data.src[i] for i in ids]
        tgt = [data.tgt[i] for i in ids]
        return {"src": pad(src), "lengths": torch.tensor([len(s) for s in src]), "tgt_in": pad(tgt, BOS)[:, :-1],
                "tgt_out": pad(tgt)}

    def build_model(self) -> nn.Module:
        return Seq2Seq(self.cfg.model, len(self.src_vocab), len(self.tgt_vocab))

    def combine(self, outputs: list) -> torch.Tensor:
        """Members' log-probabilities (B, [T,] V) -> the log of their mean probabilities."""
        return mean_probabilities(outputs)  # softmax of log-probabilities is the probabilities

    def ensemble(self, members: list[nn.Module]) -> nn.Module:
        """Greedy and beam search decode the members together, averaging next-token probabilities each step."""
        return DecoderEnsemble(members, self.combine)

    # -- training
    def step(self, model: nn.Module, batch: dict, device: torch.device) -> StepResult:
        m = self.cfg.model
        logp = model(batch["src"].to(device), batch["lengths"], batch["tgt_in"].to(device),
                     sampling=m.scheduled_sampling if model.training else 0.0)
        y = batch["tgt_out"].to(device)
        loss = F.nll_loss(logp.flatten(0, 1), y.flatten(), ignore_index=PAD, reduction="sum")
        if m.label_smoothing > 0:  # (1 - e) NLL + e * mean over the vocabulary of -log p
            keep = (y != PAD).flatten()
            smooth = -logp.flatten(0, 1)[keep].mean(-1).sum()
            loss = (1 - m.label_smoothing) * loss + m.label_smoothing * smooth
        count = int((y != PAD).sum())
        correct = float(((logp.argmax(-1) == y) & (y != PAD)).sum())
        return StepResult(loss, count, {"token_accuracy": correct})

    # -- decoding and evaluation
    def _max_len(self, lengths: torch.Tensor) -> int:
        return int(self.cfg.model.max_length_ratio * int(lengths.max()) + 10)

    @torch.no_grad()
    def decode(self, model: nn.Module, data: PairSplit, device: torch.device, beam: int = 1,
               n_best: int = 1) -> list[list[tuple[list[int], float]]]:
        """Every item's n-best (ids, log-probability), in the order of ``data``."""
        model.eval()
        out: list = [None] * len(data)
        order = sorted(range(len(data)), key=lambda i: -len(data.src[i]))
        bs = self.cfg.training.eval_batch_size if beam == 1 else max(1, self.cfg.training.eval_batch_size // beam)
        for s in range(0, len(order), bs):
            ids = order[s: s + bs]
            src = pad([data.src[i] for i in ids]).to(device)
            lengths = torch.tensor([len(data.src[i]) for i in ids])
            max_len = self._max_len(lengths)
            if beam == 1:
                seqs, scores, _ = greedy(model, src, lengths, max_len)
                res = [[(q, sc)] for q, sc in zip(seqs, scores, strict=True)]
            else:
                res = beam_search(model, src, lengths, max_len, beam, n_best, self.cfg.model.length_penalty)
            for i, r in zip(ids, res, strict=True):
                out[i] = r
        return out

    @torch.no_grad()
    def _loss(self, model: nn.Module, data: PairSplit, device: torch.device) -> float:
        model.eval()
        total, count, bs = 0.0, 0, self.cfg.training.eval_batch_size
        for s in range(0, len(data), bs):
            b = self.make_batch(data, torch.arange(s, min(s + bs, len(data))))
            logp = model(b["src"].to(device), b["lengths"], b["tgt_in"].to(device))
            y = b["tgt_out"].to(device)
            total += float(F.nll_loss(logp.flatten(0, 1), y.flatten(), ignore_index=PAD, reduction="sum"))
            count += int((y != PAD).sum())
        return total / max(count, 1)

    def evaluate(self, model: nn.Module, data: PairSplit, device: torch.device, beam: int | None = None) -> dict:
        """loss (per target token, teacher forcing), wer, ter, and bleu/chrf for word-level targets when sacrebleu
        is installed. Decoded greedily, except the test split (scored once, at the end) with ``model.beam_size``."""
        if beam is None:
            beam = self.cfg.model.beam_size if data is self.splits.get("test") else 1
        best = [r[0][0] for r in self.decode(model, data, device, beam)]
        hyps = [[self.tgt_vocab.itos[i] for i in ids if i > EOS] for ids in best]
        out = {"loss": self._loss(model, data, device), **error_rates(hyps, data.refs), "count": len(data),
               "beam_size": beam}
        if self.tgt_vocab.level == "word" and self.src_vocab.level == "word":
            out |= sacrebleu_scores([" ".join(h) for h in hyps], [[" ".join(r) for r in rs] for rs in data.refs])
        return out

    def predict(self, model: nn.Module, data: PairSplit, device: torch.device) -> list[dict]:
        """One record per source (per n-best entry with ``n_best`` > 1): index, source, output, log-probability,
        and the rank."""
        beam = int(self.decode_options.get("beam_size", self.cfg.model.beam_size))
        n_best = int(self.decode_options.get("n_best", self.cfg.model.n_best))
        res = self.decode(model, data, device, beam, min(n_best, beam))
        out = []
        for i, cands in enumerate(res):
            for rank, (ids, score) in enumerate(cands, 1):
                rec = {"index": i, "source": data.texts[i], "output": self.tgt_vocab.decode(ids),
                       "log_prob": round(float(score), 4)}
                if len(cands) > 1:
                    rec["rank"] = rank
                out.append(rec)
        return out

    @torch.no_grad()
    def attention(self, model: nn.Module, texts: list[str], device: torch.device) -> list[dict]:
        """Greedy outputs with their attention matrices (output steps x source tokens) for ``texts``."""
        if model.attn is None:
            return []
        data = self.as_input(list(texts), labels=False)
        model.eval()
        out = []
        for i in range(len(data)):
            src = pad([data.src[i]]).to(device)
            n = torch.tensor([len(data.src[i])])
            seqs, _, weights = greedy(model, src, n, self._max_len(n), want_attention=True)
            w = weights[0].numpy() if weights else np.zeros((0, 0))
            output = [self.tgt_vocab.itos[t] for t in seqs[0]]
            # one row of weights per decoded token, plus the </s> step unless decoding hit the length cap first
            out.append({"source": self.src_vocab.split(data.texts[i]),
                        "output": output + ["</s>"] * (len(w) > len(output)), "weights": w})
        return out

    def report_sections(self, run_dir: Path, metrics: dict, model: nn.Module | None = None) -> list:
        from rnnkit.report import Section, have_matplotlib, table

        sections = []
        data = self.splits.get("test")
        if model is None or data is None or not len(data):
            return sections
        device = next(model.parameters()).device
        best = [r[0][0] for r in self.decode(model, data, device, 1)]
        rows = []
        for i, ids in enumerate(best):
            hyp = [self.tgt_vocab.itos[t] for t in ids if t > EOS]
            refs = data.refs[i]
            d = min(edit_distance(hyp, r) for r in refs)
            if d:
                rows.append((d, data.texts[i], " ".join(hyp), " | ".join(" ".join(r) for r in refs)))
        rows.sort(key=lambda r: -r[0])
        sections.append(Section("Worst test errors (greedy)", table([list(r) for r in rows[:20]],
                                                                     ["edits", "source", "output", "references"])))
        if have_matplotlib() and model.attn is not None:
            sections.append(Section("Attention", _attention_html(self.attention(model, data.texts[:4], device))))
        return sections


def attention_figure(item: dict, most: int = 80):
    """A heat map of one attention matrix (rows: output tokens, columns: source tokens); at most ``most`` of
    each are drawn (the axis label says how many there were), so a long input cannot make a huge image."""
    from rnnkit.report import figure

    w = item["weights"]  # (len(output), source steps): Seq2SeqTask.attention keeps one label per row
    (total, _), n_src = w.shape, len(item["source"])
    rows, cols = min(total, most), min(n_src, most)
    fig = figure(0.4 * max(cols, 4) + 1.5, 0.35 * max(rows, 4) + 1.2)
    ax = fig.add_subplot()
    ax.imshow(w[:rows, :most], cmap="viridis", aspect="auto", vmin=0, vmax=1)
    ax.set_xticks(range(cols), item["source"][:cols])
    ax.set_yticks(range(rows), item["output"][:rows])
    ax.set_xlabel("source" + (f" (the first {cols} of {n_src} tokens)" if cols < n_src else ""))
    ax.set_ylabel("output" + (f" (the first {rows} of {total})" if rows < total else ""))
    return fig


def _attention_html(items: list[dict]) -> str:
    from rnnkit.report import png

    return "".join(png(attention_figure(it)) for it in items) + \
        "<p>Greedy decoding; each row is one output token's weights over the source.</p>"


__all__ = ["Attention", "DecoderEnsemble", "Seq2Seq", "Seq2SeqTask", "Vocab", "beam_search", "edit_distance",
           "error_rates", "greedy"]
