"""The ready-made networks that configs name (``model = "mlp"``, ``model = "cnn"``).

Their arguments are the same on every backend, so that one config serves all: they are
documented and checked here, once, and each backend only builds its framework's layers from the
checked sizes. A bad size fails at once, naming the argument (``hidden = [-1]``, or
``[10**9]``: too many parameters), before anything is allocated.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from epochal.job.limits import cnn_channels, mlp_widths

__all__ = ["CNNLayout", "MLPLayout", "cnn_layout", "mlp_layout"]


@dataclass(frozen=True)
class MLPLayout:
    """An MLP's checked sizes: ``widths`` from the inputs through the hidden layers to the
    outputs (logits), and the ``dropout`` after each hidden layer (0: none)."""

    widths: list[int]
    dropout: float

    @property
    def hidden(self) -> list[int]:
        return self.widths[1:-1]

    @property
    def num_classes(self) -> int:
        return self.widths[-1]


@dataclass(frozen=True)
class CNNLayout:
    """A small CNN's checked sizes: ``channels`` from the image's through each 3x3 conv block
    (conv, batch norm, ReLU, 2x2 max-pool), and ``num_classes`` outputs of the linear head."""

    channels: list[int]
    num_classes: int


def mlp_layout(
    in_features: Any, hidden: Sequence[int], num_classes: Any, dropout: Any
) -> MLPLayout:
    """The MLP's arguments, checked (a ``ValueError`` naming the argument).

    Args:
        in_features: inputs per sample after flattening (64 for ``digits``).
        hidden: the hidden layers' widths, e.g. ``[128]``.
        num_classes: outputs (logits).
        dropout: dropout after each hidden layer, from 0 (none) to 1.
    """
    widths = mlp_widths("MLP", in_features, hidden, num_classes)
    if (
        isinstance(dropout, bool)
        or not isinstance(dropout, numbers.Real)
        or not 0 <= float(dropout) <= 1
    ):
        raise ValueError(f"MLP: dropout must be a number from 0 to 1, got {dropout!r}")
    return MLPLayout(widths, float(dropout))


def cnn_layout(in_channels: Any, num_classes: Any, channels: Sequence[int]) -> CNNLayout:
    """The small CNN's arguments, checked (a ``ValueError`` naming the argument).

    Args:
        in_channels: image channels (1 for grey).
        num_classes: outputs (logits).
        channels: the conv blocks' widths, e.g. ``[16, 32]``.
    """
    widths = cnn_channels("SmallCNN", in_channels, num_classes, channels)
    return CNNLayout(widths, int(num_classes))
