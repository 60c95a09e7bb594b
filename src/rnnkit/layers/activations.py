"""Activation functions by name, shared by every cell.

Names follow Keras where it has one (``"tanh"``, ``"relu"``, ``"sigmoid"``, ``"linear"``) and accept
torch's spelling too (``"identity"``). A callable passes through unchanged, so any elementwise
``Tensor -> Tensor`` function can serve as a gate or candidate activation.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

Activation = Callable[[torch.Tensor], torch.Tensor]


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _hard_sigmoid_keras2(x: torch.Tensor) -> torch.Tensor:
    """Keras 2's hard sigmoid, ``clip(0.2 x + 0.5, 0, 1)`` (old default recurrent activation)."""
    return torch.clamp(0.2 * x + 0.5, 0.0, 1.0)


ACTIVATIONS: dict[str, Activation] = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "identity": _identity,
    "linear": _identity,
    "hard_sigmoid": F.hardsigmoid,  # torch and Keras 3: relu6(x + 3) / 6
    "hard_sigmoid_keras2": _hard_sigmoid_keras2,
    "elu": F.elu,
    "gelu": F.gelu,
    "selu": F.selu,
    "softsign": F.softsign,
    "silu": F.silu,
}


def resolve(activation: str | Activation) -> tuple[str, Activation]:
    """Return ``(name, function)`` for an activation name or callable.

    Raises ValueError for an unknown name, listing the known ones.
    """
    if callable(activation):
        return getattr(activation, "__name__", type(activation).__name__), activation
    if isinstance(activation, str) and activation in ACTIVATIONS:
        return activation, ACTIVATIONS[activation]
    known = ", ".join(sorted(ACTIVATIONS))
    raise ValueError(f"unknown activation {activation!r}: use one of {known}, or pass a callable")
