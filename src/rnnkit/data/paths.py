"""Where datasets live on disk.

``data_root()`` is ``$RNNKIT_DATA`` when set (``~`` and ``${VAR}`` are expanded), else ``~/.cache/rnnkit``.
Each named dataset has its own folder below it, ``data_root() / name``.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Folder names of the datasets rnnkit knows; ``../shared/datasets/`` beside the repo uses the same names.
DATASETS = ("mnist", "fashion-mnist", "fine-foods", "austen", "series", "imdb")


def data_root() -> Path:
    """The root folder of all rnnkit datasets: ``$RNNKIT_DATA`` or ``~/.cache/rnnkit`` (not created here)."""
    raw = os.environ.get("RNNKIT_DATA", "").strip()
    if not raw:
        return Path.home() / ".cache" / "rnnkit"
    return Path(os.path.expanduser(os.path.expandvars(raw)))


def dataset_dir(name: str, root: Path | str | None = None) -> Path:
    """The folder of dataset ``name``: ``root`` itself when given, else ``data_root() / name``."""
    return Path(root).expanduser() if root is not None else data_root() / name
