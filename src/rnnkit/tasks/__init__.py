"""Task registry: a task owns its data, model, loss, metrics and predictions; the engine owns the loop.

Adding a task is one module with a :class:`~rnnkit.tasks.base.Task` subclass decorated with
``@register_task("my_task")`` plus one line in ``_BUILTIN`` below (so it loads lazily); a config then
selects it with ``task: my_task``. External code can call :func:`register_task` directly.
"""

from __future__ import annotations

import difflib
import importlib

from rnnkit.tasks.base import Task

TASKS: dict[str, type[Task]] = {}

# task name -> module that registers it (imported on first use)
_BUILTIN = {
    "sequence_classification": "rnnkit.tasks.sequence_classification",
    "forecasting": "rnnkit.tasks.forecasting",
    "text_classification": "rnnkit.tasks.text_classification",
    "language_model": "rnnkit.tasks.language_model",
    "adding": "rnnkit.tasks.long_range", "copy": "rnnkit.tasks.long_range",
    "seq2seq": "rnnkit.tasks.seq2seq",
}


def register_task(name: str):
    """Class decorator: make ``cls`` selectable with ``task: name`` in a config."""

    def deco(cls: type[Task]) -> type[Task]:
        cls.name = name
        TASKS[name] = cls
        return cls

    return deco


def get_task(name: str) -> type[Task]:
    from rnnkit.config import ConfigError

    if name not in TASKS and name in _BUILTIN:
        importlib.import_module(_BUILTIN[name])
    if name not in TASKS:
        known = task_names()
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"task: unknown task '{name}'{hint}; known tasks: {', '.join(known)}")
    return TASKS[name]


def task_names() -> list[str]:
    """Every task a config can name: the built-in ones and any registered since."""
    return sorted(set(TASKS) | set(_BUILTIN))


def providers(verb: str) -> list[str]:
    """The tasks whose objective offers ``verb`` (``forecast``, ``generate``, ``explain``, ``text``, ...)."""
    for module in set(_BUILTIN.values()):
        importlib.import_module(module)
    return sorted(name for name, cls in TASKS.items() if verb in cls.verbs)


def require(run, verb: str, command: str) -> None:
    """A ConfigError unless ``run``'s objective offers ``verb``, naming the tasks that do."""
    from rnnkit.config import ConfigError

    if verb not in getattr(run.task, "verbs", ()):
        need = " or ".join(f"task: {n}" for n in providers(verb)) or "a task that offers it"
        raise ConfigError(f"{run.path} is a {run.config.task} run; {command} needs a run of {need}")


__all__ = ["TASKS", "Task", "get_task", "providers", "register_task", "require", "task_names"]
