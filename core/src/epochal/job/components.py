"""Names for a backend's models, losses, metrics and optimizers, as configs use them.

A config says ``model = "mlp"`` or ``losses = {CE = "cross_entropy"}``; what those names mean
depends on the backend, so each trainer class carries its own table::

    class PyTorchNetworkTrainer(AbstractNetworkTrainer):
        components = {"models": {"mlp": "epochal_torch.models:MLP"}, "losses": {...}, ...}

Anything else is named by its ``"module:attr"`` path, which :mod:`epochal.job.trust` checks against
the slot's kind before anything it names is called. Nothing is imported until used.
"""

from __future__ import annotations

import difflib
import inspect
import random
from collections.abc import Iterable, Mapping
from typing import Any

from epochal.errors import ConfigError
from epochal.job.keys import toml_type_name
from epochal.job.trust import import_checked
from epochal.plugins.registry import resolve_path

__all__ = [
    "KINDS",
    "build_component",
    "check_kwargs",
    "resolve_component",
    "seed_everything",
    "toml_type_name",
]

KINDS = {"models": "model", "losses": "loss", "metrics": "metric", "optimizers": "optimizer"}


def component_names(trainer_cls: type, kind: str) -> list[str]:
    table = getattr(trainer_cls, "components", None) or {}
    return sorted(table.get(kind, {}))


def resolve_component(
    trainer_cls: type, kind: str, name: Any, key: str = "", trusted: Iterable[str] = ()
) -> Any:
    """The object ``name`` stands for: a name in the trainer's ``components[kind]``
    (case-insensitive) or a ``"module:attr"`` path that the trust model allows for ``kind``
    (:mod:`epochal.job.trust`; ``trusted``: the job's ``trusted_modules``); objects pass through."""
    where = f"{key}: " if key else ""
    if not isinstance(name, str):
        if callable(name):
            return name  # a class, function or instance from the Python API
        raise ConfigError(
            f"{key or 'the ' + KINDS.get(kind, kind)} must be a name (e.g. "
            f"{next(iter(component_names(trainer_cls, kind)), 'name')!r}), a 'module:attr' "
            f"path or a table with name = ..., got {toml_type_name(name)} {name!r}"
        )
    if ":" in name:
        return import_checked(name, kind, key or KINDS.get(kind, kind), trainer_cls, trusted)
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


#: Annotation names -> the TOML value types they accept (``None``: any value, not checked).
_ANNOTATION_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "str": (str,),
    "list": (list, tuple),
    "tuple": (list, tuple),
    "Sequence": (list, tuple),
    "dict": (dict,),
    "Mapping": (dict,),
}
#: Types a TOML value can never be: an annotation alternative of these does not widen the check.
_NOT_FROM_TOML = {"None", "NoneType", "Tensor", "IO", "PathLike", "Callable", "type", "ndarray"}


def _split_top(text: str, separator: str) -> list[str]:
    """``text`` split at ``separator`` outside brackets."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char == "["
        depth -= char == "]"
        if char == separator and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    parts.append(current.strip())
    return parts


def _expected(annotation: str) -> list[tuple[str, str | None]] | None:
    """The alternatives of ``annotation`` a TOML value may take, as ``(type, element type)``;
    ``None`` when the annotation allows something this check does not know (then any value)."""
    alternatives: list[tuple[str, str | None]] = []
    for part in _split_top(annotation, "|"):
        head, _, inner = part.partition("[")
        head = head.strip().rsplit(".", 1)[-1]
        inner = inner.rstrip("]").strip()
        if head in ("Optional", "Union"):
            nested = [_expected(arg) for arg in _split_top(inner, ",")]
            if any(entry is None for entry in nested):
                return None
            alternatives += [alt for entry in nested for alt in entry or ()]
        elif head in _NOT_FROM_TOML:
            continue
        elif head in _ANNOTATION_TYPES:
            element = inner if head in ("list", "Sequence") and "[" not in inner else None
            alternatives.append((head, element))
        else:
            return None  # Any, a class, a type alias: the callee decides
    return alternatives


def _fits(value: Any, head: str, element: str | None) -> bool:
    types = _ANNOTATION_TYPES[head]
    if isinstance(value, bool) and bool not in types:
        return False
    if not isinstance(value, types):
        return False
    if element is not None and isinstance(value, (list, tuple)):
        inner = _expected(element)
        return (
            inner is None
            or not inner
            or all(any(_fits(item, *alt) for alt in inner) for item in value)
        )
    return True


def _describe(alternatives: list[tuple[str, str | None]]) -> str:
    words = {"int": "an integer", "float": "a number", "bool": "a boolean", "str": "a string"}
    plural = {"int": "integers", "float": "numbers", "bool": "booleans", "str": "strings"}
    names = []
    for head, element in alternatives:
        if head in ("list", "tuple", "Sequence"):
            inner = (_expected(element) if element else None) or []
            known = [plural[h] for h, _ in inner if h in plural]
            names.append("a list" + (f" of {' or '.join(known)}" if known else ""))
        elif head in ("dict", "Mapping"):
            names.append("a table")
        else:
            names.append(words[head])
    return " or ".join(dict.fromkeys(names))


def _check_value_type(parameter: inspect.Parameter, value: Any, key: str) -> None:
    """A TOML value (string, number, boolean, list, table) of the wrong type for
    ``parameter``, judged by its annotation (or, without one, by its default's type)."""
    if not isinstance(value, (bool, int, float, str, list, tuple, dict)):
        return  # an object from the Python API: the callee decides
    annotation = parameter.annotation
    if annotation is inspect.Parameter.empty:
        default = parameter.default
        if isinstance(default, bool):
            annotation = "bool"
        elif isinstance(default, (int, float)):
            annotation = "float"  # 0 as a default often stands for 0.0
        elif isinstance(default, str):
            annotation = "str"
        else:
            return
    elif not isinstance(annotation, str):
        annotation = inspect.formatannotation(annotation)
    alternatives = _expected(annotation)
    if not alternatives or any(_fits(value, *alt) for alt in alternatives):
        return
    actual = toml_type_name(value)
    raise ConfigError(f"{key} must be {_describe(alternatives)}, got {actual} {value!r}")


def check_kwargs(target: Any, kwargs: Mapping[str, Any], key: str) -> None:
    """Refuse keyword arguments ``target`` does not take, naming the key and the allowed ones,
    and TOML values of the wrong type for the parameter's annotation (``lr = "fast"``)."""
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):  # a builtin without a signature: let the call decide
        return
    parameters = signature.parameters
    allowed = [
        name
        for name, p in parameters.items()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        and name != "self"
    ]
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    for name, value in kwargs.items():
        if name in allowed:
            _check_value_type(parameters[name], value, f"{key}.{name}")
        elif not takes_any:
            close = difflib.get_close_matches(name, allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"{key}.{name}: {getattr(target, '__name__', target)} has no parameter "
                f"{name!r}{hint}; its parameters are: {', '.join(allowed) or 'none'}"
            )


def build_component(
    trainer_cls: type, kind: str, spec: Any, key: str, trusted: Iterable[str] = ()
) -> Any:
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
    target = resolve_component(trainer_cls, kind, spec, key, trusted)
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
