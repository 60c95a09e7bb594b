"""Training callbacks: optional per-step / per-epoch hooks configured in the ``callbacks:`` section.

A callback is registered by name with an options dataclass (validated like any config section)::

    @dataclass
    class GradOptions:
        every: int = 100

    @register_callback("grad_through_time")
    class GradThroughTime(Callback):
        options = GradOptions
        def after_backward(self, ctx, batch): ...   # gradients are populated, not yet clipped

and enabled with ``callbacks: {grad_through_time: {every: 50}}``. Callbacks run on the main process only
(rank 0), write what they record under ``ctx.run_dir``, may keep JSON state across a resume
(:meth:`Callback.state`) and add sections to the HTML report (:meth:`Callback.report_sections`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

CALLBACKS: dict[str, type[Callback]] = {}

# callback name -> module that registers it (imported when the callbacks section is validated)
_BUILTIN: dict[str, str] = {"grad_through_time": "rnnkit.diagnostics.runs"}  # also adds its report sections


@dataclass
class NoOptions:
    pass


@dataclass
class Context:
    """What the engine shares with callbacks; ``model`` is the unwrapped module (no DDP wrapper)."""

    run_dir: Path
    model: Any
    task: Any
    device: Any
    optimizer: Any
    epoch: int = 0
    global_step: int = 0


class Callback:
    options: ClassVar[type] = NoOptions

    def __init__(self, options: Any) -> None:
        self.opts = options

    def on_train_start(self, ctx: Context) -> None:
        pass

    def after_backward(self, ctx: Context, batch: Any) -> None:
        """Gradients of this step are populated (unscaled, before clipping and the optimiser step)."""

    def on_epoch_end(self, ctx: Context, row: dict) -> None:
        pass

    def on_train_end(self, ctx: Context) -> None:
        pass

    def state(self) -> dict:
        return {}

    def load_state(self, state: dict) -> None:
        pass

    @classmethod
    def report_sections(cls, run_dir: Path, options: dict) -> list:
        return []


def register_callback(name: str):
    def deco(cls: type[Callback]) -> type[Callback]:
        CALLBACKS[name] = cls
        return cls

    return deco


def load_builtin_callbacks() -> None:
    import importlib

    for module in _BUILTIN.values():
        importlib.import_module(module)


def make_callbacks(config: dict) -> dict[str, Callback]:
    """``cfg.callbacks`` (validated name -> options dict) -> instances."""
    load_builtin_callbacks()
    return {name: CALLBACKS[name](CALLBACKS[name].options(**opts)) for name, opts in config.items()}
