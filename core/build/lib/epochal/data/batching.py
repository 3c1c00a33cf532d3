"""Helpers around batch generators: re-batching for prediction, timing, closing."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

__all__ = ["TimedBatches", "batch_length", "closing_batchgen", "rebatch"]


def batch_length(batch: dict[str, Any]) -> int:
    """Samples in a batch dict (the first axis of its first array)."""
    for value in batch.values():
        if hasattr(value, "shape") and len(value.shape):
            return int(value.shape[0])
    raise ValueError(f"cannot tell the batch size: no array in the batch (keys {sorted(batch)})")


def rebatch(batchgen: Iterable[dict[str, Any]], batch_size: int | None) -> Iterator[dict[str, Any]]:
    """Pass batches through (``batch_size=None``), or concatenate them until ``batch_size``
    samples are collected, so that a model is run on fewer, larger batches."""
    if batch_size is None:
        yield from batchgen
        return
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    pending: list[dict[str, Any]] = []
    count = 0
    for batch in batchgen:
        pending.append(batch)
        count += batch_length(batch)
        if count >= batch_size:
            yield _concatenate(pending)
            pending, count = [], 0
    if pending:
        yield _concatenate(pending)


def _concatenate(batches: list[dict[str, Any]]) -> dict[str, Any]:
    if len(batches) == 1:
        return batches[0]
    return {key: np.concatenate([batch[key] for batch in batches]) for key in batches[0]}


class TimedBatches:
    """Wraps a batch generator and adds up the time spent waiting for batches."""

    def __init__(self, batchgen: Iterable[dict]) -> None:
        self._batches = iter(batchgen)
        self.wait_seconds = 0.0

    def __iter__(self) -> TimedBatches:
        return self

    def __next__(self) -> dict:
        start = time.perf_counter()
        try:
            return next(self._batches)
        finally:
            self.wait_seconds += time.perf_counter() - start


@contextlib.contextmanager
def closing_batchgen(batchgen: Any) -> Iterator[Any]:
    """Stop a batch generator's workers when the epoch ends, also on an exception."""
    try:
        yield batchgen
    finally:
        close = getattr(batchgen, "close", None)
        if callable(close):
            close()
