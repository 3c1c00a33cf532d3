"""Ready-made networks that configs name: ``model = "mlp"`` and ``model = "cnn"``."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn

from epochal.job.limits import cnn_channels, mlp_widths

__all__ = ["MLP", "SmallCNN"]


class MLP(nn.Module):
    """Fully connected ReLU layers on flattened inputs, returning logits.

    Args:
        in_features: inputs per sample after flattening (64 for ``digits``).
        hidden: the hidden layers' widths, e.g. ``[128]``.
        num_classes: outputs (logits).
        dropout: dropout after each hidden layer (0: none).
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int] = (128,),
        num_classes: int = 10,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        # Checked first: hidden = [-1] or [10**9] fails at once, naming the argument.
        *widths, num_classes = mlp_widths("MLP", in_features, hidden, num_classes)
        layers: list[nn.Module] = [nn.Flatten()]
        for width, size in itertools.pairwise(widths):
            layers += [nn.Linear(width, size), nn.ReLU()]
            if dropout:
                layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(widths[-1], num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class SmallCNN(nn.Module):
    """Two 3x3 conv blocks (conv, batch norm, ReLU, 2x2 max-pool), then a linear classifier.

    Args:
        in_channels: image channels (1 for grey).
        num_classes: outputs (logits).
        channels: the two blocks' widths.
    """

    def __init__(
        self, in_channels: int = 1, num_classes: int = 10, channels: Sequence[int] = (16, 32)
    ) -> None:
        super().__init__()
        widths = cnn_channels("SmallCNN", in_channels, num_classes, channels)
        blocks: list[nn.Module] = []
        width = in_channels
        for size in widths[1:]:
            blocks += [
                nn.Conv2d(width, size, 3, padding=1, bias=False),
                nn.BatchNorm2d(size),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            width = size
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
