"""Which tokens made a text classifier decide: integrated gradients over the embeddings.

For a text with embeddings ``e`` (T, E) and the baseline ``b`` = the padding embedding (zeros), the
importance of token t for class c is (Sundararajan et al. 2017)::

    IG_t = sum_j (e - b)_tj * mean_{k=1..S} d f_c(b + a_k (e - b)) / d e_tj,   a_k = (k - 1/2) / S

where ``f_c`` is the logit of class c (for two classes: the sigmoid logit, negated for the first class).
Completeness: ``sum_t IG_t`` equals ``f_c(e) - f_c(b)`` up to the Riemann error of S steps, which each
explanation reports as ``delta``. The S interpolated texts run as one batch of S.

    exps = explain_texts(run, ["a wonderful film", "dull and far too long"])
    Path("explain.html").write_text(page(exps))
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import torch
from torch import nn

from rnnkit.config import MAX_IG_STEPS, ConfigError
from rnnkit.data.text import Corpus, truncate


@dataclass
class Explanation:
    tokens: list[str]  # what the model read, after truncation (``<oov>``-mapped tokens keep their word)
    unknown: list[bool]  # token mapped to <oov>
    scores: list[float]  # (T,) integrated gradients towards ``predicted``
    predicted: str
    probability: float
    delta: float  # sum(scores) - (f(text) - f(baseline)): the approximation error
    truncated: bool = False

    def to_dict(self) -> dict:
        return {"predicted": self.predicted, "probability": self.probability, "delta": self.delta,
                "truncated": self.truncated,
                "tokens": [{"token": t, "score": round(s, 6), "unknown": u}
                           for t, s, u in zip(self.tokens, self.scores, self.unknown, strict=True)]}


def _score(logits: torch.Tensor, target: int) -> torch.Tensor:
    """(S,) or (S, K) logits -> (S,) score of class ``target``."""
    if logits.dim() == 1:
        return logits if target == 1 else -logits
    return logits[:, target]


def integrated_gradients(model: nn.Module, ids: torch.Tensor, target: int | None = None,
                         steps: int = 50) -> tuple[torch.Tensor, int, float, float]:
    """ids (T,) int64 -> (importance (T,), target class, its probability, completeness delta).
    ``target=None``: the predicted class. ``model`` needs ``embedding`` and ``forward_embedded``."""
    if not hasattr(model, "forward_embedded"):  # an ensemble: each member has its own embedding
        from rnnkit.errors import UsageError

        raise UsageError("explanations need a single model, and this run is an ensemble (training.ensemble); "
                         "explain one member instead: rnnkit explain RUN/members/0 --text ...")
    model.eval()
    device = next(model.parameters()).device
    ids = ids.to(device)
    with torch.no_grad():
        emb = model.embedding(ids[None])  # (1, T, E)
        logits = model.forward_embedded(emb).float()
        full = logits
        bag = getattr(model, "bag", None)
        if bag is not None:  # the wide half is a constant for one text: it moves the decision, not the attributions
            wide = bag(ids[None], torch.tensor([ids.shape[0]])).float()
            full = logits + (wide.squeeze(-1) if model.binary else wide)
        probs = torch.cat([1 - torch.sigmoid(full), torch.sigmoid(full)]) if full.dim() == 1 else full.softmax(-1)[0]
        if target is None:
            target = int(probs.argmax())
        base = torch.zeros_like(emb)
        f_x, f_b = _score(logits, target)[0], _score(model.forward_embedded(base).float(), target)[0]
    alphas = ((torch.arange(steps, device=device) + 0.5) / steps)[:, None, None]  # (S, 1, 1)
    path = (base + alphas * (emb - base)).requires_grad_(True)  # (S, T, E)
    with torch.enable_grad():
        scores = _score(model.forward_embedded(path).float(), target)
        (grads,) = torch.autograd.grad(scores.sum(), path)
    ig = ((emb - base)[0] * grads.mean(0)).sum(-1)  # (T,)
    return ig.detach().cpu(), target, float(probs[target]), float(ig.sum() - (f_x - f_b))


def explain_corpus(task, model: nn.Module, data: Corpus, indices: list[int], steps: int = 50,
                   words: list[list[str]] | None = None) -> list[Explanation]:
    """Explain rows ``indices`` of an encoded corpus; ``words``: each row's original tokens (shown instead
    of the vocabulary's, so unknown words stay readable), aligned with the ids before truncation."""
    vocab, d = task.vocab, task.cfg.data
    out = []
    for n, i in enumerate(indices):
        ids = data.ids(i)
        shown = vocab.decode(ids)
        if words is not None:
            w = (["<start>"] if vocab.bos is not None else []) + words[n]
            shown = truncate(w, d.max_length, d.truncating) if w else shown
        ig, target, p, delta = integrated_gradients(model, torch.tensor(ids), steps=steps)
        raw = data.raw_lengths
        out.append(Explanation(shown, [j == vocab.oov for j in ids], ig.tolist(), task.classes[target], p, delta,
                               bool(raw is not None and raw[i] > data.lengths[i])))
    return out


def explain_texts(run, texts: list[str], steps: int = 50) -> list[Explanation]:
    """Explain raw ``texts`` with a loaded :class:`rnnkit.Run` of a text classification task."""
    from rnnkit.data.text import safe_text

    task = run.task
    if "explain" not in getattr(task, "verbs", ()):
        raise ConfigError(f"explain needs a text_classification run; {run.path} is a {run.config.task} run")
    if not 1 <= steps <= MAX_IG_STEPS:
        raise ConfigError(f"integration steps must be in [1, {MAX_IG_STEPS}], got {steps}")
    texts = [safe_text(t) for t in texts]
    data = task.as_input(texts, labels=False)
    words = [task.tokenizer(t) for t in texts]
    return explain_corpus(task, run.model.to(run.device), data, list(range(len(texts))), steps, words)


def heatmap_html(e: Explanation, title: str = "") -> str:
    """One explanation as a paragraph of tokens shaded green (for the predicted class) or red (against)."""
    peak = max((abs(s) for s in e.scores), default=0.0) or 1.0
    spans = []
    for tok, s, unk in zip(e.tokens, e.scores, e.unknown, strict=True):
        a = min(abs(s) / peak, 1.0)
        rgb = "0,150,0" if s >= 0 else "210,0,0"
        style = f"background:rgba({rgb},{a:.2f});padding:1px 2px;border-radius:3px" + (
            ";font-style:italic" if unk else "")
        tip = f"{s:+.4f}" + (" (unknown word)" if unk else "")
        spans.append(f'<span style="{style}" title="{tip}">{html.escape(tok)}</span>')
    head = f"<b>{html.escape(title)}</b> " if title else ""
    note = " (truncated to the training maximum)" if e.truncated else ""
    return (f"<p>{head}predicted <b>{html.escape(e.predicted)}</b> with probability {e.probability:.3f}{note}; "
            f"completeness error {e.delta:+.2g}</p><p style='line-height:1.9'>{' '.join(spans)}</p>")


def page(exps: list[Explanation], titles: list[str] | None = None) -> str:
    """A self-contained HTML page of heat maps."""
    titles = titles or [f"text {i}" for i in range(len(exps))]
    body = "".join(heatmap_html(e, t) for e, t in zip(exps, titles, strict=True))
    legend = ("<p>Integrated gradients over the embeddings: <span style='background:rgba(0,150,0,.6)'>green</span> "
              "pushes towards the predicted class, <span style='background:rgba(210,0,0,.6)'>red</span> against it; "
              "hover a token for its score, unknown words are in italics.</p>")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>rnnkit explain</title></head>"
            f"<body style='font-family:sans-serif;max-width:60em'>{legend}{body}</body></html>\n")


__all__ = ["Explanation", "explain_corpus", "explain_texts", "heatmap_html", "integrated_gradients", "page"]
