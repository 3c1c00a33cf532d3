"""Checkpoints: written atomically, read with ``weights_only=True``.

``torch.load(..., weights_only=True)`` unpickles only tensors and plain containers, so a
crafted checkpoint cannot run code; a file that is truncated, foreign or crafted gets a
:class:`CheckpointError` naming the file and what to do.
"""

from __future__ import annotations

import os
import pickle
from typing import Any

import torch

from epochal.errors import EpochalError
from epochal.files import atomic_write

__all__ = ["CheckpointError", "load_checkpoint", "save_checkpoint"]


class CheckpointError(EpochalError):
    """A checkpoint that cannot be read or does not fit the trainer."""


def save_checkpoint(file_name: str | os.PathLike[str], state: dict[str, Any]) -> str:
    """Write ``state`` to ``file_name`` through a temporary file and ``os.replace``."""
    path = os.fspath(file_name)
    with atomic_write(path) as handle:
        torch.save(state, handle)
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
