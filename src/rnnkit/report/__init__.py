"""``report.html``: one self-contained page per run (plots inlined as base64 PNG, no external files).

Sections, top to bottom: headline metrics, training curves (loss, metrics), gradient norm, the task's
sections (sequence classification: confusion matrix), extra sections, model & data, timing, the command
that reproduces the run and the resolved config.

Extra sections plug in three ways, all returning a list of :class:`Section`:

* a task: ``Task.report_sections(run_dir, metrics)`` (forecasting adds its forecast plots here);
* a training callback: ``Callback.report_sections(run_dir, options)`` (the diagnostics callback adds
  "Gradient through time");
* any code: ``@register_section`` on ``fn(run_dir, info) -> list[Section]``.

matplotlib is optional: without it the report is written with tables only and says so.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Section:
    title: str
    html: str  # body: trusted HTML (escape user text with html.escape)


SECTION_HOOKS: list[Callable[[Path, dict], list[Section]]] = []


def register_section(fn: Callable[[Path, dict], list[Section]]) -> Callable[[Path, dict], list[Section]]:
    SECTION_HOOKS.append(fn)
    return fn


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


# Margins of a figure laid out on a fixed grid, in inches: room for tick labels and a y label on the left, an
# x label below, a title above; between panels, room for the next panel's tick labels and title.
MARGINS = {"left": 0.75, "right": 0.2, "bottom": 0.55, "top": 0.4, "wgap": 0.9, "hgap": 0.6}


def figure(width: float = 6.4, height: float = 3.6, grid: tuple[int, int] | None = None, **margins: float):
    """A matplotlib Figure on the Agg canvas (no pyplot, no display needed).

    Without ``grid``, matplotlib's tight layout measures every label when the figure is drawn (for labels of any
    length: class names, tokens). With ``grid=(rows, cols)`` the panels sit at the fixed :data:`MARGINS` (inches;
    ``margins`` overrides some), which halves the drawing time of the report's plots of numbers: their labels are
    short, and a report draws several such plots at the end of every run."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout=None if grid else "tight")
    if grid:
        (rows, cols), m = grid, {**MARGINS, **margins}
        left, right = m["left"] / width, 1 - m["right"] / width
        bottom, top = m["bottom"] / height, 1 - m["top"] / height
        panel_w = max((right - left) * width - (cols - 1) * m["wgap"], 0.1) / cols
        panel_h = max((top - bottom) * height - (rows - 1) * m["hgap"], 0.1) / rows
        fig.subplots_adjust(left=left, right=right, bottom=bottom, top=top, wspace=m["wgap"] / panel_w,
                            hspace=m["hgap"] / panel_h)
    return fig


def integer_x(ax, label: str | None = None) -> None:
    """Ticks at whole numbers on an axis of epochs or steps (not 1.0, 1.5, 2.0 for a short run), and its label."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if label is not None:
        ax.set_xlabel(label)


def png(fig) -> str:
    """An ``<img>`` tag with ``fig`` inlined as base64 PNG."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def table(rows: list[list], header: list[str] | None = None) -> str:
    def cell(v, tag="td"):
        text = f"{v:.4g}" if isinstance(v, float) else str(v)
        return f"<{tag}>{html.escape(text)}</{tag}>"

    head = "<tr>" + "".join(cell(h, "th") for h in header) + "</tr>" if header else ""
    return "<table>" + head + "".join("<tr>" + "".join(cell(v) for v in r) + "</tr>" for r in rows) + "</table>"


def confusion_section(cm: np.ndarray, classes: list[str], split: str) -> Section:
    """Confusion matrix (rows true, columns predicted) as a heat map, or a table without matplotlib."""
    if not have_matplotlib() or len(classes) > 50:
        rows = [[c, *r] for c, r in zip(classes, cm.tolist(), strict=True)]
        return Section(f"Confusion matrix ({split})", table(rows, ["true \\ predicted", *classes]))
    k = len(classes)
    fig = figure(1.2 + 0.45 * k, 1.0 + 0.4 * k)
    ax = fig.add_subplot()
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(k), classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 20:
        for i in range(k):
            for j in range(k):
                ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if cm[i, j] > cm.max() / 2 else "black")
    return Section(f"Confusion matrix ({split})", png(fig))


def _curves(rows: list[dict]) -> list[Section]:
    if not rows or not have_matplotlib():
        return []
    epochs = [int(r["epoch"]) for r in rows]
    series = lambda key: [float(r[key]) if r.get(key) not in (None, "") else np.nan for r in rows]  # noqa: E731
    keys = [k for k in rows[0] if k not in ("epoch", "lr", "grad_norm", "seconds")]
    names = sorted({k.split("_", 1)[1] for k in keys if "_" in k}, key=lambda n: (n != "loss", n))
    out = []
    fig = figure(3.6 * len(names), 3.2, grid=(1, len(names)))
    for i, name in enumerate(names):
        ax = fig.add_subplot(1, len(names), i + 1)
        for split in ("train", "val"):
            if f"{split}_{name}" in rows[0]:
                ax.plot(epochs, series(f"{split}_{name}"), marker="o", ms=3, label=split)
        ax.set_title(name)
        integer_x(ax, "epoch")
        ax.legend()
    out.append(Section("Training curves", png(fig)))
    fig = figure(7.2, 3.0, grid=(1, 2))
    ax = fig.add_subplot(1, 2, 1)
    ax.plot(epochs, series("grad_norm"), marker="o", ms=3)
    ax.set_title("gradient norm (mean per epoch, before clipping)", fontsize=9)
    integer_x(ax, "epoch")
    ax = fig.add_subplot(1, 2, 2)
    ax.plot(epochs, series("lr"), marker="o", ms=3)
    ax.set_title("learning rate")
    integer_x(ax, "epoch")
    out.append(Section("Gradient norm and learning rate", png(fig)))
    return out


def read_metrics_csv(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_report(run_dir: Path, task=None, model=None, metrics: dict | None = None) -> Path:
    """Write ``run_dir/report.html`` from the files of the run and the objective's extra sections (``task``), which
    get the trained ``model`` and final ``metrics`` the trainer holds (None: the sections load what they need)."""
    run_dir = Path(run_dir)
    info = json.loads((run_dir / "run.json").read_text())
    if metrics is None:
        metrics = json.loads((run_dir / "metrics.json").read_text()) if (run_dir / "metrics.json").is_file() else {}
    rows = read_metrics_csv(run_dir / "metrics.csv")
    config_text = (run_dir / "config.yaml").read_text() if (run_dir / "config.yaml").is_file() else ""
    sections: list[Section] = []

    head = [[split, k, v] for split in ("test", "val") for k, v in metrics.get(split, {}).items()
            if isinstance(v, float | int)]
    note = "" if have_matplotlib() else "<p><b>matplotlib is not installed: plots are left out.</b></p>"
    sections.append(Section("Results", note + table(head, ["split", "metric", "value"])
                            + f"<p>best epoch {metrics.get('best_epoch')} of {metrics.get('epochs')}"
                            + (f", stopped by {metrics['stopped']}" if metrics.get("stopped") else "") + "</p>"))
    sections += _curves(rows)
    if metrics.get("spread"):  # an ensemble: the members against their combination
        spread_rows = [[k, metrics.get("test", {}).get(k, float("nan")), v["mean"], v["std"], v["min"], v["max"]]
                       for k, v in metrics["spread"].items()]
        sections.append(Section(f"Ensemble of {metrics.get('ensemble')} members",
                                table(spread_rows, ["test metric", "ensemble", "members' mean", "std", "min", "max"])
                                + "<p>Each member is a run folder of its own under <code>members/</code>.</p>"))
    if task is not None:
        sections += task.report_sections(run_dir, metrics, model)
    from rnnkit.training.callbacks import CALLBACKS, load_builtin_callbacks

    load_builtin_callbacks()
    import yaml

    callbacks = (yaml.safe_load(config_text) or {}).get("callbacks") or {} if config_text else {}
    for name, opts in callbacks.items():
        if name in CALLBACKS:
            sections += CALLBACKS[name].report_sections(run_dir, opts)
    for hook in SECTION_HOOKS:
        sections += hook(run_dir, info)

    data = info.get("data", {})
    sections.append(Section("Model and data", table([[k, v] for k, v in data.items()], ["data", ""])
                            + f"<p>{info.get('parameters', 0):,} parameters</p>"
                            + table([[k, "x".join(map(str, s))] for k, s in info.get("parameter_shapes", {}).items()],
                                    ["parameter", "shape"])
                            + f"<pre>{html.escape(info.get('model', ''))}</pre>"))
    timing = [[r["epoch"], float(r["seconds"])] for r in rows]
    total = metrics.get("train_seconds", sum(t for _, t in timing))
    sections.append(Section("Timing", f"<p>{total:.1f} s of training on {html.escape(info.get('device', '?'))}"
                            f" x {info.get('world_size', 1)} process(es), {info.get('steps_per_epoch')} steps "
                            "per epoch</p>" + table(timing, ["epoch", "seconds"])))
    cmd = info.get("command") or ""
    sections.append(Section("Reproduce", f"<p>command: <code>{html.escape(cmd)}</code></p>"
                            f"<p>same config, new folder: <code>{html.escape(info.get('reproduce', ''))}</code></p>"
                            f"<p>versions: {html.escape(json.dumps(info.get('versions', {})))}</p>"))
    sections.append(Section("Config", f"<pre>{html.escape(config_text)}</pre>"))

    body = "\n".join(f"<section><h2>{html.escape(s.title)}</h2>\n{s.html}</section>" for s in sections)
    title = html.escape(f"rnnkit run: {info.get('name', run_dir.name)}")
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}}
table{{border-collapse:collapse;margin:.5em 0}}td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}
pre{{background:#f6f6f6;padding:.5em;overflow:auto}}img{{max-width:100%}}h2{{border-bottom:1px solid #ddd}}</style>
</head><body><h1>{title}</h1>
<p>task {html.escape(info.get('task', ''))} &middot; folder {html.escape(str(run_dir))}</p>
{body}
</body></html>
"""
    path = run_dir / "report.html"
    path.write_text(page)
    return path


__all__ = ["MARGINS", "SECTION_HOOKS", "Section", "confusion_section", "figure", "integer_x", "png", "register_section",
           "table", "write_report"]
