"""Helpers the callbacks share: metric lookup, learning rates, the run folder."""

from __future__ import annotations

import numbers
import os
from collections.abc import Mapping
from typing import Any

from epochal.errors import MissingMetricError


def epoch_metrics(metrics_train: Mapping[str, Any], metrics_val: Mapping[str, Any]) -> dict:
    """Train and validation metrics of one epoch in one dict (validation keys start ``val_``)."""
    return {**metrics_train, **metrics_val}


def lookup_metric(
    owner: str, key: str, metrics_train: Mapping[str, Any], metrics_val: Mapping[str, Any]
) -> float:
    """The value of ``key`` this epoch; a missing key raises naming the keys there are."""
    metrics = epoch_metrics(metrics_train, metrics_val)
    if key not in metrics:
        raise MissingMetricError(
            f"{owner}: the epoch produced no metric {key!r}; it produced {sorted(metrics)}. "
            "Validation metrics carry the prefix 'val_' (e.g. 'val_accuracy')."
        )
    return float(metrics[key])


def host_float(value: Any) -> float:
    """A Python float from a number, numpy scalar or device tensor (for a tensor: a host sync)."""
    detach = getattr(value, "detach", None)  # torch: no autograd warning for a loss tensor
    return float(detach() if callable(detach) else value)


def check_mode(owner: str, mode: str) -> str:
    if mode not in ("highest", "lowest"):
        raise ValueError(f"{owner}: mode must be 'highest' or 'lowest', got {mode!r}")
    return mode


def improved(mode: str, best: float | None, value: float, min_delta: float = 0.0) -> bool:
    """Whether ``value`` beats ``best`` by more than ``min_delta`` in the direction of ``mode``."""
    if value != value:  # NaN never improves
        return False
    if best is None:
        return True
    return value > best + min_delta if mode == "highest" else value < best - min_delta


def current_lrs(trainer: Any) -> dict[str, float]:
    """Learning rate of each of the trainer's optimizers, without importing a framework.

    Backends expose ``trainer.optimizers`` (a dict, delira's convention): torch optimizers
    have ``param_groups``, Keras optimizers ``learning_rate``. A backend without optimizers
    but with a numeric ``trainer.lr`` reports that as ``"default"``.
    """
    rates: dict[str, float] = {}
    for name, optimizer in (getattr(trainer, "optimizers", None) or {}).items():
        groups = getattr(optimizer, "param_groups", None)
        if groups:
            rates[name] = float(groups[0]["lr"])
            continue
        rate = getattr(optimizer, "learning_rate", None)
        if rate is not None:
            try:
                rates[name] = float(rate)
            except (TypeError, ValueError):  # a schedule object: the rate lives per step
                continue
    if not rates and isinstance(getattr(trainer, "lr", None), numbers.Real):
        rates["default"] = float(trainer.lr)
    return rates


def run_folder(owner: str, trainer: Any, path: str | os.PathLike[str] | None) -> str:
    """``path`` if given, else the trainer's ``save_path``; neither is a clear error."""
    folder = path if path is not None else getattr(trainer, "save_path", None)
    if folder is None:
        raise ValueError(f"{owner} needs a folder: give it a path, or give the trainer a save_path")
    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    return folder


def select_optimizers(owner: str, trainer: Any, optimizer: str | None) -> dict[str, Any]:
    """The trainer's optimizers to schedule: the one named, or all for ``None``/``"all"``."""
    optimizers = getattr(trainer, "optimizers", None)
    if not isinstance(optimizers, Mapping) or not optimizers:
        raise TypeError(
            f"{owner} schedules trainer.optimizers (a dict name -> optimizer), but "
            f"{type(trainer).__name__} has {'none' if optimizers is None else repr(optimizers)}; "
            "use a backend that exposes its optimizers (torch, tf)"
        )
    if optimizer is None or optimizer == "all":
        return dict(optimizers)
    if optimizer not in optimizers:
        raise KeyError(
            f"{owner}: the trainer has no optimizer {optimizer!r}; it has {sorted(optimizers)}. "
            "Pass optimizer=<one of those>, or optimizer=None to schedule each of them."
        )
    return {optimizer: optimizers[optimizer]}


def same_optimizers(bound: Mapping[str, Any], optimizers: Mapping[str, Any]) -> bool:
    """Whether ``optimizers`` are the very objects a callback was bound to (same run)."""
    return bound.keys() == optimizers.keys() and all(bound[k] is v for k, v in optimizers.items())
