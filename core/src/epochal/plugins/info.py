"""What ``epochal plugins`` shows: each plugin's version, hooks, registrations, errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from epochal.plugins.manager import EpochalPluginManager, single_plugin_caller

__all__ = ["PluginInfo", "describe_plugins"]


@dataclass
class PluginInfo:
    """One row of ``epochal plugins``."""

    name: str
    version: str | None
    distribution: str | None
    hooks: list[str] = field(default_factory=list)
    provides: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "distribution": self.distribution,
            "hooks": self.hooks,
            "provides": self.provides,
            "error": self.error,
        }


def describe_plugins(manager: EpochalPluginManager) -> list[PluginInfo]:
    """Every registered plugin (with what it provides) and every broken one."""
    from epochal.plugins import registry

    provided: dict[str, dict[str, list[str]]] = {}
    for kind, build in registry.REGISTRIES.items():
        for entry in sorted(build(manager).entries.values(), key=lambda entry: entry.name):
            provided.setdefault(entry.plugin, {}).setdefault(kind, []).append(entry.name)
    for plugin_name, commands in _command_names(manager).items():
        provided.setdefault(plugin_name, {})["commands"] = commands

    infos = []
    for name, plugin in sorted(manager.list_name_plugin(), key=lambda item: item[0]):
        if plugin is None:  # blocked
            continue
        infos.append(
            PluginInfo(
                name=name,
                version=manager.plugin_version(name),
                distribution=manager.plugin_distribution(name),
                hooks=manager.hook_names(plugin),
                provides=provided.get(name, {}),
                error=manager.broken[name].error if name in manager.broken else None,
            )
        )
    registered = {info.name for info in infos}
    for name, broken in sorted(manager.broken.items()):
        if name not in registered:
            infos.append(
                PluginInfo(
                    name=name,
                    version=None,
                    distribution=broken.distribution,
                    error=f"{broken.stage}: {broken.error}",
                )
            )
    return infos


def _command_names(manager: EpochalPluginManager) -> dict[str, list[str]]:
    """Which plugin adds which CLI command, found by calling each plugin alone."""
    import click

    found: dict[str, list[str]] = {}
    for plugin_name in manager.plugins_implementing("epochal_register_commands"):
        group = click.Group()
        caller = single_plugin_caller(manager, "epochal_register_commands", plugin_name)
        try:
            caller(cli=group)
        except (Exception, SystemExit):  # noqa: BLE001 - reported when the CLI adds the commands
            continue
        if group.commands:
            found[plugin_name] = sorted(group.commands)
    return found
