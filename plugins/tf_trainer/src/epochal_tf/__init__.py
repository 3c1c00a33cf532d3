"""epochal plugin `epochal-tf`: TfNetworkTrainer on TensorFlow 2 / Keras 3.

Names are imported on first use so that loading the plugin (``epochal plugins``) never imports
TensorFlow. TensorFlow's start-up noise is hidden unless ``TF_CPP_MIN_LOG_LEVEL`` is set.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "TfNetworkTrainer": "epochal_tf.trainer",
    "AbstractTfNetwork": "epochal_tf.networks",
    "create_optims_default_tf": "epochal_tf.optim",
    "save_checkpoint": "epochal_tf.io",
    "load_checkpoint": "epochal_tf.io",
    "CheckpointError": "epochal_tf.io",
    "TfExperiment": "epochal_tf.experiment",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'epochal_tf' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value
