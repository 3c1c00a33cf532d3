"""epochal plugin `epochal-callbacks`: Early stopping, LR scheduling, progress bars, loggers,
plots. Implemented by the callbacks issue; this package only claims its name and entry point for
now.
"""

__version__ = "0.1.0"
