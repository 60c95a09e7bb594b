"""Language modelling: predict the next character (or word) of long text with stateful truncated BPTT.

Training reads ``B = training.batch_size`` parallel streams over the concatenated training documents,
``k = data.chunk_length`` tokens at a time. The recurrent state is carried from one chunk to the next and
detached (gradients flow back at most ``k`` steps), and reset to zero wherever a stream enters a new
document. An epoch is ``data.steps_per_epoch`` chunks (default: one pass over the text); every pass
starts the streams at a new seeded offset, so a position is a pure function of ``(seed, epoch, step)`` and
the carried state is saved in every checkpoint: a resumed run continues exactly.

Model: Embedding -> rnnkit RNN/LSTM/GRU -> dropout -> Linear over the vocabulary. Loss: cross-entropy in
nats per token; metrics: bits per token (``bpc``: bits per character at ``level: char``) and perplexity.
Sampling (:meth:`LanguageModel.sample`, ``rnnkit generate``) streams tokens with temperature / top-k
from a seeded generator, so a seed always gives the same text.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rnnkit.config import Config, ConfigError, DataConfig, ModelConfig, absent, files_required
from rnnkit.data.corpus import Chunk, Detokenizer, TokenStream, Vocab, eval_layout, stream_chunk
from rnnkit.errors import UsageError
from rnnkit.layers import Dropout
from rnnkit.tasks import register_task
from rnnkit.tasks.base import ExportSpec, StepResult, Task
from rnnkit.tasks.common import make_rnn

LN2 = math.log(2.0)
REPORT_TEMPERATURES = (0.5, 0.8, 1.0)


@dataclass
class LMModelConfig(ModelConfig):
    embedding_dim: int = 64  # size of each token's learned vector
    output_dropout: float = 0.0  # dropout on the embeddings and on the recurrent outputs

    def check(self) -> None:
        super().check()
        if self.embedding_dim <= 0:
            raise ConfigError(f"model.embedding_dim must be > 0, got {self.embedding_dim}")
        if not 0.0 <= self.output_dropout < 1.0:
            raise ConfigError(f"model.output_dropout must be in [0, 1), got {self.output_dropout}")
        if self.bidirectional:
            raise ConfigError("model.bidirectional: a language model reads left to right; set it to false")


@dataclass
class LMDataConfig(DataConfig):
    modality: ClassVar[str] = "corpus"
    source: str = "embedded"  # text, embedded, or any registered corpus source
    path: str | None = None  # training text: a UTF-8 file, or a folder of .txt files (less val/test files)
    files: list | None = None  # more training files (a list of paths)
    val_path: str | None = None  # validation text (file or folder); default: the tail of each document
    test_path: str | None = None  # test text (file or folder); default: test_fraction tails, if > 0
    name: str = "pride_and_prejudice"  # embedded text
    level: Literal["char", "word"] = "char"  # one token per character, or per word / punctuation mark
    lowercase: bool = False
    vocab_size: int | None = None  # keep the most frequent tokens (including the unknown one); null: all
    min_count: int = 1  # tokens seen fewer times in the training text are unknown
    chunk_length: int = 100  # k: steps of truncated backpropagation through time
    steps_per_epoch: int | None = None  # chunks per epoch; null: one pass over the training text
    eval_streams: int = 16  # parallel streams when evaluating (each starts from a zero state)
    dynamic_lr: float = 0.0  # > 0: the run's final val and test scores also come with dynamic evaluation
    #   (the model keeps learning from the text it has already scored: SGD at this rate after every chunk)
    val_fraction: float = 0.05
    test_fraction: float = 0.0
    limit: int | None = None  # use only the first N characters of the training text

    def check(self) -> None:
        self.check_source()
        if self.source == "text" and not self.path and not self.files and files_required():
            raise ConfigError("data.path is required for source: text (a .txt file or a folder of them)")
        if self.source == "embedded" and (self.path or self.files):
            raise ConfigError("data.path/files apply to source: text; set source: text or remove them")
        for key in ("path", "val_path", "test_path"):
            p = getattr(self, key)
            if p is not None and absent(p, "any"):
                raise ConfigError(f"data.{key}: not found: {p}")
        for p in self.files or []:
            if not isinstance(p, str) or absent(p):
                raise ConfigError(f"data.files: not a file: {p}")
        if self.standardize or self.options or self.normalize != "none":
            raise ConfigError("data.standardize and data.options do not apply to task: language_model; remove them")
        if not 0.0 <= self.val_fraction < 1.0 or not 0.0 <= self.test_fraction < 1.0:
            raise ConfigError("data.val_fraction and data.test_fraction must be in [0, 1)")
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ConfigError("data.val_fraction + data.test_fraction must leave some training text (< 1)")
        if not (isinstance(self.dynamic_lr, int | float) and 0 <= self.dynamic_lr < 10):
            raise ConfigError(f"data.dynamic_lr must be a number in [0, 10) (0: off), got {self.dynamic_lr}")
        for key in ("chunk_length", "eval_streams", "min_count"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"data.{key} must be > 0, got {getattr(self, key)}")
        for key in ("limit", "steps_per_epoch"):
            if getattr(self, key) is not None and getattr(self, key) <= 0:
                raise ConfigError(f"data.{key} must be > 0 or null, got {getattr(self, key)}")
        if self.vocab_size is not None and self.vocab_size < 2:
            raise ConfigError(f"data.vocab_size must be >= 2 (the unknown token and one more), got {self.vocab_size}")


class RecurrentLM(nn.Module):
    """ids (B, T) int64, state, resets (B, T) bool | None -> logits (B, T, V), final state.

    ``resets[b, t]``: stream ``b`` starts a new document at step ``t``; its state is zeroed before that step
    (the chunk is run in segments between such steps, each through the fused kernel where it applies)."""

    def __init__(self, m: LMModelConfig, vocab_size: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, m.embedding_dim)
        self.rnn = make_rnn(m, m.embedding_dim)
        self.drop = Dropout(m.output_dropout)
        self.head = nn.Linear(m.hidden_size, vocab_size)

    def forward(self, ids: torch.Tensor, state=None, resets: torch.Tensor | None = None):
        x = self.drop(self.embed(ids))  # (B, T, E)
        cuts = [0] if resets is None else sorted({0, *torch.nonzero(resets.any(0)).flatten().tolist()})
        outs = []
        for a, b in zip(cuts, [*cuts[1:], ids.shape[1]], strict=True):
            if state is not None and resets is not None and bool(resets[:, a].any()):
                keep = (~resets[:, a]).to(x.dtype)[None, :, None]  # (1, B, 1)
                state = tuple(s * keep for s in state) if isinstance(state, tuple) else state * keep
            out, state = self.rnn(x[:, a:b], state)
            outs.append(out)
        out = outs[0] if len(outs) == 1 else torch.cat(outs, 1)  # (B, T, H)
        return self.head(self.drop(out)), state


class LMStep(nn.Module):
    """The language model with its state as plain tensors: (ids (B, T), h0[, c0]) -> (logits (B, T, V), h_n[, c_n]),
    so an exported graph can be stepped (feed h_n back) to generate."""

    def __init__(self, model: RecurrentLM) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor | None = None):
        logits, h = self.model(ids, h0 if c0 is None else (h0, c0))
        return (logits, *(h if isinstance(h, tuple) else (h,)))


def _detach(state):
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


@dataclass(frozen=True)
class Batch:
    """One chunk as tensors: x, y (S, k) int64; resets, mask (S, k) bool."""

    x: torch.Tensor
    y: torch.Tensor
    resets: torch.Tensor
    mask: torch.Tensor

    @classmethod
    def of(cls, c: Chunk) -> Batch:
        return cls(*(torch.from_numpy(np.ascontiguousarray(a)) for a in (c.x, c.y, c.resets, c.mask)))


@register_task("language_model")
class LanguageModel(Task):
    verbs = ("generate",)
    model_config = LMModelConfig
    data_config = LMDataConfig
    metrics = ("loss", "bpc", "perplexity")
    running_metric = "bpc"

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        self.vocab = Vocab(["<unk>"])
        self.counts = np.zeros(1)  # training-token counts per id (the unigram baseline)
        self.carry = None  # the state carried between training chunks: tensor, or (h, c) for LSTM

    # ---- data ------------------------------------------------------------------------------------------
    def _read(self) -> tuple[list[tuple[str, str]], list | None, list | None]:
        from rnnkit.data.corpus import read_documents
        from rnnkit.data.sources import load_part

        d = self.cfg.data
        val = read_documents([d.val_path]) if d.val_path else None
        test = read_documents([d.test_path]) if d.test_path else None
        return load_part("corpus", d), val, test

    def setup(self) -> None:
        from rnnkit.data import DataError
        from rnnkit.data.corpus import split_tail

        d, t = self.cfg.data, self.cfg.training
        train_docs, val_docs, test_docs = self._read()
        if d.limit is not None:
            kept, left = [], d.limit
            for name, text in train_docs:
                if left > 0:
                    kept.append((name, text[:left]))
                    left -= len(text)
            train_docs = kept
        self.vocab = Vocab.build((text for _, text in train_docs), d.level, d.vocab_size, d.min_count, d.lowercase)
        names = [name for name, _ in train_docs]
        docs = [self.vocab.encode(text) for _, text in train_docs]
        splits: dict[str, TokenStream] = {}
        total, need = sum(len(x) for x in docs), t.batch_size * d.chunk_length
        if total < need:  # checked before the splits too: a tail of a tiny text is nothing at all
            raise DataError(f"the training text has {total} tokens: too few for training.batch_size {t.batch_size} "
                            f"streams of data.chunk_length {d.chunk_length} (at least {need}); lower them or give "
                            "more text")
        if test_docs is None and d.test_fraction > 0:  # each document: [train | val | test], contiguous
            docs, tails = split_tail(docs, d.test_fraction)
            splits["test"] = TokenStream.from_arrays(tails, names)
        if val_docs is None and d.val_fraction > 0:
            docs, tails = split_tail(docs, d.val_fraction / (1.0 - (d.test_fraction if "test" in splits else 0.0)))
            splits["val"] = TokenStream.from_arrays(tails, names)
        for split, given in (("val", val_docs), ("test", test_docs)):
            if given is not None:
                splits[split] = TokenStream.from_arrays([self.vocab.encode(x) for _, x in given], [n for n, _ in given])
        splits["train"] = TokenStream.from_arrays(docs, names)
        self.splits = {k: splits[k] for k in ("train", "val", "test") if k in splits}
        self.counts = np.bincount(self.splits["train"].ids, minlength=len(self.vocab)).astype(np.float64)
        n = len(self.splits["train"])
        if n // t.batch_size < d.chunk_length:
            raise DataError(f"the training text has {n} tokens: too few for training.batch_size {t.batch_size} "
                            f"streams of data.chunk_length {d.chunk_length}; lower them or give more text")
        for split in ("val", "test"):
            if split in self.splits and self.splits[split].num_targets == 0:
                raise DataError(f"the {split} text is empty; give more text or set data.{split}_fraction: 0")
        self.carry = None

    def state(self) -> dict:
        return {"vocab": self.vocab.to_dict(), "counts": self.counts.astype(int).tolist()}

    def load_state(self, state: dict) -> None:
        self.vocab = Vocab.from_dict(state["vocab"])
        self.counts = np.asarray(state["counts"], dtype=np.float64)

    def export_spec(self, model: nn.Module, data: TokenStream | None) -> ExportSpec:
        B, T = 2, 16
        if data is not None and len(data.ids) >= B * T:
            ids = torch.from_numpy(np.asarray(data.ids[: B * T], dtype=np.int64)).view(B, T)
        else:
            ids = torch.randint(0, len(self.vocab), (B, T), generator=torch.Generator().manual_seed(0))
        rnn = model.rnn
        sizes = rnn.cell.state_sizes()
        state = tuple(torch.zeros(rnn.num_layers * rnn.num_directions, B, s) for s in sizes)
        names = ["h0", "c0"][: len(sizes)]
        return ExportSpec(LMStep(model), (ids, *state), ["ids", *names], ["logits", *("h_n", "c_n")[: len(sizes)]],
                          {"ids": {0: "batch", 1: "time"}, **{n: {1: "batch"} for n in names}},
                          f"ids (batch, time) int64 token ids of the run's vocabulary ({len(self.vocab)} tokens), "
                          f"{' and '.join(names)} (layers, batch, H) float32 (zeros to start) -> logits (batch, time, "
                          f"{len(self.vocab)}) and the state to feed back")

    def summary(self) -> dict:
        d = self.cfg.data
        out = {"level": d.level, "vocab_size": len(self.vocab)}
        out.update({f"{k}_tokens": len(s) for k, s in self.splits.items()})
        out.update({f"{k}_documents": ", ".join(s.names) for k, s in self.splits.items()})
        out.update({"streams": self.cfg.training.batch_size, "chunk_length": d.chunk_length,
                    "chunks_per_pass": self._chunks_per_pass() if "train" in self.splits else None})
        return out

    def encode_texts(self, texts: list[str], names: list[str] | None = None) -> TokenStream:
        """Texts (one document each) -> a TokenStream with this run's vocabulary."""
        return TokenStream.from_arrays([self.vocab.encode(x) for x in texts],
                                       names or [f"text{i}" for i in range(len(texts))])

    def as_input(self, data, where: str = "input", labels: bool = True) -> TokenStream:
        """A TokenStream, a .txt file or folder path, or a list of them -> TokenStream."""
        from rnnkit.data.corpus import read_documents

        if isinstance(data, TokenStream):
            return data
        paths = list(data) if isinstance(data, list | tuple) else [data]
        docs = read_documents(paths)
        stream = self.encode_texts([x for _, x in docs], [n for n, _ in docs])
        if not stream.num_targets:  # each document's first token is read, not predicted
            from rnnkit.data import DataError

            raise DataError(f"{', '.join(map(str, paths))}: fewer than two {self.vocab.level} tokens in each "
                            "document, so none to predict; give a text file with some text")
        return stream

    # ---- model and training ----------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        return RecurrentLM(self.cfg.model, len(self.vocab))

    def _chunks_per_pass(self) -> int:
        return len(self.splits["train"]) // self.cfg.training.batch_size // self.cfg.data.chunk_length

    def num_train_batches(self, world: int = 1) -> int:
        return self.cfg.data.steps_per_epoch or self._chunks_per_pass()

    def train_batches(self, epoch: int, start: int, rank: int, world: int) -> Iterator[Batch]:
        """Chunk ``g = epoch * steps_per_epoch + i`` of pass ``g // C`` (C chunks per pass) for i >= start.

        Pass ``p`` lays the B streams at ``o_p + b * (N // B)`` with ``o_p`` drawn from ``(seed, p)``; the
        first chunk of a pass resets every stream. This process reads streams ``rank::world``."""
        d, t = self.cfg.data, self.cfg.training
        train, k = self.splits["train"], d.chunk_length
        n, streams, per_pass = len(train), t.batch_size, self._chunks_per_pass()
        mine = np.arange(streams)[rank::world]
        for i in range(start, self.num_train_batches(world)):
            g = epoch * self.num_train_batches(world) + i
            pas, j = divmod(g, per_pass)
            gen = torch.Generator().manual_seed(t.seed * 1_000_003 + pas)
            offset = int(torch.randint(n, (1,), generator=gen))
            c = stream_chunk(train, offset + mine * (n // streams) + j * k, k)
            if j == 0:
                c.resets[:, 0] = True
            yield Batch.of(c)

    def make_batch(self, data: TokenStream, idx: torch.Tensor) -> Batch:
        """Chunks ``idx`` of ``data`` cut into ``chunk_length`` pieces from its start, one per stream, each read
        from a fresh state (what ``rnnkit diagnose`` traces): x, y (len(idx), chunk_length)."""
        k = self.cfg.data.chunk_length
        c = stream_chunk(data, np.asarray(idx, dtype=np.int64) * k, k)  # positions wrap modulo the text's length
        c.resets[:, 0] = True
        return Batch.of(c)

    def step(self, model: nn.Module, batch: Batch, device: torch.device) -> StepResult:
        carry = self.carry
        if carry is not None and (carry[0] if isinstance(carry, tuple) else carry).shape[1] != batch.x.shape[0]:
            carry = None  # batch size changed by an override on resume: start the streams afresh
        logits, state = model(batch.x.to(device), carry, batch.resets.to(device))
        self.carry = _detach(state)
        mask = batch.mask.to(device)
        nll = F.cross_entropy(logits.flatten(0, 1).float(), batch.y.to(device).flatten(), reduction="none")
        loss_sum = (nll * mask.flatten()).sum()
        return StepResult(loss_sum, int(mask.sum()), {"bpc": float(loss_sum.detach()) / LN2})

    def carry_tensors(self) -> dict[str, torch.Tensor]:
        if self.carry is None:
            return {}
        parts = self.carry if isinstance(self.carry, tuple) else (self.carry,)
        return {f"state{i}": s.contiguous() for i, s in enumerate(parts)}

    def load_carry(self, tensors: dict[str, torch.Tensor]) -> None:
        parts = tuple(tensors[f"state{i}"] for i in range(len(tensors)))
        self.carry = None if not parts else parts if len(parts) > 1 else parts[0]

    # ---- evaluation, prediction, sampling --------------------------------------------------------------
    def _score(self, model: nn.Module, data: TokenStream, device: torch.device, lr: float = 0.0) -> dict:
        """Score ``data`` once with ``eval_streams`` contiguous streams and carried state -> ``loss`` (nats per
        token), ``bpc``, ``perplexity``, ``count``. With ``lr`` > 0 (dynamic evaluation) a copy of the model takes
        one SGD step of rate ``lr`` on each chunk's loss (gradients clipped to norm 1) after scoring it."""
        k = self.cfg.data.chunk_length
        pos, end, chunks = eval_layout(len(data), self.cfg.data.eval_streams, k)
        if lr > 0:
            import copy

            model = copy.deepcopy(model)  # the run's model is not changed
            params = [p for p in model.parameters() if p.requires_grad]
            opt = torch.optim.SGD(params, lr=lr)
        model.eval()
        nats, count, state = 0.0, 0, None
        for j in range(chunks):
            b = Batch.of(stream_chunk(data, pos + j * k, k, end))
            mask = b.mask.to(device).flatten()
            with torch.set_grad_enabled(lr > 0):
                logits, state = model(b.x.to(device), state, b.resets.to(device))
                nll = F.cross_entropy(logits.flatten(0, 1).float(), b.y.to(device).flatten(), reduction="none")
                scored = (nll * mask).sum()
            nats, count = nats + float(scored.detach()), count + int(mask.sum())
            if lr > 0:
                if mask.any():  # scored above, before this update
                    opt.zero_grad(set_to_none=True)
                    (scored / mask.sum()).backward()
                    torch.nn.utils.clip_grad_norm_(params, 1.0)
                    opt.step()
                state = _detach(state)
        loss = nats / max(count, 1)
        return {"loss": loss, "bpc": loss / LN2, "perplexity": math.exp(min(loss, 700.0)), "count": count}

    def evaluate(self, model: nn.Module, data: TokenStream, device: torch.device) -> dict:
        """``loss`` (nats per token), ``bpc`` (bits per token), ``perplexity``, ``count`` (tokens predicted)
        and ``unigram_bpc`` (the training-frequency baseline on the same text)."""
        from rnnkit.data.corpus import unigram_bits

        return self._score(model, data, device) | {"unigram_bpc": unigram_bits(self.counts, data)}

    def final_evaluate(self, model: nn.Module, data: TokenStream, device: torch.device) -> dict:
        """The run's closing score of a split: :meth:`evaluate`, and with ``data.dynamic_lr`` > 0 the dynamic
        evaluation too (``dynamic``: loss, bpc, perplexity, lr), beside the static ``bpc`` (which the baselines
        are judged against)."""
        out = self.evaluate(model, data, device)
        if self.cfg.data.dynamic_lr > 0:
            out["dynamic"] = self.dynamic_evaluate(model, data, device, self.cfg.data.dynamic_lr)
        return out

    def dynamic_evaluate(self, model: nn.Module, data: TokenStream, device: torch.device, lr: float) -> dict:
        """Dynamic evaluation (Krause et al. 2018, its SGD form): the text is read as in :meth:`evaluate`, and
        after each chunk (``eval_streams`` x ``chunk_length`` tokens) has been scored, a copy of the model takes
        one SGD step of rate ``lr`` on that chunk's loss (gradients clipped to norm 1), carrying its state on.
        Every token is scored before any update that has seen it, so the total is an honest prequential code
        length of the text, read in the streams' interleaved order; ``model`` itself is not changed.
        -> ``loss`` (nats per token), ``bpc``, ``perplexity``, ``count``, ``lr``."""
        if not 0 < lr < 10:
            raise UsageError(f"the dynamic-evaluation rate must be in (0, 10), got {lr}")
        return self._score(model, data, device, lr) | {"lr": lr}

    def predict(self, model: nn.Module, data: TokenStream, device: torch.device) -> list[dict]:
        """One record per document: its name, tokens predicted, bits per token and perplexity."""
        out = []
        for i, (name, ids) in enumerate(zip(data.names, data.documents(), strict=True)):
            m = self.evaluate(model, TokenStream.from_arrays([ids], [name]), device)
            scored = m["count"] > 0  # a one-token document has nothing to predict: no score, not a perfect one
            out.append({"index": i, "document": name, "tokens": m["count"],
                        "bpc": round(m["bpc"], 6) if scored else None,
                        "perplexity": round(m["perplexity"], 6) if scored else None})
        return out

    def default_prime(self) -> str:
        for tok in ("\n", ".") if self.vocab.level == "char" else (".", "\n\n"):
            if tok in self.vocab.index:
                return tok
        return self.vocab.tokens[int(np.argmax(self.counts[1:])) + 1] if len(self.vocab) > 1 else ""

    @torch.no_grad()
    def sample(self, model: nn.Module, prime: str | None = None, length: int = 500, temperature: float = 1.0,
               top_k: int | None = None, seed: int = 0, device: torch.device | str = "cpu") -> Iterator[str]:
        """Stream ``length`` sampled tokens (as text pieces) after reading ``prime`` (default: a line or
        sentence break). ``temperature`` 0 is greedy; ``top_k`` keeps the k likeliest tokens; the unknown
        token is never drawn. The same seed gives the same text."""
        _check_sampling(length, temperature, top_k, seed)
        model.eval()
        device = torch.device(device)
        ids = self.vocab.encode(prime if prime else self.default_prime())
        if len(ids) == 0:
            raise UsageError(f"the prime {prime!r} has no tokens at level {self.vocab.level}; give some text")
        gen = torch.Generator(device=device).manual_seed(seed)
        detok = Detokenizer(self.vocab)
        for i in ids.tolist():
            detok.piece(i)  # word spacing continues from the prime
        logits, state = model(torch.from_numpy(ids)[None].to(device))
        last = logits[0, -1].float()
        for _ in range(length):
            if len(self.vocab) > 1:
                last[0] = -math.inf
            if temperature == 0:
                nxt = int(last.argmax())
            else:
                scores = last / temperature
                if top_k is not None and top_k < len(scores):
                    scores[scores < scores.topk(top_k).values[-1]] = -math.inf
                nxt = int(torch.multinomial(scores.softmax(-1), 1, generator=gen))
            yield detok.piece(nxt)
            logits, state = model(torch.tensor([[nxt]], device=device), state)
            last = logits[0, -1].float()

    def generate(self, model: nn.Module, prime: str | None = None, length: int = 500, **kw) -> str:
        """:meth:`sample` joined into one string (without the prime)."""
        return "".join(self.sample(model, prime, length, **kw))

    def finalize_metrics(self, metrics: dict) -> dict:
        """Add the unigram and the interpolated Witten-Bell n-gram baselines (order chosen on the validation split
        among 2..8 for characters, 2..4 for words), fitted on the training text, in bits per token on the test
        text, and judge the model against them."""
        from rnnkit.tasks import baselines

        train, test, val = self.splits.get("train"), self.splits.get("test"), self.splits.get("val")
        if not self.cfg.training.baselines or train is None or test is None or "test" not in metrics:
            return metrics
        V = len(self.vocab)

        def targets(s: TokenStream) -> np.ndarray:  # what the model predicts: every token but documents' first
            return s.ids[~s.starts]

        orders = range(2, 9) if self.vocab.level == "char" else range(2, 5)
        if val is not None and val.num_targets:
            order = min(orders, key=lambda n: baselines.ngram_bits(train.ids, val.ids, V, n))
        else:  # no validation text to choose on: the usual orders
            order = 5 if self.vocab.level == "char" else 3
        metrics["baselines"] = {"unigram": {"bpc": baselines.unigram_bits(train.ids, targets(test), V)},
                                f"ngram_{order}": {"bpc": baselines.ngram_bits(train.ids, test.ids, V, order),
                                                   "order": order}}
        return baselines.judge(metrics, "bpc", False, f"bits per {self.vocab.level}")

    def report_sections(self, run_dir: Path, metrics: dict, model: nn.Module | None = None) -> list:
        from rnnkit.report import Section, table
        from rnnkit.tasks import baselines

        which = "trained (best)"
        if model is None:  # a report rebuilt from the folder: the best checkpoint's weights
            from rnnkit.training import checkpoint as ckpt

            where = run_dir / "checkpoints" / ("best" if (run_dir / "checkpoints" / "best").exists() else "last")
            model = self.build_model()
            model.load_state_dict(ckpt.tensors_from_bytes(ckpt.read_checkpoint(where)["model.safetensors"]))
            which = where.name
        unit = "character" if self.vocab.level == "char" else "word"
        rows = [[split, m["bpc"], m["perplexity"], m["unigram_bpc"], m["count"]]
                for split, m in metrics.items() if split in ("val", "test") and isinstance(m, dict)]
        head = table(rows, ["split", f"bits per {unit}", "perplexity", "unigram baseline", f"{unit}s"])
        prime = self.default_prime()
        body = ""
        for temp in REPORT_TEMPERATURES:
            text = prime + self.generate(model, None, 400, temperature=temp, seed=0)
            body += f"<h3>temperature {temp}</h3><pre>{html.escape(text)}</pre>"
        note = f"<p>{which} checkpoint, seed 0, 400 {unit}s after {prime!r}; reproduce with " \
               f"<code>rnnkit generate {html.escape(str(run_dir))} --temperature T --seed 0</code></p>"
        out = [Section(f"Bits per {unit}", head)]
        judged = baselines.section(metrics, "bpc", False, f"bits per {unit}")
        return [*out, *([judged] if judged is not None else []), Section("Samples", note + body)]


__all__ = ["LMDataConfig", "LMModelConfig", "LanguageModel", "RecurrentLM"]


MAX_SAMPLE_LENGTH = 10_000_000  # tokens one call may sample (the CLI's --length bound too)


def _whole(v: object) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool)


def _check_sampling(length: object, temperature: object, top_k: object, seed: object) -> None:
    """The sampling arguments of :meth:`LanguageModelTask.sample`, each refused with its name and range."""
    if not _whole(length) or not 0 <= length <= MAX_SAMPLE_LENGTH:
        raise UsageError(f"length must be a whole number in [0, {MAX_SAMPLE_LENGTH:_}], got {length!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, int | float | np.floating | np.integer) \
            or not math.isfinite(temperature) or temperature < 0:
        raise UsageError(f"temperature must be a finite number >= 0 (0 is greedy), got {temperature!r}")
    if top_k is not None and (not _whole(top_k) or top_k < 1):
        raise UsageError(f"top_k must be a whole number >= 1 or None, got {top_k!r}")
    if not _whole(seed) or not 0 <= seed < 2**63:
        raise UsageError(f"seed must be a whole number in [0, 2**63), got {seed!r}")
