"""The cell registry: ``CELLS`` maps a cell's name (``model.cell`` in a config) to its layer class.

A layer class registers itself with ``@register_cell`` in its own file; the config, the model factory
(:func:`make_layer`) and the estimators read this table instead of naming cells.
"""

from __future__ import annotations

from typing import Any

CELLS: dict[str, Any] = {}  # name -> layer class (a Recurrent subclass)


def register_cell(cls: Any) -> Any:
    """Class decorator: register a ``Recurrent`` subclass under its cell's ``name``."""
    name = cls.cell_class.name
    if name in CELLS and CELLS[name] is not cls:
        raise ValueError(f"cell {name!r} is already registered by {CELLS[name].__name__}")
    CELLS[name] = cls
    return cls


def make_layer(cell: str, input_size: int, hidden_size: int, num_layers: int = 1, **options: Any) -> Any:
    """The registered layer for ``cell`` built with ``options``; options that cell does not take (such as
    ``reset_after`` for an LSTM) are a ValueError naming them."""
    if cell not in CELLS:
        raise ValueError(f"unknown cell {cell!r}: use one of {', '.join(sorted(CELLS))}")
    return CELLS[cell](input_size, hidden_size, num_layers, **options)
