"""Names for a backend's models, losses, metrics and optimizers, as configs use them.

A config says ``model = "mlp"`` or ``losses = {CE = "cross_entropy"}``; what those names mean
depends on the backend, so each trainer class carries its own table::

    class PyTorchNetworkTrainer(AbstractNetworkTrainer):
        components = {"models": {"mlp": "epochal_torch.models:MLP"}, "losses": {...}, ...}

Anything else is named by its ``"module:attr"`` path. Nothing is imported until used.
"""

from __future__ import annotations

import difflib
import inspect
import random
from collections.abc import Mapping
from typing import Any

from epochal.errors import ConfigError
from epochal.registry import resolve_path

__all__ = ["KINDS", "build_component", "check_kwargs", "resolve_component", "seed_everything"]

KINDS = {"models": "model", "losses": "loss", "metrics": "metric", "optimizers": "optimizer"}


def component_names(trainer_cls: type, kind: str) -> list[str]:
    table = getattr(trainer_cls, "components", None) or {}
    return sorted(table.get(kind, {}))


def resolve_component(trainer_cls: type, kind: str, name: Any, key: str = "") -> Any:
    """The object ``name`` stands for: a ``"module:attr"`` path or a name in the trainer's
    ``components[kind]`` (case-insensitive); objects pass through."""
    where = f"{key}: " if key else ""
    if not isinstance(name, str):
        return name
    if ":" in name:
        try:
            return resolve_path(name)
        except (ImportError, ValueError) as exc:
            raise ConfigError(f"{where}cannot import {name!r}: {exc}") from None
    table = (getattr(trainer_cls, "components", None) or {}).get(kind, {})
    lowered = {entry.lower(): entry for entry in table}
    match = table.get(name) or table.get(lowered.get(name.lower(), ""))
    if match is None:
        known = sorted(table)
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"{where}unknown {KINDS.get(kind, kind)} {name!r} for the backend "
            f"{trainer_cls.__name__}.{hint} "
            f"Known: {', '.join(known) or 'none'}; or give a 'module:attr' path."
        )
    return resolve_path(match) if isinstance(match, str) else match


def check_kwargs(target: Any, kwargs: Mapping[str, Any], key: str) -> None:
    """Refuse keyword arguments ``target`` does not take, naming the key and the allowed ones."""
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):  # a builtin without a signature: let the call decide
        return
    parameters = signature.parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    allowed = [
        name
        for name, p in parameters.items()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        and name != "self"
    ]
    for name in kwargs:
        if name not in allowed:
            close = difflib.get_close_matches(name, allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"{key}.{name}: {getattr(target, '__name__', target)} has no parameter "
                f"{name!r}{hint}; its parameters are: {', '.join(allowed) or 'none'}"
            )


def build_component(trainer_cls: type, kind: str, spec: Any, key: str) -> Any:
    """Resolve ``spec`` (a name, a path, or a table ``{name = ..., **params}``) and, if it is
    a class, instantiate it with the params: ``"cross_entropy"`` -> ``CrossEntropyLoss()``."""
    params: dict[str, Any] = {}
    if isinstance(spec, Mapping):
        params = dict(spec)
        if "name" not in params:
            raise ConfigError(
                f"{key}: a table needs name = '<{KINDS.get(kind, kind)}>', got {dict(spec)}"
            )
        spec = params.pop("name")
    target = resolve_component(trainer_cls, kind, spec, key)
    if inspect.isclass(target):
        check_kwargs(target, params, key)
        try:
            return target(**params)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{key}: {target.__name__}({params}) failed: {exc}") from None
    if params:
        raise ConfigError(f"{key}: {spec!r} is a function and takes no parameters here")
    return target


def seed_everything(trainer_cls: type | None, seed: int) -> None:
    """Seed Python's and numpy's global generators and the backend's (its ``set_seed``)."""
    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    set_seed = getattr(trainer_cls, "set_seed", None)
    if callable(set_seed):
        set_seed(seed)
