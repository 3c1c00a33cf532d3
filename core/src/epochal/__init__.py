"""epochal: one training loop for PyTorch and TensorFlow, extended by pip install.

``from epochal import hookimpl`` is all a plugin needs. Everything heavier
(trainer, data) is imported on first attribute access so that the CLI starts fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from epochal.plugins.hookspecs import hookimpl, hookspec

__version__ = "0.1.0"

_LAZY = {
    "AbstractNetworkTrainer": "epochal.loop.trainer",
    "AbstractCallback": "epochal.loop.callbacks",
    "DataManager": "epochal.data.manager",
    "AbstractDataset": "epochal.data.datasets",
    "ArrayDataset": "epochal.data.datasets",
    "BaseCacheDataset": "epochal.data.datasets",
    "BaseLazyDataset": "epochal.data.datasets",
    "get_plugin_manager": "epochal.plugins.manager",
    "build_plugin_manager": "epochal.plugins.manager",
}

__all__ = ["__version__", "hookimpl", "hookspec", *_LAZY]

if TYPE_CHECKING:  # pragma: no cover
    from epochal.data.datasets import (
        AbstractDataset,
        ArrayDataset,
        BaseCacheDataset,
        BaseLazyDataset,
    )
    from epochal.data.manager import DataManager
    from epochal.loop.callbacks import AbstractCallback
    from epochal.loop.trainer import AbstractNetworkTrainer
    from epochal.plugins.manager import build_plugin_manager, get_plugin_manager


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'epochal' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value
