"""Bounds on values that would otherwise fail late, slowly, or under another key's name.

One rule each, used wherever the value comes in (a config, the CLI, the Python API):

* :func:`check_seed`: a seed is an integer in ``0 .. 2**32 - 1``, what every consumer takes
  (``numpy.random.seed``, scikit-learn's ``random_state``, a framework's seeding call);
  some frameworks take more, but one seed feeds them all.
* :func:`check_output_dir`: a run folder (``experiment.save_path``, ``--run-dir``) must be
  creatable, so that the check comes before the data are built and a run folder is made.
* :func:`layer_sizes` and :func:`check_parameter_count`: the ready-made models refuse a layer
  width that is not a positive integer, and a size that would allocate and initialise
  gigabytes for minutes (or get the process killed for memory) before the first batch.
"""

from __future__ import annotations

import itertools
import os
import reprlib
from collections.abc import Iterable
from typing import Any

from epochal.errors import ConfigError

__all__ = [
    "MAX_DEPTH",
    "MAX_PARAMETERS",
    "SEED_MAX",
    "ArgumentError",
    "check_output_dir",
    "check_parameter_count",
    "check_seed",
    "cnn_channels",
    "layer_sizes",
    "mlp_widths",
]

#: The largest seed: numpy's global generator and scikit-learn take ``0 .. 2**32 - 1``.
SEED_MAX = 2**32 - 1
#: How deeply a config may nest tables and lists (the top-level table counts as 1).
MAX_DEPTH = 32
#: The most parameters a ready-made model may have: 2**30 (4 GiB of float32), about 25 s of
#: weight initialisation on 2 CPU cores. A bigger network is a model class of its own.
MAX_PARAMETERS = 2**30
#: System file systems: they cannot hold a run, whatever the permission bits say.
_SYSTEM_ROOTS = ("/proc", "/sys", "/dev")
#: Places under the system roots that are ordinary file systems.
_ORDINARY = ("/dev/shm",)


class ArgumentError(ValueError):
    """A constructor argument refused by its declared check; ``argument`` names it, so that the
    config key (``model.<argument>``) is known without reading the message."""

    def __init__(self, argument: str, message: str) -> None:
        super().__init__(message)
        self.argument = argument


def check_seed(value: Any, key: str = "seed") -> int | None:
    """``value`` if it is ``None`` or an integer in ``0 .. SEED_MAX``, else a
    :class:`ConfigError` naming ``key`` and the range."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= SEED_MAX:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise ConfigError(
            f"{key} must be an integer from 0 to {SEED_MAX} (2**32 - 1, the range numpy and "
            f"scikit-learn take), got {shown}"
        )
    return value


def _under(path: str, roots: Iterable[str]) -> str | None:
    for root in roots:
        if path == root or path.startswith(root.rstrip(os.sep) + os.sep):
            return root
    return None


def check_output_dir(path: str | os.PathLike[str], key: str) -> None:
    """Refuse, with a :class:`ConfigError` naming ``key``, a folder that cannot hold a run:
    one whose nearest existing ancestor is a file, is on a read-only file system, is not
    writable by this user, or is under ``/proc``, ``/sys`` or ``/dev``. Nothing is created."""
    raw = os.fspath(path)
    if "\x00" in raw:
        raise ConfigError(f"{key} {raw!r} contains a NUL byte (\\x00), which no path may hold")
    real = os.path.realpath(raw)
    system = _under(real, _SYSTEM_ROOTS)
    if system and not _under(real, _ORDINARY):
        shown = raw if os.path.abspath(raw) == real else f"{raw} ({real})"
        raise ConfigError(
            f"{key} {shown} is under {system}, a system file system that cannot hold a run; "
            "choose a folder on a disk, e.g. runs/"
        )
    existing = real
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    where = raw if existing == real else f"{raw}: {existing}"
    if not os.path.isdir(existing):
        raise ConfigError(f"{key} {where} is a file, not a folder; choose a folder for the run")
    statvfs = getattr(os, "statvfs", None)
    try:
        read_only = bool(statvfs and statvfs(existing).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    if read_only:
        raise ConfigError(f"{key} {where} is on a read-only file system; choose a writable folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(
            f"{key} {where} is not writable by this user; choose a folder you can write to"
        )


def layer_sizes(name: str, value: Any) -> list[int]:
    """``value`` (one size or a list of them) as a list of layer sizes; an
    :class:`ArgumentError` naming ``name`` unless each is an integer >= 1 (``True`` is not a
    width)."""
    sizes = list(value) if isinstance(value, (list, tuple)) else [value]
    for index, size in enumerate(sizes):
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            where = f"{name}[{index}]" if isinstance(value, (list, tuple)) else name
            raise ArgumentError(
                name, f"{where} must be a positive integer (a layer size), got {size!r}"
            )
    return sizes


def check_parameter_count(model: str, count: int, blame: str) -> None:
    """An :class:`ArgumentError` blaming ``blame`` (``"name=value"``: the argument ``name``) if
    ``count`` parameters are more than :data:`MAX_PARAMETERS`: checked before anything is
    allocated."""
    if count > MAX_PARAMETERS:
        gib = count * 4 / 2**30
        raise ArgumentError(
            blame.partition("=")[0],
            f"{blame} gives the {model} {count:,} parameters ({gib:,.1f} GiB of float32); a "
            f"ready-made {model} has at most {MAX_PARAMETERS:,} (2**30). Use smaller layers, "
            "or name a model class of your own ('module:Class')",
        )


def _largest(sizes: dict[str, list[int]], given: dict[str, Any]) -> str:
    """``name=value`` of the argument with the largest size: what to blame for too many."""
    name = max(sizes, key=lambda key: max(sizes[key]))
    return f"{name}={reprlib.repr(given[name])}"


def mlp_widths(model: str, in_features: Any, hidden: Any, num_classes: Any) -> list[int]:
    """An MLP's layer widths, input to output, checked: positive integers and at most
    :data:`MAX_PARAMETERS` weights and biases (a ``ValueError`` naming the argument)."""
    given = {"in_features": in_features, "hidden": hidden, "num_classes": num_classes}
    sizes = {name: layer_sizes(name, value) for name, value in given.items()}
    widths = [size for group in sizes.values() for size in group]
    count = sum((fan_in + 1) * fan_out for fan_in, fan_out in itertools.pairwise(widths))
    check_parameter_count(model, count, _largest(sizes, given))
    return widths


def cnn_channels(model: str, in_channels: Any, num_classes: Any, channels: Any) -> list[int]:
    """A CNN's channel counts, input first, checked like :func:`mlp_widths` (3x3 convolutions
    with batch norm, then a linear classifier)."""
    given = {"in_channels": in_channels, "channels": channels, "num_classes": num_classes}
    sizes = {name: layer_sizes(name, value) for name, value in given.items()}
    widths = sizes["in_channels"] + sizes["channels"]
    pairs = itertools.pairwise(widths)
    count = sum(9 * fan_in * fan_out + 2 * fan_out for fan_in, fan_out in pairs)
    count += (widths[-1] + 1) * sizes["num_classes"][0]
    check_parameter_count(model, count, _largest(sizes, given))
    return widths
