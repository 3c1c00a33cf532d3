"""Ready-made torch networks that configs name: ``model = "mlp"`` and ``model = "cnn"``.

Their arguments are every backend's (:mod:`epochal.job.ready_models` documents and checks
them), so one config serves all; here the checked sizes become torch layers."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn

from epochal.job.ready_models import cnn_layout, mlp_layout

__all__ = ["MLP", "SmallCNN"]


class MLP(nn.Module):
    """Fully connected ReLU layers on flattened inputs, returning logits; the arguments
    are :func:`~epochal.job.ready_models.mlp_layout`'s."""

    #: Checks the arguments before anything is built (run first by a job too).
    check_arguments = staticmethod(mlp_layout)

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int] = (128,),
        num_classes: int = 10,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        layout = mlp_layout(in_features, hidden, num_classes, dropout)  # checked first
        layers: list[nn.Module] = [nn.Flatten()]
        for width, size in itertools.pairwise(layout.widths[:-1]):
            layers += [nn.Linear(width, size), nn.ReLU()]
            if layout.dropout:
                layers.append(nn.Dropout(layout.dropout))
        layers.append(nn.Linear(layout.widths[-2], layout.num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class SmallCNN(nn.Module):
    """Two 3x3 conv blocks (conv, batch norm, ReLU, 2x2 max-pool), then a linear classifier;
    the arguments are :func:`~epochal.job.ready_models.cnn_layout`'s."""

    #: Checks the arguments before anything is built (run first by a job too).
    check_arguments = staticmethod(cnn_layout)

    def __init__(
        self, in_channels: int = 1, num_classes: int = 10, channels: Sequence[int] = (16, 32)
    ) -> None:
        super().__init__()
        layout = cnn_layout(in_channels, num_classes, channels)
        blocks: list[nn.Module] = []
        width = in_channels
        for size in layout.channels[1:]:
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
