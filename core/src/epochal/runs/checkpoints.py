"""Checkpoints, written once for every backend: names, the schedule, lookup, the core part's
checks, reconciliation after a kill, and where the best weights are kept.

A backend provides only its state and a file format (the checkpoint primitives of
:class:`epochal.loop.backend.CheckpointPrimitives`); everything about *which* checkpoint is
written when, found where, and trusted how is decided here, so that every backend (and the
retention policies to come) behaves the same.

The schedule after each finished epoch ``n`` (rank 0 only, when the trainer has a run folder):
``checkpoint_epoch_<n>`` every ``save_freq`` epochs, ``checkpoint_best`` when ``n`` is the best
epoch, then ``checkpoint_last`` (always last: a kill between the writes leaves a
``checkpoint_best`` newer than ``checkpoint_last``, which :func:`reconcile_best` repairs on
resume). A stop mid-epoch writes ``checkpoint_last`` marked ``interrupted``. Without a run
folder, the best epoch's network state is kept in memory instead (:func:`snapshot`).
"""

from __future__ import annotations

import copy
import functools
import numbers
import os
import reprlib
import shutil
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, BinaryIO

from epochal.errors import CheckpointError, EpochalError
from epochal.runs.files import atomic_write, check_run_file, open_run_file

__all__ = [
    "BEST",
    "LAST",
    "PREFIX",
    "check_core_state",
    "checkpoint_file",
    "checkpoint_value_error",
    "epoch_stem",
    "find",
    "for_predict",
    "for_resume",
    "has_suffix",
    "is_checkpoint_name",
    "open_checkpoint",
    "reconcile_best",
    "snapshot",
    "stems_after_epoch",
    "to_read",
    "to_write",
]

#: Every checkpoint's name starts with this; the backend's suffix follows the stem.
PREFIX = "checkpoint_"
#: The best epoch's checkpoint (written when an epoch beats the best score).
BEST = "checkpoint_best"
#: The last finished epoch (or the batch a stop came at): what ``resume`` continues from.
LAST = "checkpoint_last"


# -- names and suffixes ----------------------------------------------------------------------


def epoch_stem(epoch: int) -> str:
    """``checkpoint_epoch_<epoch>``: the checkpoint written every ``save_freq`` epochs."""
    return f"{PREFIX}epoch_{epoch}"


def is_checkpoint_name(name: str) -> bool:
    """Whether a file name in a run folder is one of its checkpoints (any backend's)."""
    return name.startswith(PREFIX)


def has_suffix(file_name: str, suffix: str, aliases: Sequence[str] = ()) -> bool:
    """Whether ``file_name`` already ends with the backend's ``suffix`` or one of ``aliases``
    (suffixes a user may give, e.g. delira's ``.pth``)."""
    return bool(suffix) and file_name.endswith((suffix, *aliases))


def to_write(file_name: str | os.PathLike[str], suffix: str, aliases: Sequence[str] = ()) -> str:
    """The file ``save_state(file_name)`` writes: ``file_name`` plus the suffix when missing."""
    path = os.fspath(file_name)
    return path if has_suffix(path, suffix, aliases) else path + suffix


def to_read(file_name: str | os.PathLike[str], suffix: str, aliases: Sequence[str] = ()) -> str:
    """The file ``load_state(file_name)`` reads: ``file_name`` as given when it exists or has a
    suffix, else with the backend's suffix (so the suffix may be left off)."""
    path = os.fspath(file_name)
    if os.path.exists(path) or has_suffix(path, suffix, aliases):
        return path
    return path + suffix


# -- the schedule ----------------------------------------------------------------------------


def stems_after_epoch(epoch: int, is_best: bool, save_freq: int) -> list[str]:
    """The checkpoints written after ``epoch``, in the order they are written
    (``checkpoint_last`` last: see the module's docstring)."""
    stems = [epoch_stem(epoch)] if epoch % save_freq == 0 else []
    if is_best:
        stems.append(BEST)
    stems.append(LAST)
    return stems


def snapshot(network_state: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``network_state`` that later training does not change: the best weights of a
    trainer without a run folder (a backend's state may share memory with its network)."""
    return copy.deepcopy(dict(network_state))


# -- lookup ----------------------------------------------------------------------------------


def open_checkpoint(path: str | os.PathLike[str]) -> BinaryIO:
    """``path`` opened for a backend's ``read_checkpoint``: no link followed, no FIFO waited on
    (both refused, naming the file), a missing or unreadable file a
    :class:`~epochal.errors.CheckpointError` naming it."""
    path = os.fspath(path)
    try:
        return open_run_file(path, "rb")
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path!r} does not exist") from None
    except OSError as exc:  # no permission, an I/O error
        raise CheckpointError(f"checkpoint {path!r} cannot be opened: {exc.strerror}") from exc


def checkpoint_file(run_dir: str | os.PathLike[str], stem: str) -> str | None:
    """The file of checkpoint ``stem`` in ``run_dir`` (whatever the backend's suffix).

    A link, a FIFO or anything else that is not a regular file under that name is refused
    (:class:`~epochal.errors.ConfigError` naming it), before any loader opens it (a FIFO would
    block it).
    """
    run_dir = os.fspath(run_dir)
    for name in sorted(os.listdir(run_dir)) if os.path.isdir(run_dir) else ():
        if name == stem or (name.startswith(stem + ".") and not name.endswith(".tmp")):
            path = os.path.join(run_dir, name)
            check_run_file(path)
            return path
    return None


def find(run_dir: str | os.PathLike[str], stem: str) -> str | None:
    """``run_dir/stem`` (as a trainer's ``load_state`` takes it) if that checkpoint exists."""
    run_dir = os.fspath(run_dir)
    return os.path.join(run_dir, stem) if checkpoint_file(run_dir, stem) else None


def for_resume(run_dir: str | os.PathLike[str]) -> str | None:
    """The checkpoint ``resume`` continues from (``checkpoint_last``), or ``None``."""
    return find(run_dir, LAST)


def for_predict(run_dir: str | os.PathLike[str], which: str = "best") -> str | None:
    """The checkpoint ``predict`` loads: ``checkpoint_<which>``, falling back to
    ``checkpoint_last`` (a run that tracked no best has none); ``None`` if neither exists."""
    return find(run_dir, f"{PREFIX}{which}") or find(run_dir, LAST)


# -- the core part of a checkpoint -----------------------------------------------------------


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
    file and the key. Backends call it when they read a checkpoint, so that a crafted
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


def weights_epoch(state: Mapping[str, Any]) -> int | None:
    """The epoch at whose end a checkpoint's weights were taken: its ``epoch``, unless it was
    written by a stop in the middle of the next epoch (``None``: its weights are of no epoch's
    end)."""
    interrupted = state.get("interrupted") or {}
    if "epoch" not in state or interrupted.get("batches_done"):
        return None
    return int(state["epoch"])


# -- after a kill ----------------------------------------------------------------------------


def reconcile_best(trainer: Any, run_dir: str | os.PathLike[str]) -> None:
    """Make ``checkpoint_best`` the epoch ``checkpoint_last`` calls best (rank 0, on resume,
    after ``trainer.update_state`` loaded ``checkpoint_last``).

    A kill between the writes of ``checkpoint_best`` and ``checkpoint_last`` leaves a best
    file of an epoch the resumed run trains again; on hardware that does not repeat itself
    exactly, that epoch may turn out differently. The best epoch's weights are put back
    from ``checkpoint_last`` (when it is that epoch's end) or ``checkpoint_epoch_<n>``; when
    neither is left, ``checkpoint_best`` is removed (the next best epoch writes it again).
    Uses ``trainer.best_epoch``, ``trainer.loaded_weights_epoch`` and ``trainer.load_state``.
    """
    run_dir = os.fspath(run_dir)
    best_epoch = trainer.best_epoch
    best_file = checkpoint_file(run_dir, BEST)
    if best_file is None or best_epoch is None:
        return
    try:
        saved_epoch = trainer.load_state(os.path.join(run_dir, BEST))["epoch"]
    except (EpochalError, OSError, KeyError, ValueError):
        saved_epoch = None
    if saved_epoch == best_epoch:
        return
    at_epoch_end = getattr(trainer, "loaded_weights_epoch", None) == best_epoch
    source = checkpoint_file(run_dir, LAST) if at_epoch_end else None
    source = source or checkpoint_file(run_dir, epoch_stem(best_epoch))
    if source is None:
        os.remove(best_file)
        warnings.warn(
            f"{best_file} held epoch {saved_epoch}, not the best epoch {best_epoch} "
            "of checkpoint_last, and no checkpoint of that epoch is left: it was removed; "
            "the next best epoch writes it again",
            stacklevel=3,
        )
        return
    with open_run_file(source, "rb") as handle, atomic_write(best_file) as target:
        shutil.copyfileobj(handle, target)
