"""What a run leaves in its folder, and the pieces an experiment builds a run from.

``summary.json`` (status, best epoch and score, wall time, versions), the run folder's name and
its lock (the backend's trainer class is looked up in :mod:`epochal.job.backends`). Checkpoints
(names, lookup, the repair of ``checkpoint_best`` after a kill) live in
:mod:`epochal.runs.checkpoints`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from epochal.errors import ConfigError
from epochal.runs.checkpoints import (  # their home; importable from here as before
    check_core_state,
    checkpoint_file,
    checkpoint_value_error,
    reconcile_best,
)
from epochal.runs.files import atomic_write, open_run_file

__all__ = [
    "RunRecorder",
    "RunResult",
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
    """Python, epochal, every installed epochal plugin distribution, and what the backend's
    distribution requires (its framework), as the plugin registry finds them."""
    import platform
    from importlib import metadata

    from epochal.job.backends import framework_distributions, plugin_distributions

    found = {"python": platform.python_version()}
    names = [
        "epochal",
        *sorted(set(plugin_distributions().values())),
        *(framework_distributions(trainer_cls) if trainer_cls is not None else []),
        "numpy",
        "batchgenerators",
    ]
    for dist in dict.fromkeys(names):
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
        if collective.any(refused is not None, what="taking the run folder"):
            if refused is not None:
                raise refused
            raise ConfigError(f"rank 0 could not take the run folder {run_dir}: see its error")
        yield
