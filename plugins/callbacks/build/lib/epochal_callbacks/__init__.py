"""epochal plugin `epochal-callbacks`: early stopping, LR scheduling, progress, loggers, plots.

Every callback is registered by name (see :data:`epochal_callbacks.plugin.CALLBACKS`) so that a
config can say ``name = "early_stopping"``; frameworks are imported only by the callback that
needs them.
"""

__version__ = "0.1.0"
