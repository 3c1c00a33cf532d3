"""epochal plugin `epochal-callbacks`: early stopping, progress, loggers, plots.

Every callback is registered by name (see :data:`epochal_callbacks.plugin.CALLBACKS`) so that a
config can say ``name = "early_stopping"``. The LR schedulers live with their backends
(``torch_lr_scheduler`` in epochal-torch, the ``tf_*`` rules in epochal-tf).
"""

__version__ = "0.1.0"
