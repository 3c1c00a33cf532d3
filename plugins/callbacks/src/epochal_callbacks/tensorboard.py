"""TensorBoardLogger: every metric, the learning rate and the epoch time as TensorBoard scalars.

Written with ``tensorboard.summary.Writer`` onto an output of our own (``event_file_output``):
TensorBoard's ``DirectoryOutput`` goes through ``tf.io.gfile``, which imports all of
TensorFlow when it is installed (3 s, log noise, a second CUDA runtime in a torch process).
Ours writes the same event records with plain file I/O.
"""

from __future__ import annotations

import functools
import os
import socket
import time
from collections.abc import Mapping
from typing import Any

from epochal.loop.callbacks import AbstractCallback, TrainerView
from epochal.runs.files import run_file_error
from epochal_callbacks._util import check_path, current_lrs, host_float, output_path

__all__ = ["TensorBoardLogger", "event_file_output"]

#: Folder, under the logger's, for per-batch scalars: its own TensorBoard run, because its
#: steps (batches) and the epochs are on different scales and a restart marker purges by step.
BATCH_RUN = "batches"


@functools.cache
def _event_file_output_class() -> type:
    """The output class, defined on first use so that importing this module stays light."""
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary import Output
    from tensorboard.summary.writer.record_writer import RecordWriter
    from tensorboard.util import tensor_util

    class EventFileOutput(Output):
        """A ``tensorboard.summary.Output`` that writes one new event file in ``folder``.

        The file starts with the version record and a ``SessionLog.START`` at
        ``start_step``: TensorBoard then drops what earlier files of the run logged at
        ``start_step`` or later (epochs an interrupted run logged and a resumed run trains
        again), so every step shows once.
        """

        def __init__(self, folder: str, start_step: int) -> None:
            if os.path.islink(folder):  # a run folder's "batches" sub-folder: not followed
                raise run_file_error(folder, "a symbolic link")
            os.makedirs(folder, exist_ok=True)
            # TensorBoard reads a run's files in name order: the time first, then the
            # monotonic clock, so that two files of one process in one second sort by creation.
            name = (
                f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}."
                f"{os.getpid()}.{time.monotonic_ns():020d}"
            )
            self.path = os.path.join(folder, name)
            # "x": a new file, never an existing one or a link; closed in close()
            self._records = RecordWriter(open(self.path, "xb"))
            self._emit(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))
            restart = event_pb2.SessionLog(status=event_pb2.SessionLog.START)
            self._emit(
                event_pb2.Event(wall_time=time.time(), step=int(start_step), session_log=restart)
            )
            self.flush()

        def _emit(self, event: Any) -> None:
            self._records.write(event.SerializeToString())

        def emit_scalar(
            self,
            *,
            plugin_name: str,
            tag: str,
            data: Any,
            step: Any,
            wall_time: float,
            tag_metadata: bytes | None = None,
            description: str | None = None,
        ) -> None:
            # The record tensorboard's own DirectoryOutput writes.
            metadata = summary_pb2.SummaryMetadata(
                plugin_data=summary_pb2.SummaryMetadata.PluginData(
                    plugin_name=plugin_name, content=tag_metadata
                ),
                summary_description=description,
                data_class=summary_pb2.DataClass.DATA_CLASS_SCALAR,
            )
            event = event_pb2.Event(wall_time=wall_time, step=step)
            tensor = tensor_util.make_tensor_proto(data)
            event.summary.value.add(tag=tag, tensor=tensor, metadata=metadata)
            self._emit(event)

        def flush(self) -> None:
            self._records.flush()

        def close(self) -> None:
            self._records.close()

    return EventFileOutput


def event_file_output(folder: str, start_step: int) -> Any:
    """A new ``EventFileOutput`` (a ``tensorboard.summary.Output``) for ``Writer``."""
    return _event_file_output_class()(folder, start_step)


class TensorBoardLogger(AbstractCallback):
    """Scalars for TensorBoard: each epoch's metrics, learning rate(s) and seconds.

    Tags per epoch (step = epoch): every train and validation metric under its own key
    (``CE``, ``val_CE``, ...), ``lr`` (``lr/<optimizer>`` with several optimizers) and
    ``epoch_seconds`` (training plus validation). With ``per_batch``, the batch losses and
    metrics go to the run ``batches`` (a sub-folder) as ``batch/<key>``, step = batches
    trained since the run began; reading them costs a host sync per logged batch, so
    ``per_batch=n`` logs every n-th batch only.

    Resume: each training session writes a new event file (steps only go forward within it)
    that starts with a restart marker (``SessionLog.START``) at ``trainer.start_epoch``, and
    at the saved batch count + 1 for ``batches``. TensorBoard shows one continuous curve per
    tag: epochs an interrupted run logged and the resumed run trains again (it crashed
    before that epoch's checkpoint, or was resumed from an older one) show the new values
    only. The Python loader drops the stale points at the marker (it logs "Detected out of
    order event.step ... Purging"); the Rust data server drops a series' points from a step
    on when that step is written again. A fresh run (epoch 1) into a folder with old files
    replaces their curves the same way.

    Args:
        log_dir: the folder (default: ``<trainer.save_path>/tensorboard``); a relative one is
            inside the run folder and may not leave it (``../tb``), an absolute one is used
            as given. A bad one is refused here, before training.
        per_batch: ``False``; ``True`` to log every batch; an integer n for every n-th.
    """

    main_process_only = True  # distributed training: rank 0 writes, the others train
    #: What ``epochal train`` suggests after a run that logged with this callback.
    next_steps = ("tensorboard --logdir {run_dir}",)

    def __init__(
        self, log_dir: str | os.PathLike[str] | None = None, per_batch: bool | int = False
    ) -> None:
        every = 1 if per_batch is True else 0 if per_batch is False else per_batch
        if isinstance(every, bool) or not isinstance(every, int) or every < 0:
            raise ValueError(
                f"TensorBoardLogger: per_batch must be False, True or a positive number of "
                f"batches, got {per_batch!r}"
            )
        self.log_dir = check_path("TensorBoardLogger", "log_dir", log_dir)
        self.per_batch = every
        self._folder: str | None = None
        self._start_epoch = 1
        self._writer: Any = None
        self._batch_writer: Any = None
        self._batch_step = 0  # batches trained so far, across resumes
        self._batch_step_at_start = 0
        if every:
            self.at_batch_end = self._at_batch_end  # only then does the trainer call per batch

    @property
    def folder(self) -> str | None:
        """Where the event files go, once training has begun."""
        return self._folder

    def at_training_begin(self, trainer: TrainerView, **kwargs: Any) -> None:
        self.close()
        self._folder = output_path(
            "TensorBoardLogger", trainer, self.log_dir, default="tensorboard"
        )
        self._start_epoch = int(getattr(trainer, "start_epoch", 1))
        self._batch_step_at_start = self._batch_step

    def _writer_for(self, batches: bool) -> Any:
        """The epoch or batch writer, its file created on first use (no empty files)."""
        if self._folder is None:
            raise RuntimeError(
                "TensorBoardLogger was used before training began: register it on the "
                "trainer (trainer.register_callback) so at_training_begin runs first"
            )
        from tensorboard.summary import Writer

        if batches:
            if self._batch_writer is None:
                folder = os.path.join(self._folder, BATCH_RUN)
                self._batch_writer = Writer(
                    event_file_output(folder, self._batch_step_at_start + 1)
                )
            return self._batch_writer
        if self._writer is None:
            self._writer = Writer(event_file_output(self._folder, self._start_epoch))
        return self._writer

    def _at_batch_end(
        self,
        trainer: TrainerView,
        losses: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._batch_step += 1
        if self._batch_step % self.per_batch:
            return
        writer = self._writer_for(batches=True)
        for key, value in {**(losses or {}), **(metrics or {})}.items():
            writer.add_scalar(f"batch/{key}", host_float(value), self._batch_step)

    def at_epoch_end(
        self,
        trainer: TrainerView,
        epoch: int = 0,
        metrics_train: Mapping[str, Any] | None = None,
        metrics_val: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        writer = self._writer_for(batches=False)
        wall_time = time.time()
        scalars: dict[str, float] = {}
        for key, value in {**(metrics_train or {}), **(metrics_val or {})}.items():
            scalars[key] = float(value)
        rates = current_lrs(trainer)
        for name, rate in rates.items():
            scalars["lr" if len(rates) == 1 else f"lr/{name}"] = rate
        state = getattr(trainer, "state", None) or {}
        if "train_seconds" in state:
            scalars["epoch_seconds"] = float(state["train_seconds"]) + float(
                state.get("val_seconds", 0.0)
            )
        for tag, value in scalars.items():
            writer.add_scalar(tag, value, epoch, wall_time=wall_time)
        writer.flush()
        if self._batch_writer is not None:
            self._batch_writer.flush()

    def at_training_end(self, trainer: TrainerView, **kwargs: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close the event files; the next training session starts new ones."""
        for writer in (self._writer, self._batch_writer):
            if writer is not None:
                writer.close()
        self._writer = self._batch_writer = None

    def state_dict(self) -> dict[str, Any]:
        """The batch count, so per-batch steps continue after a resume."""
        return {"batch_step": self._batch_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._batch_step = int(state.get("batch_step", 0))
