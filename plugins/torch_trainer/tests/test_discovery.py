"""`epochal-torch` is found through its entry point, like any third-party plugin."""

from __future__ import annotations

from epochal.plugins.manager import build_plugin_manager


def test_discovered_through_the_entry_point():
    manager = build_plugin_manager(environ={})
    assert manager.has_plugin("torch")
    assert manager.plugin_distribution("torch") == "epochal-torch"
    assert manager.get_plugin("torch").__name__ == "epochal_torch.plugin"
    assert not manager.broken
