"""What a run leaves in its folder, and the pieces an experiment builds a run from.

``summary.json`` (status, best epoch and score, wall time, versions), the run folder's name and
its lock, its checkpoint files (and a ``checkpoint_best`` made consistent after a kill), the
backend's trainer class looked up by name with an install hint.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import json
import math
import numbers
import os
import reprlib
import shutil
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from epochal.errors import CheckpointError, ConfigError, EpochalError
from epochal.runs.files import atomic_write, check_run_file, open_run_file

__all__ = [
    "RunRecorder",
    "RunResult",
    "backend_trainer",
    "check_core_state",
    "checkpoint_file",
    "checkpoint_value_error",
    "new_run_dir",
    "own_run_dir",
    "read_summary",
    "reconcile_best",
    "run_lock",
    "versions",
    "write_summary",
]

#: Install hints for the backends epochal ships.
BACKEND_PACKAGES = {"torch": "epochal-torch", "tf": "epochal-tf"}


@dataclass
class RunResult:
    """What a run leaves: its folder, trainer, best network and the summary written."""

    run_dir: str | None
    trainer: Any
    network: Any
    summary: dict[str, Any]

    @property
    def best_val_score(self) -> float | None:
        return self.summary.get("best_val_score")

    @property
    def best_epoch(self) -> int | None:
        return self.summary.get("best_epoch")


class RunRecorder:
    """Keeps each epoch's metrics for the summary (a delira-style callback)."""

    state_key = "epochal.run-recorder"

    def __init__(self) -> None:
        self.epochs: list[int] = []
        self.last: dict[str, float] = {}

    def at_epoch_begin(self, trainer: Any, **kwargs: Any) -> dict:
        return {}

    def at_epoch_end(
        self, trainer: Any, epoch: int = 0, metrics_train=None, metrics_val=None, **kwargs: Any
    ) -> dict:
        self.epochs.append(epoch)
        self.last = {**(metrics_train or {}), **(metrics_val or {})}
        return {}


def backend_trainer(backend: str) -> type:
    """The trainer class registered as ``backend``, or an error that says what to install."""
    from epochal.plugins.registry import trainers

    registry = trainers()
    if backend not in registry:
        package = BACKEND_PACKAGES.get(backend)
        hint = f" Install it: pip install {package}." if package else ""
        raise ConfigError(
            f"unknown backend {backend!r}; installed backends: "
            f"{', '.join(registry.names()) or 'none'}.{hint}"
        )
    try:
        return registry.get(backend)
    except ImportError as exc:
        package = BACKEND_PACKAGES.get(backend, "the backend's framework")
        raise ConfigError(
            f"the backend {backend!r} is installed but its framework cannot be imported: "
            f"{exc.__cause__ or exc}. Install it: pip install {package}"
        ) from None


def new_run_dir(save_path: str, name: str) -> str:
    """``<save_path>/<name>/<date-time>``, made unique with a suffix (not yet created)."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = os.path.join(save_path, name, stamp)
    candidate, suffix = base, 1
    while os.path.exists(candidate):
        suffix += 1
        candidate = f"{base}-{suffix}"
    return candidate


def versions(trainer_cls: type | None) -> dict[str, str]:
    """Python, epochal, every epochal plugin distribution and the backend's framework."""
    import platform
    from importlib import metadata

    found = {"python": platform.python_version()}
    for dist in (
        "epochal",
        "epochal-torch",
        "epochal-tf",
        "epochal-callbacks",
        "torch",
        "tensorflow",
        "keras",
        "numpy",
        "batchgenerators",
    ):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    if trainer_cls is not None:
        found["trainer"] = f"{trainer_cls.__module__}.{trainer_cls.__qualname__}"
    return found


def write_summary(run_dir: str, summary: dict[str, Any]) -> None:
    with atomic_write(os.path.join(run_dir, "summary.json")) as handle:
        handle.write(json.dumps(summary, indent=2, default=_jsonable).encode())


def read_summary(run_dir: str) -> dict[str, Any]:
    """``summary.json`` of ``run_dir``; ``{}`` if it is missing or unreadable. A link or a
    FIFO there is refused (:class:`ConfigError`), not followed or waited on."""
    try:
        with open_run_file(os.path.join(run_dir, "summary.json"), "r") as handle:
            summary = json.load(handle)
    except ConfigError:
        raise
    except (OSError, ValueError):
        return {}
    return summary if isinstance(summary, dict) else {}


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return str(value)


LOCK_FILE = ".epochal.lock"


@contextlib.contextmanager
def run_lock(run_dir: str) -> Iterator[None]:
    """Hold ``run_dir`` for this process: a second run pointed at it is refused.

    An OS lock (``flock``) on ``<run_dir>/.epochal.lock``: the kernel releases it when the
    holder ends, however it ends (``kill -9`` included), so it never stays stuck. The lock
    file is written in place, so a symbolic link, a hard link or anything but a regular file
    in its place is refused (:class:`ConfigError`): its target is never truncated.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    os.makedirs(run_dir, exist_ok=True)
    handle = open_run_file(os.path.join(run_dir, LOCK_FILE), "r+", create=True)
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "another process"
            raise ConfigError(
                f"{run_dir} is in use by {owner}: two runs must not write one run folder. "
                "Wait for it to end, or give another --run-dir (the lock goes when that "
                "process ends, even if it is killed)."
            ) from None
        handle.seek(0)
        handle.truncate()
        started = _dt.datetime.now().isoformat(timespec="seconds")
        handle.write(f"epochal process {os.getpid()} (since {started})\n")
        handle.flush()
        yield
    finally:
        handle.close()  # closing releases the lock


def checkpoint_file(run_dir: str, stem: str) -> str | None:
    """The file of checkpoint ``stem`` in ``run_dir`` (whatever the backend's suffix).

    A link, a FIFO or anything else that is not a regular file under that name is refused
    (:class:`ConfigError` naming it), before any loader opens it (a FIFO would block it).
    """
    for name in sorted(os.listdir(run_dir)) if os.path.isdir(run_dir) else ():
        if name == stem or (name.startswith(stem + ".") and not name.endswith(".tmp")):
            path = os.path.join(run_dir, name)
            check_run_file(path)
            return path
    return None


def _describe(value: Any) -> str:
    return f"{reprlib.repr(value)} ({type(value).__name__})"


def _is_int(value: Any, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def checkpoint_value_error(path: str, key: str, value: Any, wanted: str) -> CheckpointError:
    """The one-line error for a checkpoint ``path`` whose ``key`` holds ``value``, which is
    not ``wanted`` (a crafted or altered file): names the file, the key and what to do."""
    return CheckpointError(
        f"checkpoint {path}: {key} must be {wanted}, got {_describe(value)}; the file was not "
        "written by epochal or was altered. Use another checkpoint, e.g. checkpoint_epoch_<n>"
    )


def check_core_state(path: str, state: Mapping[str, Any]) -> None:
    """Refuse a checkpoint whose core part (what ``AbstractNetworkTrainer._core_state``
    writes) has values of the wrong type or range: a :class:`CheckpointError` naming the
    file and the key. Backends call it when they load a checkpoint, so that a crafted
    ``epoch = -5`` or ``epoch = "x"`` is one clear line, not a failure deep in the loop."""
    refuse = functools.partial(checkpoint_value_error, path)
    if "epoch" in state and not _is_int(state["epoch"], 0):
        raise refuse("'epoch'", state["epoch"], "an integer >= 0")
    for key in ("best_epoch", "fold"):
        value = state.get(key)
        if value is not None and not _is_int(value, 0):
            raise refuse(repr(key), value, "an integer >= 0 or None")
    score = state.get("best_val_score")
    if score is not None and (isinstance(score, bool) or not isinstance(score, numbers.Real)):
        raise refuse("'best_val_score'", score, "a number or None")
    interrupted = state.get("interrupted")
    if interrupted is not None:
        if not isinstance(interrupted, Mapping) or (interrupted and "epoch" not in interrupted):
            raise refuse("'interrupted'", interrupted, "None or a table with an 'epoch'")
        for key, least in (("epoch", 1), ("batches_done", 0), ("world_size", 1)):
            if key in interrupted and not _is_int(interrupted[key], least):
                raise refuse(f"'interrupted.{key}'", interrupted[key], f"an integer >= {least}")
    callbacks = state.get("callbacks")
    if callbacks is not None and (
        not isinstance(callbacks, Mapping) or not all(isinstance(k, str) for k in callbacks)
    ):
        raise refuse("'callbacks'", callbacks, "a table of callback states or None")


def reconcile_best(trainer: Any, run_dir: str) -> None:
    """Make ``checkpoint_best`` the epoch ``checkpoint_last`` calls best.

    A kill between the writes of ``checkpoint_best`` and ``checkpoint_last`` leaves a best
    file of an epoch the resumed run trains again; on hardware that does not repeat itself
    exactly, that epoch may turn out differently. The best epoch's weights are put back
    from ``checkpoint_last`` (when it is that epoch) or ``checkpoint_epoch_<n>``.
    """
    best_file = checkpoint_file(run_dir, "checkpoint_best")
    if best_file is None or trainer.best_epoch is None:
        return
    try:
        saved_epoch = trainer.load_state(os.path.join(run_dir, "checkpoint_best"))["epoch"]
    except (EpochalError, OSError, KeyError, ValueError):
        saved_epoch = None
    if saved_epoch == trainer.best_epoch:
        return
    at_epoch_end = trainer._resume_batches == 0 and trainer.start_epoch - 1 == trainer.best_epoch
    source = checkpoint_file(run_dir, "checkpoint_last") if at_epoch_end else None
    source = source or checkpoint_file(run_dir, f"checkpoint_epoch_{trainer.best_epoch}")
    if source is None:
        os.remove(best_file)
        warnings.warn(
            f"{best_file} held epoch {saved_epoch}, not the best epoch {trainer.best_epoch} "
            "of checkpoint_last, and no checkpoint of that epoch is left: it was removed; "
            "the next best epoch writes it again",
            stacklevel=3,
        )
        return
    with open_run_file(source, "rb") as handle, atomic_write(best_file) as target:
        shutil.copyfileobj(handle, target)


@contextlib.contextmanager
def own_run_dir(run_dir: str, collective: Any) -> Iterator[None]:
    """While inside, this run owns ``run_dir``: rank 0 (or the only process) holds its lock
    (one run a folder); the other ranks wait until it has it, so that a refused run stops
    every rank before any trains."""
    with contextlib.ExitStack() as stack:
        refused: Exception | None = None
        if collective.is_main:
            try:
                stack.enter_context(run_lock(run_dir))
            except Exception as exc:  # noqa: BLE001 - re-raised below, after the others know
                refused = exc
        if collective.any(refused is not None, what="waiting for rank 0 to lock the run folder"):
            if refused is not None:
                raise refused
            raise ConfigError(f"rank 0 could not take the run folder {run_dir}: see its error")
        yield
