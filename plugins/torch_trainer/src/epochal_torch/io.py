"""Checkpoints: written atomically, read with ``weights_only=True``.

``torch.load(..., weights_only=True)`` unpickles only tensors and plain containers, so a
crafted checkpoint cannot run code; a file that is truncated, foreign or crafted gets a
:class:`CheckpointError` naming the file and what to do.
"""

from __future__ import annotations

import os
import pickle
import random
from typing import Any

import numpy as np
import torch

from epochal.errors import CheckpointError
from epochal.files import atomic_write, os_error_in, write_error_message

__all__ = [
    "CheckpointError",
    "check_fits",
    "load_checkpoint",
    "restore_rng_state",
    "rng_state",
    "save_checkpoint",
]


def save_checkpoint(file_name: str | os.PathLike[str], state: dict[str, Any]) -> str:
    """Write ``state`` to ``file_name`` through a temporary file and ``os.replace``.

    A write that fails (a full disk, a file size limit) raises :class:`CheckpointError` naming
    the file and the cause; the previous ``file_name`` is left as it was, and no temporary file.
    """
    path = os.fspath(file_name)
    try:
        with atomic_write(path) as handle:
            torch.save(state, handle)
    except Exception as exc:  # torch reports a failed write as a RuntimeError about the zip
        error = os_error_in(exc)
        if error is None:
            raise
        raise CheckpointError(write_error_message("checkpoint", path, error)) from error
    return path


def load_checkpoint(
    file_name: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (only tensors and plain data)."""
    path = os.fspath(file_name)
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint {path!r} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"checkpoint {path!r} was refused: it holds objects other than tensors and plain "
            f"data, which could run code when loaded ({str(exc).splitlines()[0]}). Only load "
            "checkpoints written by epochal, or ones you trust and convert yourself."
        ) from exc
    except Exception as exc:  # garbage makes the unpickler fail in many ways
        raise CheckpointError(
            f"checkpoint {path!r} cannot be read ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'no detail'}): it is truncated or not "
            "a torch checkpoint. Use another one, e.g. checkpoint_epoch_<n>.pt."
        ) from exc
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path!r} is a torch file but not an epochal checkpoint")
    return state


def rng_state() -> dict[str, Any]:
    """torch (CPU and CUDA), numpy and Python RNG states, in weights_only-loadable types."""
    name, keys, position, has_gauss, cached = np.random.get_state()
    version, python_state, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached],
        "python": [version, list(python_state), gauss_next],
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Undo :func:`rng_state`: a resumed run draws the same random numbers."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    version, python_state, gauss_next = state["python"]
    random.setstate((version, tuple(python_state), gauss_next))


def check_fits(own: dict[str, torch.Tensor], saved: dict[str, Any]) -> None:
    """A checkpoint of another architecture: name every key that does not fit."""
    problems = []
    missing = sorted(set(own) - set(saved))
    unexpected = sorted(set(saved) - set(own))
    if missing:
        problems.append(f"missing in the checkpoint: {missing}")
    if unexpected:
        problems.append(f"not in the network: {unexpected}")
    shapes = [
        f"{key} {tuple(saved[key].shape)} in the checkpoint, {tuple(own[key].shape)} here"
        for key in own.keys() & saved.keys()
        if hasattr(saved[key], "shape") and saved[key].shape != own[key].shape
    ]
    if shapes:
        problems.append("other shapes: " + "; ".join(sorted(shapes)))
    if problems:
        raise CheckpointError(
            "the checkpoint does not fit this network (was it written for another "
            "architecture?): " + " | ".join(problems)
        )
