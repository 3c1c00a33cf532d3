"""Exceptions that epochal raises on purpose, each naming the problem and the fix."""

from __future__ import annotations


class EpochalError(Exception):
    """Base class of every error epochal raises deliberately."""


class PluginError(EpochalError):
    """A plugin failed to import, register or validate (raised in strict mode)."""


class UnknownNameError(EpochalError, LookupError):
    """A registry was asked for a name that no plugin registered."""


class DataError(EpochalError, ValueError):
    """Data that cannot be used as given (empty dataset, bad batch size, ...)."""


class DataWorkerError(EpochalError, RuntimeError):
    """A data-augmentation worker raised or died; the message says which and why."""


class MissingMetricError(EpochalError, KeyError):
    """A callback monitors a metric the epoch did not produce; the message lists those it did."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


class ConfigError(EpochalError, ValueError):
    """A configuration that cannot be used: the message names the key and what is allowed."""
