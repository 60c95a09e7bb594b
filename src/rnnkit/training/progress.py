"""Console output of a training run: a ``rich`` progress bar per epoch (loss, running metric, sequences/s,
ETA) when stderr is a terminal or the code runs in a Jupyter notebook (rich draws it as a widget there), and
one summary line per epoch on stdout unless quiet."""

from __future__ import annotations

import sys
import time


def format_row(row: dict) -> str:
    """``epoch 3/10  train_loss 0.412  val_accuracy 0.913 ...`` from a metrics row."""
    parts = [f"epoch {row['epoch']}"]
    for k, v in row.items():
        if k != "epoch" and isinstance(v, float):
            parts.append(f"{k} {v:.4g}" if k != "seconds" else f"{v:.1f}s")
    return "  ".join(parts)


def in_notebook() -> bool:
    """Whether this runs in a Jupyter kernel (rich's own test)."""
    if "ipykernel" not in sys.modules:
        return False
    from rich.console import Console

    return Console().is_jupyter


class Progress:
    def __init__(self, epochs: int, metric: str | None, enabled: bool, quiet: bool) -> None:
        self.epochs, self.metric, self.quiet = epochs, metric, quiet
        self.bar = None
        if enabled and not quiet and (sys.stderr.isatty() or in_notebook()):
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as Bar

            self.bar = Bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                           TextColumn("{task.fields[stats]}"), TimeRemainingColumn(),
                           console=Console(stderr=True), transient=True)
            self.bar.start()
        self.task = None

    def start_epoch(self, epoch: int, total: int, done: int) -> None:
        self.t0, self.seqs = time.perf_counter(), 0
        if self.bar is not None:
            self.task = self.bar.add_task(f"epoch {epoch + 1}/{self.epochs}", total=total, completed=done, stats="")

    def update(self, sequences: int, loss: float, metric: float | None) -> None:
        self.seqs += sequences
        if self.bar is not None:
            rate = self.seqs / max(time.perf_counter() - self.t0, 1e-9)
            stats = f"loss {loss:.4f}" + (f"  {self.metric} {metric:.4f}" if metric is not None else "")
            self.bar.update(self.task, advance=1, stats=f"{stats}  {rate:,.0f} seq/s")

    def end_epoch(self, row: dict) -> None:
        if self.bar is not None:
            self.bar.remove_task(self.task)
        self.message(format_row(row))

    def message(self, text: str) -> None:
        if not self.quiet:
            if self.bar is not None:
                self.bar.console.print(text, highlight=False)
            else:
                print(text, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
