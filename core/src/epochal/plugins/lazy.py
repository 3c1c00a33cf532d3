"""Lazy names for a plugin's package: ``from plugin import Trainer`` imports the framework only
then, never when the plugin is loaded (``epochal plugins``, ``epochal --help``)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, Iterable[str]]
) -> tuple[list[str], Callable[[str], Any]]:
    """``__all__`` and a module ``__getattr__`` (PEP 562) for ``package``.

    ``exports`` maps a submodule (``".trainer"``, relative to ``package``) to the names it
    gives; a name is imported on first access and then kept in the package, so the next
    access costs nothing. Use: ``__all__, __getattr__ = lazy_exports(__name__, {...})``.
    """
    where = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        setattr(sys.modules[package], name, value)
        return value

    return list(where), __getattr__
