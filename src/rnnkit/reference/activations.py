"""Elementwise activations and their derivatives, written in terms of the activation's *output*.

Every nonlinearity used by the cells (tanh, relu, sigmoid, identity) has a derivative that can be read off
its output ``y = f(a)`` alone:

* tanh:     ``f'(a) = 1 - y**2``
* sigmoid:  ``f'(a) = y * (1 - y)``
* relu:     ``f'(a) = 1 if y > 0 else 0``   (so ``f'(0) = 0``, the convention of torch)
* identity: ``f'(a) = 1``

so the forward pass only has to cache outputs (gate values, hidden states), which is how the backward
passes in this package are written: ``da = dy * act.df(y)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

Array = np.ndarray


class Activation(NamedTuple):
    """``f(a) -> y`` and ``df(y) -> f'(a)``; both map arrays of any shape to arrays of the same shape."""

    name: str
    f: Callable[[Array], Array]
    df: Callable[[Array], Array]


def sigmoid(a: Array) -> Array:
    """Logistic function ``1 / (1 + exp(-a))``, computed as ``(1 + tanh(a/2)) / 2`` (never overflows)."""
    return 0.5 * (1.0 + np.tanh(0.5 * a))


def relu(a: Array) -> Array:
    """``max(a, 0)``."""
    return np.maximum(a, 0.0)


ACTIVATIONS: dict[str, Activation] = {
    "tanh": Activation("tanh", np.tanh, lambda y: 1.0 - y * y),
    "sigmoid": Activation("sigmoid", sigmoid, lambda y: y * (1.0 - y)),
    "relu": Activation("relu", relu, lambda y: (y > 0.0).astype(y.dtype)),
    "identity": Activation("identity", lambda a: a, np.ones_like),
}


def get_activation(name: str) -> Activation:
    """Look an activation up by name; one of ``"tanh"``, ``"relu"``, ``"sigmoid"``, ``"identity"``."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]
