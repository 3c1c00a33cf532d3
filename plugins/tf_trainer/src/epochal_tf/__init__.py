"""epochal plugin `epochal-tf`: TfNetworkTrainer on TensorFlow 2 / Keras 3.

Names are imported on first use so that loading the plugin (``epochal plugins``) never imports
TensorFlow. TensorFlow's start-up noise is hidden unless ``TF_CPP_MIN_LOG_LEVEL`` is set.
"""

from __future__ import annotations

from epochal.plugins.lazy import lazy_exports

__version__ = "0.1.0"

__all__, __getattr__ = lazy_exports(
    __name__,
    {
        ".trainer": ["TfNetworkTrainer"],
        ".networks": ["AbstractTfNetwork"],
        ".optim": ["create_optims_default_tf"],
        ".io": ["save_checkpoint", "load_checkpoint", "CheckpointError"],
        ".experiment": ["TfExperiment"],
    },
)
__all__ += ["__version__"]
