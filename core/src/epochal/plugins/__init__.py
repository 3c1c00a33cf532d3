"""Plugins: the manager, the hookspecs, the registries built from them, the core's own plugin."""
