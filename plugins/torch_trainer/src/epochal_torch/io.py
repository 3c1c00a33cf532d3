"""Checkpoints: written atomically, read with ``weights_only=True``.

``torch.load(..., weights_only=True)`` unpickles only tensors and plain containers, so a
crafted checkpoint cannot run code; a file that is truncated, foreign or crafted gets a
:class:`CheckpointError` naming the file and what to do.
"""

from __future__ import annotations

import numbers
import os
import pickle
import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from epochal.errors import CheckpointError
from epochal.runs.checkpoints import check_core_state, checkpoint_value_error, open_checkpoint
from epochal.runs.files import atomic_write, os_error_in, write_error_message

__all__ = [
    "CheckpointError",
    "check_fits",
    "check_state",
    "load_checkpoint",
    "read_checkpoint",
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
    """Read a checkpoint written by :func:`save_checkpoint` (only tensors and plain data).

    The file is opened without following a link and without blocking on a FIFO (either is
    refused, naming the file), and what it holds is checked key by key (:func:`check_state`).
    """
    path = os.fspath(file_name)
    handle = open_checkpoint(path)
    try:
        with handle:
            state = torch.load(handle, map_location=map_location, weights_only=True)
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
    check_state(path, state)
    return state


def read_checkpoint(
    path: str | os.PathLike[str], weights_only: bool = True, **kwargs: Any
) -> dict[str, Any]:
    """``load_state``'s reader: :func:`load_checkpoint`, tensors mapped to ``map_location``
    (default: the CPU).

    Always with ``torch.load(weights_only=True)``: ``weights_only=False`` (which delira
    allowed) would let a crafted file run code, and is refused.
    """
    if not weights_only:
        raise ValueError(
            "load_state(weights_only=False) is refused: it would let a crafted checkpoint "
            "run code. epochal checkpoints load fully with weights_only=True."
        )
    return load_checkpoint(path, map_location=kwargs.get("map_location", "cpu"))


def _tensors(value: Any) -> bool:
    """A table of names to tensors (a module's ``state_dict``)."""
    return isinstance(value, Mapping) and all(
        isinstance(key, str) and isinstance(item, torch.Tensor) for key, item in value.items()
    )


def _rng_problem(rng: Any) -> tuple[str, Any, str] | None:
    """``(key, value, wanted)`` for the first part of ``rng`` that :func:`restore_rng_state`
    could not take, else ``None``."""
    if not isinstance(rng, Mapping):
        return "'rng'", rng, "a table of RNG states"
    torch_state = rng.get("torch")
    if (
        not isinstance(torch_state, torch.Tensor)
        or torch_state.dtype != torch.uint8
        or torch_state.shape != torch.get_rng_state().shape
    ):
        return "'rng.torch'", torch_state, "the uint8 tensor of torch.get_rng_state()"
    cuda = rng.get("cuda", [])
    if not isinstance(cuda, (list, tuple)) or not all(isinstance(t, torch.Tensor) for t in cuda):
        return "'rng.cuda'", cuda, "a list of uint8 tensors"
    numpy_state = rng.get("numpy")
    if not (
        isinstance(numpy_state, (list, tuple))
        and len(numpy_state) == 5
        and isinstance(numpy_state[0], str)
        and isinstance(numpy_state[1], torch.Tensor)
        and numpy_state[1].shape == (624,)
        and all(isinstance(v, numbers.Real) for v in numpy_state[2:])
    ):
        return "'rng.numpy'", numpy_state, "[name, 624 keys, position, has_gauss, cached]"
    python_state = rng.get("python")
    if not (
        isinstance(python_state, (list, tuple))
        and len(python_state) == 3
        and isinstance(python_state[0], int)
        and isinstance(python_state[1], (list, tuple))
        and len(python_state[1]) == len(random.getstate()[1])
        and all(isinstance(v, int) for v in python_state[1])
        and (python_state[2] is None or isinstance(python_state[2], numbers.Real))
    ):
        return "'rng.python'", python_state, "[version, state, gauss_next] of random.getstate()"
    return None


def check_state(path: str, state: Mapping[str, Any]) -> None:
    """Refuse a loaded checkpoint whose values the trainer could not take (a crafted or
    altered file): a :class:`CheckpointError` naming the file and the key."""
    model = state["model"]
    if not _tensors(model):
        raise checkpoint_value_error(path, "'model'", model, "a table of names to tensors")
    optimizers = state.get("optimizers", {})
    if not isinstance(optimizers, Mapping):
        raise checkpoint_value_error(path, "'optimizers'", optimizers, "a table of optimizers")
    for name, saved in optimizers.items():
        if not (
            isinstance(saved, Mapping)
            and isinstance(saved.get("state"), Mapping)
            and isinstance(saved.get("param_groups"), (list, tuple))
            and all(isinstance(group, Mapping) for group in saved["param_groups"])
        ):
            raise checkpoint_value_error(
                path, f"'optimizers.{name}'", saved, "an optimizer's state_dict()"
            )
    scaler = state.get("scaler")
    if scaler is not None and not isinstance(scaler, Mapping):
        raise checkpoint_value_error(path, "'scaler'", scaler, "a grad scaler's state_dict()")
    if state.get("rng"):
        problem = _rng_problem(state["rng"])
        if problem is not None:
            raise checkpoint_value_error(path, *problem)
    check_core_state(path, state)


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
