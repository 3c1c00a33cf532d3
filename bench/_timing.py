"""Timing shared by the overhead benchmarks (``torch_overhead.py``, ``tf_overhead.py``): the
sides run epoch by epoch, interleaved in alternating order after a warm-up, and the result
keeps every epoch's seconds so that medians and per-repeat ratios can be printed."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["CONTROL", "EPOCHAL", "HAND", "Result", "RunEpoch", "measure"]

HAND = "hand-written"
CONTROL = "hand-written again (A/A control)"
EPOCHAL = "epochal"
RunEpoch = Callable[[int], None]  # epoch number -> one training epoch


def measure(runners: dict[str, RunEpoch], warmup: int, repeats: int) -> dict[str, list[float]]:
    """Seconds of each measured epoch, sides interleaved (order alternating) after warm-up."""
    for run in runners.values():
        for epoch in range(warmup):
            run(epoch)
    gc.collect()
    gc.freeze()  # later collections skip the long-lived objects: fast, and alike for all sides
    seconds: dict[str, list[float]] = {name: [] for name in runners}
    order = list(runners.items())
    for repeat in range(repeats):
        for name, run in order if repeat % 2 == 0 else order[::-1]:
            gc.collect()
            start = time.perf_counter()
            run(warmup + repeat)
            seconds[name].append(time.perf_counter() - start)
    gc.unfreeze()
    return seconds


@dataclass
class Result:
    spec: Any  # has .target, the highest ratio epochal/hand-written allowed
    seconds: dict[str, list[float]]
    identical: bool

    def median(self, name: str) -> float:
        return statistics.median(self.seconds[name])

    @property
    def ratio(self) -> float:
        return self.median(EPOCHAL) / self.median(HAND)

    def paired_ratio(self, name: str) -> float:
        """Median of the per-repeat ratios name / hand-written (robust to slow drift)."""
        pairs = zip(self.seconds[name], self.seconds[HAND], strict=True)
        return statistics.median(other / hand for other, hand in pairs)

    @property
    def met(self) -> bool:
        return self.identical and self.ratio <= self.spec.target
