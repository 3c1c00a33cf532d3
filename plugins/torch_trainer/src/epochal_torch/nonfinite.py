"""What the trainer does when a training loss is NaN or infinite (``on_nonfinite``).

* ``"raise"`` (default): stop with :class:`~epochal.errors.NonFiniteLossError` naming epoch,
  batch (counted from 1) and loss key. Where the trainer reads each loss anyway (the plain
  step on the CPU, where a read is no device sync), it stops at the bad batch, before its
  update. Elsewhere the losses stay on the device (docs/architecture.md, "Invariants"; on
  the CPU too, for the general step with metrics, AMP, closures or batch hooks): an epoch's
  mean of a loss is non-finite exactly when some batch's was, so the check rides on the one
  read per epoch, and only then are the batches searched for the first bad one; that epoch
  has trained on with NaN weights.
  Either way the core loop writes no checkpoint of an epoch whose ``_train_single_epoch``
  raised, so the checkpoints of earlier epochs stay as they were.
* ``"skip_batch"``: a batch whose summed loss is non-finite gets no backward and no optimizer
  step (the optimizer's state, e.g. Adam's step count, does not change); it is counted in the
  epoch's train metrics as ``nonfinite_batches`` (always present with ``"skip_batch"``) and left
  out of the epoch's means. This reads the loss on the host every batch, also on a GPU (as
  ``GradScaler`` does for its own skip). An epoch whose batches were all skipped raises.

Only the loss counts: float16 steps that ``GradScaler`` skips because the *gradients*
overflowed are its normal working, not errors.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch

from epochal.errors import NonFiniteLossError

__all__ = [
    "NONFINITE_METRIC",
    "raise_for_epoch",
]

#: Train-metric key of the per-epoch count of skipped batches (with ``"skip_batch"``).
NONFINITE_METRIC = NonFiniteLossError.METRIC


def _flat(value: Any) -> torch.Tensor:
    return torch.as_tensor(value).detach().reshape(-1).to("cpu", torch.float64)


def raise_for_epoch(
    history: Mapping[str, Sequence[Any]],
    loss_names: Iterable[str],
    means: Mapping[str, float],
    epoch: int,
    n_batches: int,
) -> None:
    """Raise for the first non-finite batch if an epoch mean of a loss is non-finite.

    ``history[name][i]`` is batch ``i``'s value; no batch was skipped, so ``i`` is the batch's
    index in the epoch. Costs nothing while every mean is finite."""
    names = [name for name in loss_names if name in means]
    if all(math.isfinite(means[name]) for name in names):
        return
    first: tuple[int, int, str, float] | None = None  # (batch index, key order, key, value)
    for order, name in enumerate(names):
        values = torch.stack([_flat(value).sum() for value in history[name]])
        bad = (~torch.isfinite(values)).nonzero()
        if bad.numel():
            index = int(bad[0, 0])
            candidate = (index, order, name, float(values[index]))
            first = candidate if first is None else min(first, candidate)
    if first is None:  # cannot happen: a mean of finite values is finite
        return
    index, _, name, value = first
    raise NonFiniteLossError.at_batch(epoch, index + 1, n_batches, name, value)
