"""CSVLogger: one row per epoch in ``metrics.csv``, exactly one per epoch across resumes."""

from __future__ import annotations

import csv
import io
import os
import time
from typing import Any

from epochal.loop.callbacks import AbstractCallback, TrainerView
from epochal.runs.files import atomic_write, open_run_file
from epochal_callbacks._util import check_file_name, check_path, current_lrs, output_path


class CSVLogger(AbstractCallback):
    """Writes ``epoch``, every train and val metric, the lr(s) and the epoch's seconds.

    The file is rewritten atomically each epoch, keeping the rows of earlier epochs and
    replacing any row of this epoch or later (left by a run that crashed before its
    checkpoint and was resumed): no duplicated or lost rows, never a half-written file.
    A metric that appears later adds a column; earlier rows leave it empty.

    Args:
        path: folder for the file (default: the trainer's ``save_path``, the run folder); a
            relative one is inside the run folder, an absolute one is used as given.
        file_name: the file's name in that folder; it may not leave the run folder
            (``../x.csv``) unless it is an absolute path. A bad path is refused here, before
            training; a link or a FIFO under that name in the run folder is refused when
            training begins: it is never read (a link to a secret) nor written through.
    """

    main_process_only = True  # distributed training: rank 0 writes, the others train

    def __init__(self, path: str | os.PathLike[str] | None = None, file_name: str = "metrics.csv"):
        self.path = check_path("CSVLogger", "path", path)
        self.file_name = check_path("CSVLogger", "file_name", file_name)
        check_file_name("CSVLogger", self.path, self.file_name)
        self._file: str | None = None
        self._epoch_started: float | None = None

    @property
    def file(self) -> str | None:
        """The CSV file, once training has begun."""
        return self._file

    def at_training_begin(self, trainer: TrainerView, **kwargs: Any) -> None:
        self._file = output_path("CSVLogger", trainer, self.path, self.file_name)

    def at_epoch_begin(self, trainer: TrainerView, **kwargs: Any) -> None:
        self._epoch_started = time.perf_counter()

    def at_epoch_end(
        self,
        trainer: TrainerView,
        epoch: int = 0,
        metrics_train: dict | None = None,
        metrics_val: dict | None = None,
        **kwargs: Any,
    ) -> None:
        if self._file is None:
            self.at_training_begin(trainer)
        assert self._file is not None
        seconds = time.perf_counter() - self._epoch_started if self._epoch_started else None
        row: dict[str, Any] = {"epoch": epoch, **(metrics_train or {}), **(metrics_val or {})}
        lrs = current_lrs(trainer)
        for name, rate in lrs.items():
            row["lr" if len(lrs) == 1 else f"lr_{name}"] = rate
        row["seconds"] = round(seconds, 4) if seconds is not None else ""
        self._write(epoch, row)

    def _write(self, epoch: int, row: dict[str, Any]) -> None:
        assert self._file is not None
        columns: list[str] = []
        rows: list[dict[str, Any]] = []
        try:  # never through a link (a secret copied into the run) or from a FIFO (a hang)
            handle = open_run_file(self._file, "r", newline="")
        except FileNotFoundError:
            pass
        else:
            with handle:
                reader = csv.DictReader(handle)
                columns = list(reader.fieldnames or [])
                rows = [old for old in reader if _epoch_of(old) < epoch]
        columns += [key for key in row if key not in columns]
        if "seconds" in columns:  # keep the time last, after any new metric
            columns.remove("seconds")
            columns.append("seconds")
        rows.append(row)
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=columns, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        with atomic_write(self._file, "w") as handle:
            handle.write(text.getvalue())


def _epoch_of(row: dict[str, str]) -> int:
    try:
        return int(row.get("epoch") or 0)
    except ValueError:
        return 0
