"""What a config may name, and what it may call: epochal's trust model for ``"module:attr"``.

A config (or a run folder's ``config.toml``, which anyone may have edited) names objects by
registry name or by ``"module:attr"`` path. Such a path is checked before anything it names is
called, by the rule of the slot it fills (the model, a loss, a transform, ...):

- **a class of the slot's kind** is accepted from any installed package: a model must subclass
  the backend's network type (its framework's module or model class), an optimizer its optimizer
  type, a transform batchgenerators' ``AbstractTransform``, ... (the backend's
  ``component_bases(kind)`` says which; where it names none, a class of a *declared* module);
- **a loss or metric function** (called with the outputs and labels only, never with arguments
  from the config) from a *declared* module: epochal's own (``epochal*``), the backend's
  ``function_modules`` (its framework's functional module), or the package of an installed
  epochal plugin;
- **anything else** (a model factory, a scheduler function: callables the config passes its own
  arguments to) only from a module the job lists itself in ``[experiment] trusted_modules``.

The path itself must be plain: an absolute module, attributes that are identifiers not starting
with ``_`` and that never pass through another module; a standard-library module is refused
before it is imported (none holds a model, a loss or a transform; ``os:system`` is the classic
attack). Importing a module of an installed, non-standard package runs that module's top-level
code, as ``import`` does: a config can do no more than the packages installed beside epochal.
Objects given from the Python API are the caller's own and pass unchecked.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import types
from collections.abc import Iterable
from typing import Any

from epochal.errors import ConfigError

__all__ = ["OUTPUT_ONLY", "SLOT_WORDS", "declared_modules", "import_checked", "plugin_packages"]

#: How messages name what a slot holds.
SLOT_WORDS = {
    "models": "model",
    "losses": "loss",
    "metrics": "metric",
    "optimizers": "optimizer",
    "lr_schedulers": "LR scheduler",
    "transforms": "data transform",
}


#: Slots whose functions are called with the network's outputs and labels only, never with
#: arguments from the config: a function of a declared module is safe there.
OUTPUT_ONLY = frozenset({"losses", "metrics"})


def plugin_packages() -> set[str]:
    """The top-level packages of the registered epochal plugins (modules or objects)."""
    from epochal.plugins.manager import get_plugin_manager

    packages = set()
    for plugin in get_plugin_manager().get_plugins():
        module = plugin.__name__ if isinstance(plugin, types.ModuleType) else None
        module = module or getattr(type(plugin), "__module__", None)
        if module:
            packages.add(module.split(".")[0])
    return packages


def declared_modules(trainer_cls: type | None) -> tuple[str, ...]:
    """Module prefixes whose loss and metric functions a config may name without listing them:
    epochal's own, the backend's ``function_modules`` and the installed plugins' packages."""
    declared = tuple(getattr(trainer_cls, "function_modules", ()) or ())
    return ("epochal", *declared, *sorted(plugin_packages() - {"epochal"}))


def _within(module: str | None, trusted: Iterable[str]) -> bool:
    """``module`` is one of ``trusted`` or inside one; ``epochal`` covers ``epochal_*``."""
    if not module:
        return False
    for prefix in trusted:
        if module == prefix or module.startswith(prefix + "."):
            return True
        if prefix == "epochal" and module.split(".")[0].startswith("epochal"):
            return True
    return False


def _bases(trainer_cls: type | None, kind: str) -> tuple[type, ...]:
    if kind == "transforms":
        from batchgenerators.transforms.abstract_transforms import AbstractTransform

        return (AbstractTransform,)
    component_bases = getattr(trainer_cls, "component_bases", None)
    return tuple(component_bases(kind)) if callable(component_bases) else ()


def _article(word: str) -> str:
    return "an" if word[0] in "aeiouAEIOUL" else "a"


def _public_name(cls: type) -> str:
    """``pkg.nn.Module`` rather than ``pkg.nn.modules.module.Module``: the shortest module
    path that exports the class under its name."""
    parts = cls.__module__.split(".")
    for end in range(1, len(parts) + 1):
        module = sys.modules.get(".".join(parts[:end]))
        if getattr(module, cls.__qualname__, None) is cls:
            return f"{module.__name__}.{cls.__qualname__}"
    return f"{cls.__module__}.{cls.__qualname__}"


def _rule(kind: str, bases: tuple[type, ...], declared: tuple[str, ...]) -> str:
    word = SLOT_WORDS.get(kind, kind.rstrip("s"))
    shown = ", ".join(("epochal*", *(m for m in declared if m != "epochal")))
    if bases:
        kinds = " or ".join(_public_name(base) for base in bases)
        rule = f"{_article(word)} {word} must be a subclass of {kinds}"
    else:
        rule = f"{_article(word)} {word} must be a class of a declared module ({shown})"
    if kind in OUTPUT_ONLY:
        rule += f", or a function of a declared module ({shown})"
    return (
        f"{rule}, or come from a module the job trusts explicitly: "
        "[experiment] trusted_modules = ['mypackage']"
    )


def _parse(path: str, key: str) -> tuple[str, list[str]]:
    module, sep, attrs = path.partition(":")
    parts = attrs.split(".")
    if not sep or not module or not attrs:
        raise ConfigError(f"{key}: {path!r} is not a 'module:attr' path, e.g. 'mypkg.nets:UNet'")
    if module.startswith(".") or not all(part.isidentifier() for part in module.split(".")):
        raise ConfigError(
            f"{key}: {path!r} names the module {module!r}: give an absolute module path of "
            "identifiers, e.g. 'mypkg.nets:UNet' (relative imports are not allowed)"
        )
    for part in parts:
        if not part.isidentifier() or part.startswith("_"):
            raise ConfigError(
                f"{key}: {path!r} is refused: {part!r} is not a public attribute name; a config "
                "may name public classes and functions only (no '_private' or '__dunder__' "
                "attributes)"
            )
    return module, parts


def import_checked(
    path: str,
    kind: str,
    key: str,
    trainer_cls: type | None = None,
    listed: Iterable[str] = (),
    bases: tuple[type, ...] | None = None,
) -> Any:
    """The object ``path`` names, if a config may use it for a ``kind`` slot (see module doc);
    else a :class:`ConfigError` naming ``key``, the target and the rule. Nothing it names is
    called here; a refused standard-library module is not even imported."""
    module_name, parts = _parse(path, key)
    listed = tuple(listed)
    declared = declared_modules(trainer_cls)
    bases = _bases(trainer_cls, kind) if bases is None else bases
    top = module_name.split(".")[0]
    if top in sys.stdlib_module_names:
        raise ConfigError(
            f"{key}: {path!r} is refused: {module_name!r} is a Python standard-library module, "
            f"which holds no {SLOT_WORDS.get(kind, kind)}; {_rule(kind, bases, declared)}"
        )
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{key}: cannot import {path!r}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a module that fails on import: its own error
        raise ConfigError(
            f"{key}: importing {module_name!r} for {path!r} failed: {type(exc).__name__}: {exc}"
        ) from None
    for depth, part in enumerate(parts):
        try:
            target = getattr(target, part)
        except AttributeError:
            where = ".".join([module_name, *parts[:depth]])
            raise ConfigError(f"{key}: {where!r} has no attribute {part!r} ({path!r})") from None
        if isinstance(target, types.ModuleType):
            raise ConfigError(
                f"{key}: {path!r} is refused: {part!r} is a module; put the whole module path "
                f"before the ':' ('{target.__name__}:...')"
            )
    owner = getattr(target, "__module__", None)
    if _within(module_name, listed) and _within(owner, listed):
        return target  # the job's own trusted modules: anything
    from_declared = _within(module_name, declared) and _within(owner, declared)
    if inspect.isclass(target):
        if issubclass(target, bases) if bases else from_declared:
            return target
    elif kind in OUTPUT_ONLY and from_declared:
        return target
    what = (
        "class"
        if inspect.isclass(target)
        else "function"
        if callable(target)
        else f"{type(target).__name__} object"
    )
    whose = f"of the module {owner!r}" if owner else "without a module"
    raise ConfigError(
        f"{key}: {path!r} is refused: it is a {what} {whose}; {_rule(kind, bases, declared)}"
    )
