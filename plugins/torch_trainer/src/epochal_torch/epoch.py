"""The end of a training epoch: sample-weighted means, read from the device once, and the
non-finite checks that ride on that read (:mod:`epochal_torch.nonfinite`)."""

from __future__ import annotations

from typing import Any

import torch

from epochal.errors import NonFiniteLossError
from epochal_torch.nonfinite import NONFINITE_METRIC, raise_for_epoch

__all__ = ["epoch_means", "finish_epoch", "stack_batch_values"]


def epoch_means(history: dict[str, list[Any]], sizes: list[int]) -> dict[str, float]:
    """Sample-weighted means of every key, read from the device in one transfer."""
    if not history:
        return {}
    keys = list(history)
    weights = torch.tensor(sizes, dtype=torch.float64)
    stacked = []
    for key in keys:
        values = stack_batch_values(history[key]).cpu()
        stacked.append((values * weights).sum() / weights.sum())
    return dict(zip(keys, torch.stack(stacked).tolist(), strict=True))


def stack_batch_values(values: list[Any]) -> torch.Tensor:
    """One key's per-batch values (0-d tensors, floats...) as one float64 tensor, on the
    device they are on (no host read)."""
    if all(isinstance(v, torch.Tensor) and v.dim() == 0 for v in values):
        stacked = torch.stack(values)  # the usual case: one stack, not 3 ops per value
    elif all(type(v) is float for v in values):
        stacked = torch.tensor(values, dtype=torch.float64)
    else:
        stacked = torch.stack([torch.as_tensor(v).detach().reshape(()) for v in values])
    return stacked.detach().to(torch.float64)


def finish_epoch(
    history: dict[str, list[Any]],
    sizes: list[int],
    loss_names: tuple[str, ...],
    epoch: int,
    n_batches: int,
    skipped: int,
    *,
    skip: bool,
    checked: bool,
) -> dict[str, float]:
    """The epoch's train metrics (``history[key][i]``: batch ``i``'s value, ``sizes[i]`` its
    samples, skipped batches left out). Raises for an epoch without batches, one whose batches
    were all skipped and, unless the losses were ``checked`` per batch, for the first
    non-finite batch. With ``skip`` the count of skipped batches is ``nonfinite_batches``."""
    if n_batches == 0:
        raise ValueError(f"epoch {epoch} received no batches from the training data")
    if not sizes:
        raise NonFiniteLossError.all_skipped(epoch, n_batches)
    means = epoch_means(history, sizes)
    if not checked:
        raise_for_epoch(history, loss_names, means, epoch, n_batches)
    if skip:
        means[NONFINITE_METRIC] = skipped
    return means
