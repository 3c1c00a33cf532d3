"""CSVLogger: one row per epoch in ``metrics.csv``, exactly one per epoch across resumes."""

from __future__ import annotations

import csv
import io
import os
import time
from typing import Any

from epochal.callbacks import AbstractCallback
from epochal.files import atomic_write
from epochal_callbacks._util import current_lrs, run_folder


class CSVLogger(AbstractCallback):
    """Writes ``epoch``, every train and val metric, the lr(s) and the epoch's seconds.

    The file is rewritten atomically each epoch, keeping the rows of earlier epochs and
    replacing any row of this epoch or later (left by a run that crashed before its
    checkpoint and was resumed): no duplicated or lost rows, never a half-written file.
    A metric that appears later adds a column; earlier rows leave it empty.

    Args:
        path: folder for the file (default: the trainer's ``save_path``).
        file_name: the file's name in that folder.
    """

    main_process_only = True  # distributed training: rank 0 writes, the others train

    def __init__(self, path: str | os.PathLike[str] | None = None, file_name: str = "metrics.csv"):
        self.path = path
        self.file_name = file_name
        self._file: str | None = None
        self._epoch_started: float | None = None

    @property
    def file(self) -> str | None:
        """The CSV file, once training has begun."""
        return self._file

    def at_training_begin(self, trainer: Any, **kwargs: Any) -> None:
        self._file = os.path.join(run_folder("CSVLogger", trainer, self.path), self.file_name)

    def at_epoch_begin(self, trainer: Any, **kwargs: Any) -> None:
        self._epoch_started = time.perf_counter()

    def at_epoch_end(
        self,
        trainer: Any,
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
        if os.path.exists(self._file):
            with open(self._file, newline="") as handle:
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
