"""Names for a backend's models, losses, metrics and optimizers, as configs use them.

A config says ``model = "mlp"`` or ``losses = {CE = "cross_entropy"}``; what those names mean
depends on the backend, so each trainer class carries its own table::

    class MyTrainer(AbstractNetworkTrainer):
        components = {"models": {"mlp": "my_backend.models:MLP"}, "losses": {...}, ...}

Anything else is named by its ``"module:attr"`` path, which :mod:`epochal.job.trust` checks against
the slot's kind before anything it names is called. Nothing is imported until used.
"""

from __future__ import annotations

import difflib
import inspect
import random
import types
import typing
from collections.abc import Iterable, Mapping, MutableMapping, MutableSequence, Sequence
from typing import Any

from epochal.errors import ConfigError
from epochal.job.keys import toml_type_name
from epochal.job.trust import import_checked
from epochal.plugins.registry import resolve_path

__all__ = [
    "KINDS",
    "build_component",
    "check_kwargs",
    "check_value",
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


#: TOML's Python types, the only values a config can hold.
_TOML_CLASSES = (bool, int, float, str, list, tuple, dict)
_WORDS = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", dict: "a table"}
_PLURAL = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}
_SEQUENCES = (list, tuple, Sequence, MutableSequence)
_MAPPINGS = (dict, Mapping, MutableMapping)

#: One alternative of a parameter's type: the TOML class, and the type of each item (lists).
_Alternative = tuple[Any, Any]


def _alternatives(annotation: Any) -> list[_Alternative] | None:
    """The alternatives of a type (evaluated: ``int | None``, ``list[int]``, ``Literal[...]``)
    that a TOML value can take, or ``None`` when any value may do (``Any``, a base class of a
    TOML type such as ``object`` or ``numbers.Real``: the callee decides). A class no TOML value
    can be (a framework's tensor, a callable, ``None``) adds no alternative."""
    if annotation is Any or annotation is object:
        return None
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        found: list[_Alternative] = []
        for arg in typing.get_args(annotation):
            inner = _alternatives(arg)
            if inner is None:
                return None
            found += inner
        return found
    if origin is typing.Literal:
        return [("literal", typing.get_args(annotation))]
    base = origin or annotation
    if base is float:
        return [(float, None)]
    if base in (bool, int, str):
        return [(base, None)]
    if base in _SEQUENCES:
        args = typing.get_args(annotation)
        item = args[0] if len(args) == 1 or (len(args) == 2 and args[1] is Ellipsis) else None
        return [(list, item)]
    if base in _MAPPINGS:
        return [(dict, None)]
    if isinstance(base, type):
        if any(issubclass(kind, base) for kind in _TOML_CLASSES):
            return None  # a TOML value may be one: the callee decides
        return []  # no TOML value is one
    return None  # a type alias, a TypeVar, ...: the callee decides


def _fits(value: Any, alternative: _Alternative) -> bool:
    kind, item = alternative
    if kind == "literal":
        return any(value == choice and type(value) is type(choice) for choice in item)
    if isinstance(value, bool) and kind is not bool:
        return False  # TOML's true is no number
    if kind is float:
        return isinstance(value, (int, float))
    if kind is list:
        if not isinstance(value, (list, tuple)):
            return False
        inner = _alternatives(item) if item is not None else None
        return not inner or all(any(_fits(entry, alt) for alt in inner) for entry in value)
    return isinstance(value, kind)


def _describe(alternatives: list[_Alternative]) -> str:
    names = []
    for kind, item in alternatives:
        if kind == "literal":
            names.append("one of " + ", ".join(repr(choice) for choice in item))
        elif kind is list:
            inner = (_alternatives(item) if item is not None else None) or []
            known = [_PLURAL[k] for k, _ in inner if k in _PLURAL]
            names.append("a list" + (f" of {' or '.join(known)}" if known else ""))
        else:
            names.append(_WORDS[kind])
    return " or ".join(dict.fromkeys(names))


def check_value(key: str, value: Any, declared: Any) -> None:
    """``value`` of ``key`` is of the ``declared`` type (evaluated: ``int``, ``list[str] |
    None``...), or a :class:`ConfigError` naming the key, the type and the value."""
    alternatives = _alternatives(declared)
    if not alternatives or any(_fits(value, alt) for alt in alternatives):
        return
    actual = toml_type_name(value)
    raise ConfigError(f"{key} must be {_describe(alternatives)}, got {actual} {value!r}")


def toml_alternatives(declared: Any) -> list[tuple[Any, Any]] | None:
    """The TOML classes (``int``, ``float``, ``str``, ``bool``, ``list``, ``dict``) a value of
    the ``declared`` type may be, with each list's item type; ``None``: any value."""
    return _alternatives(declared)


def parameter_types(target: Any) -> dict[str, Any]:
    """The evaluated types of ``target``'s parameters (its ``__init__``'s for a class), as its
    module declares them; ``{}`` where they cannot be evaluated (then nothing is checked)."""
    function = target.__init__ if inspect.isclass(target) else target
    try:
        return typing.get_type_hints(function)
    except Exception:  # noqa: BLE001 - a name only a type checker sees: not checked
        return {}


def _check_value_type(parameter: inspect.Parameter, declared: Any, value: Any, key: str) -> None:
    """A TOML value (string, number, boolean, list, table) of the wrong type for
    ``parameter``, judged by its declared type (or, without one, by its default's type)."""
    if not isinstance(value, _TOML_CLASSES):
        return  # an object from the Python API: the callee decides
    if declared is inspect.Parameter.empty:
        default = parameter.default
        if isinstance(default, bool):
            declared = bool
        elif isinstance(default, (int, float)):
            declared = float  # 0 as a default often stands for 0.0
        elif isinstance(default, str):
            declared = str
        else:
            return
    check_value(key, value, declared)


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
    declared = parameter_types(target) if kwargs else {}
    for name, value in kwargs.items():
        if name in allowed:
            parameter = parameters[name]
            if parameter.annotation is inspect.Parameter.empty:
                kind = inspect.Parameter.empty
            else:
                kind = declared.get(name, Any)  # declared but not evaluable: not checked
            _check_value_type(parameter, kind, value, f"{key}.{name}")
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
