"""Timer: epoch, training, validation and data-wait time, so a slow data pipeline shows."""

from __future__ import annotations

import sys
import time
from typing import IO, Any

from epochal.loop.callbacks import AbstractCallback, TrainerView


class Timer(AbstractCallback):
    """Measures each epoch and how long training waited for batches.

    Asks the trainer to time its waits for batches (``trainer.time_data_wait``), then after
    each epoch prints one line and adds ``epoch_seconds``, ``data_wait_seconds`` and
    ``data_wait_fraction`` to ``trainer.state`` (where loggers can pick them up). When more
    than ``warn_fraction`` of the training time was spent waiting for data, the line says
    that data loading is the bottleneck and what to try.

    Args:
        stream: where the line goes (default: stderr).
        verbose: print the line each epoch.
        warn_fraction: the share of training time spent waiting that counts as a bottleneck.
    """

    main_process_only = True  # distributed training: rank 0 writes, the others train

    def __init__(
        self, stream: IO[str] | None = None, verbose: bool = True, warn_fraction: float = 0.5
    ) -> None:
        if not 0.0 < warn_fraction <= 1.0:
            raise ValueError(f"Timer: warn_fraction must be in (0, 1], got {warn_fraction!r}")
        self.stream = stream
        self.verbose = verbose
        self.warn_fraction = warn_fraction
        self.history: list[dict[str, float]] = []
        self._epoch_started: float | None = None

    def at_training_begin(self, trainer: TrainerView, **kwargs: Any) -> None:
        trainer.time_data_wait = True

    def at_epoch_begin(self, trainer: TrainerView, **kwargs: Any) -> None:
        self._epoch_started = time.perf_counter()

    def at_epoch_end(self, trainer: TrainerView, epoch: int = 0, **kwargs: Any) -> dict[str, float]:
        started = self._epoch_started if self._epoch_started is not None else time.perf_counter()
        epoch_seconds = time.perf_counter() - started
        train_seconds = float(trainer.state.get("train_seconds", epoch_seconds))
        wait_seconds = float(trainer.state.get("data_wait_seconds", 0.0))
        fraction = wait_seconds / train_seconds if train_seconds > 0 else 0.0
        timing = {
            "epoch_seconds": epoch_seconds,
            "data_wait_seconds": wait_seconds,
            "data_wait_fraction": fraction,
        }
        self.history.append({"epoch": epoch, **timing})
        if self.verbose:
            line = (
                f"epoch {epoch}: {epoch_seconds:.2f} s (training {train_seconds:.2f} s, of which "
                f"waiting for data {wait_seconds:.2f} s = {fraction:.0%}; validation "
                f"{float(trainer.state.get('val_seconds', 0.0)):.2f} s)"
            )
            if fraction > self.warn_fraction:
                line += (
                    "\n  data loading is the bottleneck: raise n_process_augmentation, "
                    "simplify the transforms, or cache the dataset in memory"
                )
            print(line, file=self.stream if self.stream is not None else sys.stderr, flush=True)
        return timing
