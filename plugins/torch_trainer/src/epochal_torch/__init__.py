"""epochal plugin `epochal-torch`: PyTorchNetworkTrainer (AMP, checkpoints, predict). Implemented
by the torch issue; this package only claims its name and entry point for now.
"""

__version__ = "0.1.0"
