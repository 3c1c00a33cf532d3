"""Backends as the plugin registry knows them: a trainer class by name, what to install for a
name, the default job's backend, and the config keys a backend declares.

The core names no backend. What it says about one comes from the plugins installed (the
distribution that declares an ``epochal`` entry point of that name, enabled or not), from the
default job (``configs/default.toml``), or from the naming rule of backend distributions
(``epochal-<name>``) for a backend that nothing installed declares.
"""

from __future__ import annotations

import copy
import re
import sys
from collections.abc import Mapping
from importlib import metadata
from types import ModuleType
from typing import Any

from epochal.errors import ConfigError
from epochal.plugins.manager import ENTRY_POINT_GROUP

__all__ = [
    "backend_name",
    "backend_trainer",
    "default_backend",
    "distribution_of",
    "framework_distributions",
    "install_hint",
    "plugin_distributions",
]


def plugin_distributions() -> dict[str, str]:
    """``{entry-point name: distribution}`` for every installed epochal plugin, loaded or
    disabled (``EPOCHAL_DISABLE_PLUGINS`` hides a plugin, not its distribution)."""
    found: dict[str, str] = {}
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = entry_point.dist
        if dist is not None:
            found.setdefault(entry_point.name, dist.metadata["Name"])
    return found


def install_hint(backend: str) -> str:
    """The distribution to install for ``backend``: the installed one that declares a plugin
    of that name (its framework may be missing), else ``epochal-<name>``, the naming rule of
    backend distributions."""
    return plugin_distributions().get(backend) or f"epochal-{backend}"


def distribution_of(obj: Any) -> str | None:
    """The installed epochal plugin distribution whose package holds ``obj`` (a class)."""
    package = getattr(obj, "__module__", "").split(".")[0]
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry_point.module.split(".")[0] == package and entry_point.dist is not None:
            return entry_point.dist.metadata["Name"]
    return None


def framework_distributions(trainer_cls: type) -> list[str]:
    """What the distribution of ``trainer_cls`` requires (its framework), and what those
    require that the backend's package imports itself (a framework's front end)."""
    distribution = distribution_of(trainer_cls)
    if distribution is None:
        return []
    direct = [name for name in _requirements(distribution) if not name.startswith("epochal")]
    package = trainer_cls.__module__.split(".")[0]
    imported = {
        value.__name__.split(".")[0]
        for name, module in list(sys.modules.items())
        if module is not None and (name == package or name.startswith(package + "."))
        for value in list(vars(module).values())
        if isinstance(value, ModuleType)
    }
    below = [
        name
        for requirement in direct
        for name in _requirements(requirement)
        if name.lower().replace("-", "_") in imported and name not in direct
    ]
    return list(dict.fromkeys(direct + below))


def _requirements(distribution: str) -> list[str]:
    try:
        requires = metadata.requires(distribution) or []
    except metadata.PackageNotFoundError:
        return []
    names = []
    for requirement in requires:
        if "extra ==" in requirement.replace('"', " ").replace("'", " "):
            continue
        name = re.split(r"[\s<>=!~;\[(]", requirement.strip(), maxsplit=1)[0]
        if name:
            names.append(name)
    return names


def default_job() -> dict[str, Any]:
    """The default job: the core's ``configs/default.toml`` (data set, model, training) and
    what the installed plugins add to it (``epochal_register_default_job``: a backend, its
    callbacks). A plugin that fails there is reported and skipped, as at registration."""
    from epochal.job.config import default_text, parse_toml
    from epochal.plugins.manager import FAILED, call_plugin, get_plugin_manager

    job = parse_toml(default_text(), "the default config")
    for table in ("experiment", "callbacks"):
        job.setdefault(table, {})
    manager = get_plugin_manager()
    for plugin in manager.plugins_implementing("epochal_register_default_job"):
        scratch = copy.deepcopy(job)
        if call_plugin(manager, "epochal_register_default_job", plugin, job=scratch) is not FAILED:
            job = scratch  # a plugin that fails leaves nothing half-added
    experiment = job["experiment"]
    # the backend next to the name, where a config file shows it
    job["experiment"] = {**{k: experiment[k] for k in ("name", "backend") if k in experiment}}
    job["experiment"].update(experiment)
    return job


def default_backend() -> str:
    """The backend the default job names (the plugin preferred there), when it is registered,
    else the first registered backend."""
    from epochal.plugins.registry import trainers

    names = trainers().names()
    offered = default_job()["experiment"].get("backend")
    if offered in names:
        return offered
    if not names:
        from epochal.plugins.manager import get_plugin_manager

        manager = get_plugin_manager()
        idle = sorted(
            {dist for name, dist in plugin_distributions().items() if not manager.has_plugin(name)}
        )
        where = f"; installed but not loaded: {', '.join(idle)} (EPOCHAL_DISABLE_PLUGINS?)"
        raise ConfigError(
            "no backend is installed: pip install an epochal backend (epochal-<backend>)"
            + (where if idle else "")
        )
    return names[0]


def backend_trainer(backend: str) -> type:
    """The trainer class registered as ``backend``, or an error that says what to install."""
    from epochal.plugins.registry import trainers

    registry = trainers()
    if backend not in registry:
        raise ConfigError(
            f"unknown backend {backend!r}; installed backends: "
            f"{', '.join(registry.names()) or 'none'}. Install it: pip install "
            f"{install_hint(backend)}."
        )
    try:
        return registry.get(backend)
    except ImportError as exc:
        raise ConfigError(
            f"the backend {backend!r} is installed but its framework cannot be imported: "
            f"{exc.__cause__ or exc}. Install it: pip install {install_hint(backend)}"
        ) from None


def backend_name(trainer_cls: type) -> str | None:
    """The name ``trainer_cls`` is registered under, if it is (what a run folder records)."""
    from epochal.plugins.registry import trainers

    path = f"{trainer_cls.__module__}:{trainer_cls.__qualname__}"
    for name, entry in trainers().entries.items():
        if entry.target is trainer_cls or entry.target == path:
            return name
    return None


def trainer_config_keys(trainer_cls: type | None) -> Mapping[str, Any]:
    """The ``training.`` keys ``trainer_cls`` declares (``config_keys``: name -> ConfigKey)."""
    return dict(getattr(trainer_cls, "config_keys", None) or {})
