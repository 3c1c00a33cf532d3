"""ProgressBar: a tqdm bar over each epoch's batches and one summary line per epoch."""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Mapping
from typing import IO, Any

from epochal.loop.callbacks import AbstractCallback, TrainerView
from epochal_callbacks._util import host_float

__all__ = ["ProgressBar", "format_epoch_line"]


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _has_size(stream: IO[str]) -> bool:
    """Whether ``stream`` is a terminal that reports a width (a bare pty reports 0 x 0)."""
    try:
        size = os.get_terminal_size(stream.fileno())
        return size.columns > 0 and size.lines > 0  # tqdm draws nothing on 0 rows
    except (AttributeError, OSError, ValueError):  # no fileno (StringIO), not a tty, closed
        return False


def _number(value: Any) -> str:
    """Four decimals in the usual range, scientific notation outside it."""
    try:
        number = host_float(value)
    except (TypeError, ValueError):
        return str(value)
    if number == 0 or not math.isfinite(number) or 1e-3 <= abs(number) < 1e5:
        return f"{number:.4f}"
    return f"{number:.3e}"


def format_epoch_line(
    epoch: int,
    num_epochs: int,
    metrics_train: Mapping[str, Any],
    metrics_val: Mapping[str, Any],
    seconds: float | None = None,
    is_best: bool = False,
) -> str:
    """``epoch 3/10  CE 0.4123  accuracy 0.9101 | val_CE 0.4300  val_accuracy 0.9050  (2.1 s)``."""
    line = f"epoch {epoch}/{num_epochs}"
    train = "  ".join(f"{key} {_number(value)}" for key, value in metrics_train.items())
    val = "  ".join(f"{key} {_number(value)}" for key, value in metrics_val.items())
    if train:
        line += f"  {train}"
    if val:
        line += f" | {val}"
    if seconds is not None:
        line += f"  ({seconds:.2f} s)" if seconds < 10 else f"  ({seconds:.1f} s)"
    if is_best:
        line += "  * best"
    return line


class ProgressBar(AbstractCallback):
    """A tqdm bar per epoch (batches, the latest loss, speed) and a summary line after it.

    The bar's length: the trainer does not say how many batches an epoch has, so the
    first epoch shows a count and a rate without a total, and later epochs use the count
    of the epoch before (kept in the checkpoint, so a resumed run knows it at once). Give
    ``n_batches`` (e.g. ``datamgr_train.n_batches``) to have a total from the start; an
    ``n_batches`` keyword passed to ``at_epoch_begin`` wins over both.

    The loss shown is the first entry of the batch's ``losses``, read only when tqdm is
    about to redraw (at most every ``mininterval`` seconds): reading a device tensor forces
    a host sync, so doing it per batch would slow training down.

    Quiet when ``stream`` is not a terminal (a log file, CI), so logs hold no carriage
    returns; then it prints nothing and costs nothing per batch (``at_batch_end`` is only
    defined on a bar that draws). Jupyter's output is not a terminal either: pass
    ``enabled=True`` there.

    Args:
        enabled: ``None`` decides by ``stream.isatty()``; ``True`` draws anyway; ``False`` is off.
        stream: where bar and lines go (default: ``sys.stdout`` when constructed).
        n_batches: batches per epoch, when known.
        mininterval: least seconds between redraws (tqdm's ``mininterval``).
        lines: print the summary line of each epoch even where no bar is drawn (a log
            file, CI); ``None`` prints it only with the bar.
    """

    main_process_only = True  # distributed training: rank 0 writes, the others train
    #: Left out of a config, ``n_batches`` is the job's batches per epoch (in this process).
    job_params = {"n_batches": "n_batches"}

    def __init__(
        self,
        enabled: bool | None = None,
        stream: IO[str] | None = None,
        n_batches: int | None = None,
        mininterval: float = 0.1,
        lines: bool | None = None,
    ) -> None:
        if n_batches is not None and (
            isinstance(n_batches, bool) or not isinstance(n_batches, int) or n_batches < 1
        ):
            raise ValueError(
                f"ProgressBar: n_batches must be a positive integer or None, got {n_batches!r}"
            )
        if mininterval < 0:
            raise ValueError(f"ProgressBar: mininterval must be >= 0 seconds, got {mininterval!r}")
        self.stream: IO[str] = stream if stream is not None else sys.stdout
        self._enabled = _is_terminal(self.stream) if enabled is None else bool(enabled)
        self._lines = self._enabled if lines is None else bool(lines)
        self.n_batches = n_batches
        self.mininterval = float(mininterval)
        self._bar: Any = None
        self._batches_last_epoch: int | None = None
        self._batches = 0
        self._epoch_started = 0.0
        if self._enabled:
            # An instance attribute, so the trainer only calls per batch when the bar draws.
            self.at_batch_end = self._at_batch_end

    @property
    def enabled(self) -> bool:
        """Whether this bar draws (decided at construction)."""
        return self._enabled

    def at_epoch_begin(
        self, trainer: TrainerView, epoch: int = 0, num_epochs: int = 0, **kwargs: Any
    ) -> None:
        if not self._enabled:
            return
        from tqdm import tqdm

        self._close_bar()
        total = kwargs.get("n_batches") or self.n_batches or self._batches_last_epoch
        self._batches = 0
        self._epoch_started = time.perf_counter()
        # Follow the terminal's width; where there is none (a StringIO, a pty without a size)
        # fix one, else tqdm asks the terminal, gets 0 x 0 and draws nothing.
        shape: dict[str, Any] = (
            {"dynamic_ncols": True} if _has_size(self.stream) else {"ncols": 100, "nrows": 24}
        )
        self._bar = tqdm(
            total=total,
            desc=f"epoch {epoch}/{num_epochs}",
            unit="batch",
            file=self.stream,
            leave=False,  # the summary line takes the bar's place
            mininterval=self.mininterval,
            **shape,
        )

    def _at_batch_end(
        self, trainer: TrainerView, losses: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> None:
        bar = self._bar
        if bar is None:
            return
        self._batches += 1
        # tqdm.update's own test for a redraw: only then is reading the loss worth a sync.
        if (
            losses
            and bar.n + 1 - bar.last_print_n >= bar.miniters
            and time.time() - bar.last_print_t >= bar.mininterval
        ):
            name, value = next(iter(losses.items()))
            bar.set_postfix_str(f"{name} {_number(value)}", refresh=False)
        bar.update(1)

    def at_epoch_end(
        self,
        trainer: TrainerView,
        epoch: int = 0,
        num_epochs: int = 0,
        metrics_train: Mapping[str, Any] | None = None,
        metrics_val: Mapping[str, Any] | None = None,
        is_best: bool = False,
        **kwargs: Any,
    ) -> None:
        if not self._lines:
            return
        from tqdm import tqdm

        self._close_bar()
        if self._batches:
            self._batches_last_epoch = self._batches
        state = getattr(trainer, "state", None) or {}
        if "train_seconds" in state:
            seconds = float(state["train_seconds"]) + float(state.get("val_seconds", 0.0))
        else:
            seconds = time.perf_counter() - self._epoch_started
        line = format_epoch_line(
            epoch, num_epochs, metrics_train or {}, metrics_val or {}, seconds, is_best
        )
        tqdm.write(line, file=self.stream)
        flush = getattr(self.stream, "flush", None)
        if callable(flush):
            flush()

    def at_training_end(self, trainer: TrainerView, **kwargs: Any) -> None:
        self._close_bar()

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def state_dict(self) -> dict[str, Any]:
        """The last epoch's batch count, so a resumed run's first bar has a total."""
        return {"batches_last_epoch": self._batches_last_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        count = state.get("batches_last_epoch")
        self._batches_last_epoch = int(count) if count else None
