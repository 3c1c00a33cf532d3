"""Checkpoints: one ``.npz`` file, written atomically, read with ``allow_pickle=False``.

Arrays (weights, optimizer variables, RNG keys) are stored as arrays; everything else (epoch,
best score, callback state, variable names) as one JSON document inside the same file. Nothing
in a checkpoint is unpickled or executed, so a crafted file cannot run code; a truncated or
foreign file gets a :class:`CheckpointError` naming the file and what to do.

Variables are matched by position, not by name: Keras names layers per process (``dense``,
``dense_1``...), so the same architecture built twice has other names but the same order.
"""

from __future__ import annotations

import json
import os
import random
import zipfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from epochal.errors import CheckpointError
from epochal.files import atomic_write, os_error_in, write_error_message

__all__ = [
    "FORMAT",
    "CheckpointError",
    "check_fits",
    "load_checkpoint",
    "restore_rng_state",
    "rng_state",
    "save_checkpoint",
]

FORMAT = "epochal-tf-checkpoint"
_STATE_KEY = "__state__"


def _flatten(state: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Split ``state`` into arrays (lists of arrays under ``model``, ``optimizers``, ``rng``)
    and the JSON part; each list of arrays becomes ``<prefix>/<index>`` entries."""
    arrays: dict[str, np.ndarray] = {}
    plain: dict[str, Any] = {}
    for key, value in state.items():
        if key == "optimizers":
            plain["optimizers"] = {}
            for name, values in value.items():
                plain["optimizers"][name] = len(values)
                for i, array in enumerate(values):
                    arrays[f"optimizers/{name}/{i}"] = np.asarray(array)
        elif key == "model":
            plain["model"] = len(value)
            arrays.update({f"model/{i}": np.asarray(array) for i, array in enumerate(value)})
        elif key == "rng" and value is not None:
            plain["rng"] = {k: v for k, v in value.items() if not isinstance(v, np.ndarray)}
            arrays.update({f"rng/{k}": v for k, v in value.items() if isinstance(v, np.ndarray)})
        else:
            plain[key] = value
    return arrays, plain


def save_checkpoint(file_name: str | os.PathLike[str], state: dict[str, Any]) -> str:
    """Write ``state`` to ``file_name`` through a temporary file and ``os.replace``.

    ``state["model"]`` is a list of arrays, ``state["optimizers"]`` ``{name: [arrays]}``,
    ``state["rng"]`` a dict of arrays and JSON values; every other value must be JSON data.
    A write that fails (a full disk, a file size limit) raises :class:`CheckpointError` naming
    the file and the cause; the previous ``file_name`` is left as it was, and no temporary file.
    """
    path = os.fspath(file_name)
    arrays, plain = _flatten(state)
    try:
        document = json.dumps({"format": FORMAT, "version": 1, **plain})
    except TypeError as exc:
        raise TypeError(
            f"cannot write checkpoint {path!r}: {exc}. A TF checkpoint keeps non-array state "
            "(callback state_dict() included) as JSON: return numbers, strings, lists and dicts"
        ) from exc
    try:
        with atomic_write(path) as handle:
            np.savez(handle, **{_STATE_KEY: np.array(document)}, **arrays)
    except Exception as exc:  # a full disk, a file size limit: name the file and the cause
        error = os_error_in(exc)
        if error is None:
            raise
        raise CheckpointError(write_error_message("checkpoint", path, error)) from error
    return path


def load_checkpoint(file_name: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (arrays and JSON only)."""
    path = os.fspath(file_name)
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint {path!r} does not exist")
    with open(path, "rb") as handle:
        if handle.read(4) != b"PK\x03\x04":  # not a zip (npz): np.load would try a pickle
            raise _unreadable(path, ValueError("not an .npz archive"))
    try:
        with np.load(path, allow_pickle=False) as archive:
            if _STATE_KEY not in archive.files:
                raise CheckpointError(
                    f"{path!r} is an .npz file but not an epochal TF checkpoint (no {_STATE_KEY})"
                )
            state = json.loads(str(archive[_STATE_KEY]))
            arrays = {key: archive[key] for key in archive.files if key != _STATE_KEY}
    except CheckpointError:
        raise
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise CheckpointError(
                f"checkpoint {path!r} was refused: it holds pickled objects, which could run "
                "code when loaded. Only load checkpoints written by epochal."
            ) from exc
        raise _unreadable(path, exc) from exc
    except (OSError, EOFError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise _unreadable(path, exc) from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path!r} is an .npz file but not an epochal TF checkpoint")
    state["model"] = [arrays[f"model/{i}"] for i in range(state.get("model", 0))]
    state["optimizers"] = {
        name: [arrays[f"optimizers/{name}/{i}"] for i in range(count)]
        for name, count in (state.get("optimizers") or {}).items()
    }
    if state.get("rng") is not None:
        prefix = "rng/"
        state["rng"].update({k[len(prefix) :]: v for k, v in arrays.items() if k[:4] == prefix})
    return state


def _unreadable(path: str, exc: BaseException) -> CheckpointError:
    detail = str(exc).splitlines()[0] if str(exc) else "no detail"
    return CheckpointError(
        f"checkpoint {path!r} cannot be read ({type(exc).__name__}: {detail}): it is truncated "
        "or not an epochal TF checkpoint. Use another one, e.g. checkpoint_epoch_<n>.tf.npz."
    )


def rng_state() -> dict[str, Any]:
    """numpy, Python and the Keras global seed generator's states (layers' generators, such
    as a Dropout's, are variables of the model and ride with its weights)."""
    from keras.src.backend.common import global_state
    from keras.src.random.seed_generator import GLOBAL_SEED_GENERATOR

    name, keys, position, has_gauss, cached = np.random.get_state()
    version, python_state, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "numpy": [name, int(position), int(has_gauss), float(cached)],
        "numpy_keys": np.asarray(keys, dtype=np.uint32),
        "python": [version, list(python_state), gauss_next],
    }
    generator = global_state.get_global_attribute(GLOBAL_SEED_GENERATOR)
    if generator is not None:
        state["keras_global"] = np.asarray(generator.state.numpy())
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Undo :func:`rng_state`: a resumed run draws the same random numbers."""
    from keras.src.random.seed_generator import global_seed_generator

    name, position, has_gauss, cached = state["numpy"]
    np.random.set_state((name, state["numpy_keys"].astype(np.uint32), position, has_gauss, cached))
    version, python_state, gauss_next = state["python"]
    random.setstate((version, tuple(python_state), gauss_next))
    if "keras_global" in state:
        global_seed_generator().state.assign(state["keras_global"])


def check_fits(
    own: Sequence[tuple[str, tuple[int, ...]]],
    saved: Sequence[np.ndarray],
    saved_paths: Sequence[str] | None = None,
    what: str = "network",
) -> None:
    """A checkpoint of another architecture: name every variable that does not fit.

    ``own`` is ``[(path, shape)]`` of this trainer's variables, ``saved`` the arrays in order.
    """
    problems = []
    if len(own) != len(saved):
        problems.append(f"{len(saved)} variables in the checkpoint, {len(own)} here")
    shapes = [
        f"{path} {tuple(array.shape)} in the checkpoint, {tuple(shape)} here"
        for (path, shape), array in zip(own, saved, strict=False)
        if tuple(array.shape) != tuple(shape)
    ]
    if shapes:
        problems.append("other shapes: " + "; ".join(shapes))
    if problems:
        if saved_paths is not None and len(own) != len(saved):
            problems.append(f"the checkpoint holds {list(saved_paths)}")
        raise CheckpointError(
            f"the checkpoint does not fit this {what} (was it written for another "
            "architecture?): " + " | ".join(problems)
        )
