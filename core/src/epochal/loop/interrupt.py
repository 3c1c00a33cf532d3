"""Stopping a run cleanly: at the next batch boundary, with a checkpoint to resume from.

``stop_on_signals(trainer)`` turns SIGTERM and Ctrl-C (SIGINT) into a stop request; the loop
then raises :class:`TrainingInterrupted` before the next training batch, after the trainer
wrote ``checkpoint_last`` with the batches done so far. A resumed run skips those batches of
the epoch (same order, same augmentation: both are seeded per epoch and batch), so it ends
with the weights an uninterrupted run would have. A second signal stops at once.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["TrainingInterrupted", "skip_batches", "stop_on_signals", "stoppable"]

#: Exit codes of a process stopped by a signal, as shells report them (128 + signal number).
EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143}


class TrainingInterrupted(BaseException):
    """The run stopped on request between two batches; ``checkpoint_last`` holds its state.

    A ``BaseException`` (like ``KeyboardInterrupt``) so that ``except Exception`` in user code
    does not swallow the stop.
    """

    def __init__(
        self, reason: str, epoch: int, batches_done: int, checkpoint: str | None = None
    ) -> None:
        self.reason, self.epoch, self.batches_done = reason, epoch, batches_done
        self.checkpoint = checkpoint
        where = (
            f"in epoch {epoch}, after batch {batches_done}"
            if batches_done
            else f"before epoch {epoch}"
        )
        super().__init__(f"stopped by {reason} {where}")

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.reason, 1)


def stoppable(batches: Iterable[dict], trainer: Any, epoch: int, done: int) -> Iterator[dict]:
    """``batches``, checking ``trainer.stop_requested`` before each (``done`` were trained
    already in this epoch); in several processes, whether any rank was asked to stop."""
    if trainer.collective.distributed:  # one small collective a batch: all ranks stop together
        for batch in batches:
            if trainer._stop_agreed():
                raise TrainingInterrupted(trainer.stop_requested, epoch, done)
            yield batch
            done += 1
        return
    for batch in batches:
        if trainer.stop_requested is not None:
            raise TrainingInterrupted(trainer.stop_requested, epoch, done)
        yield batch
        done += 1


def skip_batches(batches: Iterable[dict], count: int) -> Iterator[dict]:
    """``batches`` without the first ``count`` (drawn and dropped, so that the rest are the
    batches an uninterrupted epoch would have had)."""
    iterator = iter(batches)
    for _ in range(count):
        if next(iterator, None) is None:
            return
    yield from iterator


@contextlib.contextmanager
def stop_on_signals(trainer: Any, announce: bool = True) -> Iterator[None]:
    """While inside, SIGTERM and SIGINT ask ``trainer`` to stop at the next batch boundary; a
    second signal gets Python's default (SIGINT: ``KeyboardInterrupt``; SIGTERM: exit)."""
    names = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM"}
    previous = {number: signal.getsignal(number) for number in names}

    def handler(number: int, frame: Any) -> None:
        for other in names:  # the next signal acts at once
            signal.signal(
                other, signal.default_int_handler if other == signal.SIGINT else signal.SIG_DFL
            )
        trainer.request_stop(names[number])
        if announce:
            print(
                f"\nepochal: {names[number]} received: stopping after this batch and writing "
                "checkpoint_last (send it again to stop at once)",
                file=sys.stderr,
                flush=True,
            )

    try:
        for number in names:
            signal.signal(number, handler)
    except ValueError:  # not the main thread: signals cannot be handled here
        yield
        return
    trainer.interruptible = True
    try:
        yield
    finally:
        trainer.interruptible = False
        for number, old in previous.items():
            signal.signal(number, old)
