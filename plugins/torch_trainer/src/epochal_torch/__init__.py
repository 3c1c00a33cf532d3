"""epochal plugin `epochal-torch`: PyTorchNetworkTrainer with AMP, checkpoints, best model, predict.

Names are imported on first use so that loading the plugin (``epochal plugins``) never imports
torch.
"""

from __future__ import annotations

from epochal.plugins.lazy import lazy_exports

__version__ = "0.1.0"

__all__, __getattr__ = lazy_exports(
    __name__,
    {
        ".trainer": ["PyTorchNetworkTrainer"],
        ".networks": ["AbstractPyTorchNetwork"],
        ".optim": ["create_optims_default_pytorch"],
        ".io": ["save_checkpoint", "load_checkpoint"],
        ".experiment": ["PyTorchExperiment"],
        ".models": ["MLP", "SmallCNN"],
    },
)
__all__ += ["__version__"]
