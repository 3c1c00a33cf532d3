"""Metrics that configs name (``metrics = {accuracy = "accuracy"}``): ``fn(predictions, labels)``
returning a 0-d tensor, computed on the device without a host sync."""

from __future__ import annotations

import torch

__all__ = ["accuracy"]


def accuracy(predictions: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Share of samples whose highest logit is the label: class indices, or one-hot /
    class-probability rows (compared by their highest entry)."""
    if labels.dim() == 2 and labels.shape == predictions.shape:
        labels = labels.argmax(dim=1)
    labels = labels.reshape(-1)
    return (predictions.argmax(dim=1) == labels).to(torch.float32).mean()
