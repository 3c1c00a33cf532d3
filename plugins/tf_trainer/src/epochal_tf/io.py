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
import numbers
import os
import random
import zipfile
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from epochal.errors import CheckpointError
from epochal.runs.checkpoints import check_core_state, checkpoint_value_error, open_checkpoint
from epochal.runs.files import atomic_write, os_error_in, write_error_message

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
    """Read a checkpoint written by :func:`save_checkpoint` (arrays and JSON only).

    The file is opened without following a link and without blocking on a FIFO (either is
    refused, naming the file), and what it holds is checked key by key.
    """
    path = os.fspath(file_name)
    handle = open_checkpoint(path)
    with handle:
        return _load(path, handle)


def _load(path: str, handle: Any) -> dict[str, Any]:
    if handle.read(4) != b"PK\x03\x04":  # not a zip (npz): np.load would try a pickle
        raise _unreadable(path, ValueError("not an .npz archive"))
    handle.seek(0)
    try:
        with np.load(handle, allow_pickle=False) as archive:
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
    state["model"] = _array_list(path, arrays, "model", state.get("model", 0))
    optimizers = state.get("optimizers") or {}
    if not isinstance(optimizers, Mapping):
        raise checkpoint_value_error(path, "'optimizers'", optimizers, "a table of counts")
    state["optimizers"] = {
        name: _array_list(path, arrays, f"optimizers/{name}", count)
        for name, count in optimizers.items()
    }
    paths = state.get("model_paths")
    if paths is not None and (
        not isinstance(paths, list) or not all(isinstance(p, str) for p in paths)
    ):
        raise checkpoint_value_error(path, "'model_paths'", paths, "a list of variable paths")
    if state.get("rng") is not None:
        if not isinstance(state["rng"], dict):
            raise checkpoint_value_error(path, "'rng'", state["rng"], "a table of RNG states")
        prefix = "rng/"
        state["rng"].update({k[len(prefix) :]: v for k, v in arrays.items() if k[:4] == prefix})
        problem = _rng_problem(state["rng"])
        if problem is not None:
            raise checkpoint_value_error(path, *problem)
    check_core_state(path, state)
    return state


def _array_list(path: str, arrays: Mapping[str, np.ndarray], prefix: str, count: Any) -> list:
    """The ``count`` arrays ``<prefix>/0``, ``<prefix>/1``...; a count that is not a
    non-negative integer, or a missing array, names the file and the key."""
    key = prefix.replace("/", ".")
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise checkpoint_value_error(path, repr(key), count, "the number of its arrays")
    missing = [f"{prefix}/{i}" for i in range(count) if f"{prefix}/{i}" not in arrays]
    if missing:
        raise checkpoint_value_error(
            path, repr(key), count, f"the number of its arrays (missing: {missing[:3]})"
        )
    return [arrays[f"{prefix}/{i}"] for i in range(count)]


def _rng_problem(rng: Mapping[str, Any]) -> tuple[str, Any, str] | None:
    """``(key, value, wanted)`` for the first part of ``rng`` that :func:`restore_rng_state`
    could not take, else ``None``."""
    numpy_state = rng.get("numpy")
    if not (
        isinstance(numpy_state, list)
        and len(numpy_state) == 4
        and isinstance(numpy_state[0], str)
        and all(isinstance(v, numbers.Real) for v in numpy_state[1:])
    ):
        return "'rng.numpy'", numpy_state, "[name, position, has_gauss, cached]"
    keys = rng.get("numpy_keys")
    if not isinstance(keys, np.ndarray) or keys.shape != (624,) or keys.dtype.kind not in "iu":
        return "'rng.numpy_keys'", keys, "the 624 integer keys of numpy's generator"
    python_state = rng.get("python")
    if not (
        isinstance(python_state, list)
        and len(python_state) == 3
        and isinstance(python_state[0], int)
        and isinstance(python_state[1], list)
        and len(python_state[1]) == len(random.getstate()[1])
        and all(isinstance(v, int) for v in python_state[1])
        and (python_state[2] is None or isinstance(python_state[2], numbers.Real))
    ):
        return "'rng.python'", python_state, "[version, state, gauss_next] of random.getstate()"
    keras_global = rng.get("keras_global")
    if keras_global is not None and not isinstance(keras_global, np.ndarray):
        return "'rng.keras_global'", keras_global, "an array (Keras' global seed state)"
    return None


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
