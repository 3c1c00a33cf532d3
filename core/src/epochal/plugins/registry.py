"""Name -> object registries built from the registration hooks.

A registry is rebuilt on every call from the plugins registered at that moment,
so registering or removing a plugin needs no cache invalidation. Entries may be
objects or ``"module:attr"`` strings; strings are imported only on lookup, which
keeps ``epochal plugins`` free of every framework's import.
"""

from __future__ import annotations

import difflib
import importlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from epochal.errors import UnknownNameError
from epochal.plugins.manager import (
    DEFAULTS_PLUGIN_NAME,
    FAILED,
    EpochalPluginManager,
    PluginWarning,
    call_plugin,
    get_plugin_manager,
)

__all__ = [
    "Registry",
    "RegistryEntry",
    "callbacks",
    "datasets",
    "get_callback",
    "get_dataset",
    "get_sampler",
    "get_trainer",
    "resolve_path",
    "samplers",
    "trainers",
]


def resolve_path(path: str) -> Any:
    """Import ``"package.module:attr"`` (attr may be dotted) and return the object."""
    module_name, sep, attr_path = path.partition(":")
    if not sep or not module_name or not attr_path:
        raise ValueError(f"{path!r} is not a 'module:attr' path, e.g. 'mypkg.models:MyNet'")
    obj: Any = importlib.import_module(module_name)
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ImportError(f"module {module_name!r} has no attribute {attr_path!r}") from None
    return obj


@dataclass(frozen=True)
class RegistryEntry:
    """One registered name: the object (or its path) and the plugin that gave it."""

    kind: str
    name: str
    target: Any
    plugin: str

    def resolve(self) -> Any:
        if not isinstance(self.target, str):
            return self.target
        try:
            return resolve_path(self.target)
        except ImportError as exc:
            raise ImportError(
                f"{self.kind} {self.name!r} (from plugin {self.plugin!r}) points to "
                f"{self.target!r}, which cannot be imported: {exc}. Install what that plugin "
                "needs, or disable it with EPOCHAL_DISABLE_PLUGINS."
            ) from exc


class Registry:
    """Names of one kind (trainer, callback, dataset) and what they stand for."""

    def __init__(self, kind: str, entries: dict[str, RegistryEntry]) -> None:
        self.kind = kind
        self.entries = entries

    def names(self) -> list[str]:
        return sorted(self.entries)

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def entry(self, name: str) -> RegistryEntry:
        """The entry for ``name``; an unknown name raises with the known ones."""
        try:
            return self.entries[name]
        except (KeyError, TypeError):
            pass
        known = ", ".join(self.names()) or "none"
        close = difflib.get_close_matches(str(name), self.names(), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownNameError(
            f"unknown {self.kind} {name!r}.{hint} Known {self.kind}s: {known}. "
            f"Install the plugin that registers it (see `epochal plugins`)."
        )

    def get(self, name: str) -> Any:
        """The object registered as ``name`` (imported now if given as a path)."""
        return self.entry(name).resolve()


def _build(kind: str, hook_name: str, manager: EpochalPluginManager | None) -> Registry:
    manager = manager if manager is not None else get_plugin_manager()
    entries: dict[str, RegistryEntry] = {}
    for plugin_name in manager.plugins_implementing(hook_name):
        batch: list[RegistryEntry] = []

        def register(
            name: str, target: Any, _plugin: str = plugin_name, _batch: list = batch
        ) -> None:
            if not isinstance(name, str) or not name:
                raise ValueError(f"a {kind} name must be a non-empty string, got {name!r}")
            if target is None:
                raise ValueError(f"{kind} {name!r} was registered as None")
            if isinstance(target, str) and ":" not in target:
                raise ValueError(f"{target!r} is not a 'module:attr' path (registering {name!r})")
            _batch.append(RegistryEntry(kind, name, target, _plugin))

        if call_plugin(manager, hook_name, plugin_name, register=register) is FAILED:
            continue
        for entry in batch:
            _add(entries, entry)
    return Registry(kind, entries)


def _add(entries: dict[str, RegistryEntry], entry: RegistryEntry) -> None:
    """First registration wins: plugins are called before the trylast core defaults."""
    existing = entries.get(entry.name)
    if existing is None:
        entries[entry.name] = entry
        return
    if DEFAULTS_PLUGIN_NAME not in (existing.plugin, entry.plugin):
        warnings.warn(
            f"{entry.kind} {entry.name!r} is registered by both {existing.plugin!r} and "
            f"{entry.plugin!r}; using the one from {existing.plugin!r}",
            PluginWarning,
            stacklevel=4,
        )


def trainers(manager: EpochalPluginManager | None = None) -> Registry:
    """The trainer registry (backend names, such as the example's ``"numpy"``)."""
    return _build("trainer", "epochal_register_trainers", manager)


def callbacks(manager: EpochalPluginManager | None = None) -> Registry:
    """The callback registry (callback names, as a ``[callbacks]`` table uses them)."""
    return _build("callback", "epochal_register_callbacks", manager)


def datasets(manager: EpochalPluginManager | None = None) -> Registry:
    """The dataset registry (``"digits"``, ...)."""
    return _build("dataset", "epochal_register_datasets", manager)


def samplers(manager: EpochalPluginManager | None = None) -> Registry:
    """The sampler registry (``"sequential"``, ``"random"``, ``"balanced"``, ...)."""
    return _build("sampler", "epochal_register_samplers", manager)


REGISTRIES: dict[str, Callable[[EpochalPluginManager | None], Registry]] = {
    "trainers": trainers,
    "callbacks": callbacks,
    "datasets": datasets,
    "samplers": samplers,
}


def get_trainer(name: str, manager: EpochalPluginManager | None = None) -> Any:
    """The trainer class registered as ``name``."""
    return trainers(manager).get(name)


def get_callback(name: str, manager: EpochalPluginManager | None = None) -> Any:
    """The callback class (or factory) registered as ``name``."""
    return callbacks(manager).get(name)


def get_dataset(name: str, manager: EpochalPluginManager | None = None, **kwargs: Any) -> Any:
    """Build the dataset registered as ``name`` with ``kwargs``."""
    return datasets(manager).get(name)(**kwargs)


def get_sampler(name: str, manager: EpochalPluginManager | None = None) -> Any:
    """The sampler class registered as ``name``."""
    return samplers(manager).get(name)
