"""epochal plugin `epochal-torch`: PyTorchNetworkTrainer with AMP, checkpoints, best model, predict.

Names are imported on first use so that loading the plugin (``epochal plugins``) never imports
torch.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "PyTorchNetworkTrainer": "epochal_torch.trainer",
    "AbstractPyTorchNetwork": "epochal_torch.networks",
    "create_optims_default_pytorch": "epochal_torch.optim",
    "save_checkpoint": "epochal_torch.io",
    "load_checkpoint": "epochal_torch.io",
    "PyTorchExperiment": "epochal_torch.experiment",
    "MLP": "epochal_torch.models",
    "SmallCNN": "epochal_torch.models",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'epochal_torch' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value
