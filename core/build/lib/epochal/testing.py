"""pytest plugin for plugin authors (registered through the ``pytest11`` entry point).

Fixtures:

``register_epochal_plugin``
    ``register_epochal_plugin(plugin, name=None)`` puts ``plugin`` on the
    process-wide plugin manager for one test and removes it afterwards.
``epochal_plugin_manager``
    A fresh manager with the core defaults and ``plugins=[...]`` of your own,
    no entry points: ``epochal_plugin_manager(MyPlugin())``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from epochal.plugins import (
    EpochalPluginManager,
    build_plugin_manager,
    get_plugin_manager,
    plugin_display_name,
)


@pytest.fixture
def register_epochal_plugin() -> Iterator[Callable[..., str]]:
    manager = get_plugin_manager()
    added: list[object] = []

    def register(plugin: object, name: str | None = None) -> str:
        registered = manager.register_checked(
            plugin, name or manager.unique_name(plugin_display_name(plugin))
        )
        if registered is None:
            raise ValueError(f"plugin name {name!r} is blocked (EPOCHAL_DISABLE_PLUGINS)")
        added.append(plugin)
        return registered

    yield register
    for plugin in reversed(added):
        if manager.is_registered(plugin):
            manager.unregister(plugin)


@pytest.fixture
def epochal_plugin_manager() -> Callable[..., EpochalPluginManager]:
    def build(*plugins: object) -> EpochalPluginManager:
        return build_plugin_manager(load_entry_points=False, environ={}, plugins=plugins)

    return build
