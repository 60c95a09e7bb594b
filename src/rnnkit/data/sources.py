"""Data sources, registered per modality: adding a source is one function.

    @register_source("npz", modality="sequences")
    def npz_source(d, part):                  # d: the config's data section, part: "train" | "val" | "test"
        path = {"train": d.path, "val": d.val_path, "test": d.test_path}[part]
        return None if path is None else load_npz(path)

A source function takes the ``data`` section and, for the ``sequences`` and ``text`` modalities, the part to
load (it returns None for a part it does not have: the task then splits one off the training part); its
keyword-only parameters are the source's options, given in a config as ``data.options``. The config checks the
source name against the registry of its task's modality and the options against the function's signature
(unknown key: a did-you-mean; wrong type: the expected one) before anything runs.

Modalities and what their sources return: ``sequences`` -> :class:`~rnnkit.data.sequences.SequenceData`,
``text`` -> :class:`~rnnkit.data.text.TextData`, ``series`` -> :class:`~rnnkit.data.series.Series` (the whole
series: the task cuts it in time), ``corpus`` -> ``[(name, text), ...]`` documents.
"""

from __future__ import annotations

import difflib
import inspect
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rnnkit.errors import ConfigError

MODALITIES = ("sequences", "text", "series", "corpus", "pairs")
SOURCES: dict[str, dict[str, Source]] = {m: {} for m in MODALITIES}
# modality -> the modules that register its built-in sources (imported on first use)
_BUILTIN = {"sequences": ("rnnkit.data.sequence_sources",), "text": ("rnnkit.data.text", "rnnkit.data.imdb"),
            "series": ("rnnkit.data.series",), "corpus": ("rnnkit.data.corpus",), "pairs": ("rnnkit.data.pairs",)}


@dataclass(frozen=True)
class Source:
    name: str
    modality: str
    load: Callable[..., Any]

    @property
    def options(self) -> dict[str, inspect.Parameter]:
        """The source's options: its function's keyword-only parameters."""
        return {n: p for n, p in inspect.signature(self.load).parameters.items() if p.kind == p.KEYWORD_ONLY}


def register_source(name: str, modality: str = "sequences") -> Callable:
    """Function decorator: make ``fn`` selectable as ``data.source: name`` in tasks of ``modality``."""
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {', '.join(MODALITIES)}, got {modality!r}")

    def deco(fn: Callable) -> Callable:
        SOURCES[modality][name] = Source(name, modality, fn)
        return fn

    return deco


def sources(modality: str) -> dict[str, Source]:
    """The registered sources of ``modality`` (the built-in ones loaded)."""
    import importlib

    for module in _BUILTIN.get(modality, ()):
        importlib.import_module(module)
    return SOURCES[modality]


def get_source(modality: str, name: str) -> Source:
    known = sources(modality)
    if name not in known:
        close = difflib.get_close_matches(str(name), list(known), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"data.source: '{name}' is not one of {', '.join(sorted(known))}{hint}")
    return known[name]


SEED_OPTIONS = ("seed", "permute")  # options that seed numpy's generators, which take no negative seed
_WRONG = object()  # "not of the hinted type", distinct from every option value


def _as_type(value: Any, hint: Any) -> Any:
    """``value`` as the type ``hint`` names, or ``_WRONG``. A string that spells a number is the float it means
    where a float is wanted: YAML 1.1 reads ``noise: 1e-2`` as the string '1e-2' (the main config does the same)."""
    if hint is inspect.Parameter.empty or hint is Any:
        return value
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            if (cast := _as_type(value, arg)) is not _WRONG:
                return cast
        return _WRONG
    if hint is type(None):
        return value if value is None else _WRONG
    if origin is typing.Literal:
        return value if value in args else _WRONG
    if origin is not None:
        hint = origin
    if hint is float:
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                return _WRONG
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else _WRONG
    if hint is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _WRONG
    return value if not isinstance(hint, type) or isinstance(value, hint) else _WRONG


def check_options(modality: str, name: str, options: Any) -> dict:
    """The source's options checked and cast (ConfigError unless ``options`` is a mapping of the source's
    keyword options with values of their types); the caller uses the returned mapping. Finite numbers and
    int sizes are the config's own check (``DataConfig.check_source``), as for every other key."""
    src = get_source(modality, name)
    if not isinstance(options, dict):
        raise ConfigError(f"data.options must be a mapping (key: value lines), got {type(options).__name__}")
    allowed = src.options
    hints = typing.get_type_hints(src.load)
    checked = {}
    for key, value in options.items():
        if key not in allowed:
            close = difflib.get_close_matches(str(key), list(allowed), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            have = f"; source {name} takes {', '.join(sorted(allowed))}" if allowed else \
                f"; source {name} takes no options"
            raise ConfigError(f"data.options.{key}: unknown option{hint}{have}")
        want = hints.get(key, allowed[key].annotation)
        if (cast := _as_type(value, want)) is _WRONG:
            shown = getattr(want, "__name__", str(want)).replace("typing.", "")
            raise ConfigError(f"data.options.{key} must be {shown}, got {value!r}")
        if key in SEED_OPTIONS and isinstance(cast, int) and cast < 0:
            raise ConfigError(f"data.options.{key} is a random seed and must be >= 0, got {cast}")
        if key == "delimiter" and isinstance(cast, str) and len(cast) != 1:  # Python's csv takes one character
            raise ConfigError(f"data.options.delimiter must be one character (such as ',', ';' or a tab), got "
                              f"{cast!r}")
        checked[key] = cast
    return checked


def load_part(modality: str, d: Any, part: str | None = None) -> Any:
    """Load ``part`` (or the whole source when ``part`` is None) of the configured source ``d.source``."""
    src = get_source(modality, d.source)
    options = check_options(modality, d.source, d.options)
    args = (d,) if part is None else (d, part)
    return src.load(*args, **options)


__all__ = ["MODALITIES", "SOURCES", "Source", "check_options", "get_source", "load_part", "register_source",
           "sources"]
