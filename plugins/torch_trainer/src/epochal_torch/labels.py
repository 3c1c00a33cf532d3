"""A look at the first batch of a run: labels that cannot fit a classification loss are named
before torch fails on them deep inside (``IndexError: Target 12 is out of bounds``).

Once per trainer, on the first training batch: one forward pass in eval mode without gradients
(no weight, statistic or random state changes), so that the check knows the number of outputs.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch

from epochal.errors import DataError

__all__ = ["check_first_batch"]

_CLASS_LOSSES = (torch.nn.CrossEntropyLoss, torch.nn.NLLLoss)


def check_first_batch(trainer: Any, batches: Iterable[dict]) -> Iterator[dict]:
    """``batches`` unchanged, after checking the first one's labels against the losses."""
    iterator = iter(batches)
    first = next(iterator, None)
    if first is None:
        return iterator
    _check(trainer, first)
    return itertools.chain([first], iterator)


def _check(trainer: Any, batch: dict) -> None:
    losses = [
        (name, loss) for name, loss in trainer.losses.items() if isinstance(loss, _CLASS_LOSSES)
    ]
    if not losses or "label" not in batch or not trainer.uses_default_step:
        return
    name, loss = losses[0]
    kind = f"{type(loss).__name__} ({name!r})"
    label = batch["label"]
    if isinstance(label, torch.Tensor):
        if label.device.type != "cpu":  # already on the GPU: reading it would sync; trust it
            return
        label = label.numpy()
    label = np.asarray(label)
    model = trainer.module
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), trainer.amp.autocast():  # the dtype the step will compute in
            data = trainer._prepare(batch, trainer.input_device, trainer.output_device)["data"]
            outputs = model(data)
    finally:
        model.train(was_training)
    if outputs.dim() < 2:
        return
    classes = outputs.shape[1]
    probabilities = label.dtype.kind == "f" and label.shape == tuple(outputs.shape)
    if probabilities:
        return  # class probabilities: a valid target of CrossEntropyLoss
    if label.dtype.kind not in "iub":
        raise DataError(
            f"{kind} needs integer class labels, but batch['label'] is {label.dtype} with shape "
            f"{label.shape}; convert them in your data set: label.astype(np.int64)"
        )
    if label.ndim == 2 and label.shape[1] == classes and label.shape[1] > 1:
        raise DataError(
            f"{kind} takes one class index per sample, but batch['label'] has shape "
            f"{label.shape}, one-hot it seems; use label.argmax(axis=1)"
        )
    flat = label.reshape(len(label), -1) if label.ndim > 1 else label
    ignore = getattr(loss, "ignore_index", -100)
    valid = flat[flat != ignore]
    if valid.size and (valid.min() < 0 or valid.max() >= classes):
        bad = int(valid.max() if valid.max() >= classes else valid.min())
        raise DataError(
            f"label {bad} is out of range for the network's {classes} outputs (classes 0 to "
            f"{classes - 1}) of {kind}: give the model as many outputs as there are classes, "
            "or check the labels"
        )
