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


class NonFiniteLossError(EpochalError, FloatingPointError):
    """A training loss became NaN or infinite; the message names epoch, batch and loss key.

    Backends build it with :meth:`at_batch` or :meth:`all_skipped`, so that every backend
    words it alike. Batches are counted from 1.
    """

    _ADVICE = (
        "Lower the learning rate, check the data for NaN or Inf values, or set "
        "on_nonfinite='skip_batch' (trainer argument or [training] key) to skip such batches."
    )

    @classmethod
    def at_batch(
        cls, epoch: int, batch: int, n_batches: int | None, key: str | None, value: float
    ) -> NonFiniteLossError:
        """``batch`` counts from 1; ``key`` ``None``: the sum of the losses was not finite."""
        where = f"batch {batch} of {n_batches}" if n_batches else f"batch {batch}"
        what = f"loss {key!r}" if key is not None else "the summed loss"
        value = float(value)
        return cls(
            f"non-finite loss in epoch {epoch}, {where} (counting from 1): {what} is {value}. "
            "No checkpoint of this epoch is written; those of earlier epochs are kept. "
            + cls._ADVICE
        )

    @classmethod
    def all_skipped(cls, epoch: int, n_batches: int) -> NonFiniteLossError:
        return cls(
            f"epoch {epoch}: the loss was non-finite in all {n_batches} batches, so all were "
            "skipped (on_nonfinite='skip_batch') and nothing was learned. Lower the learning "
            "rate or check the data for NaN or Inf values."
        )

    #: What a trainer's ``on_nonfinite`` argument may be.
    POLICIES = ("raise", "skip_batch")
    #: Train-metric key of the per-epoch count of skipped batches (with ``"skip_batch"``).
    METRIC = "nonfinite_batches"

    @classmethod
    def check_policy(cls, value: object) -> str:
        """``value`` if it is one of :attr:`POLICIES`, else a ``ValueError`` naming them."""
        if value not in cls.POLICIES:
            raise ValueError(f"on_nonfinite must be one of {cls.POLICIES}, got {value!r}")
        return str(value)


class CheckpointError(EpochalError):
    """A checkpoint that cannot be written, read, or does not fit the trainer."""


class DistributedError(EpochalError, RuntimeError):
    """Distributed training cannot go on: a bad launch environment, or another process of the
    run failed or stopped answering (the message says which rank saw what)."""


class LaunchError(DistributedError, ConfigError):
    """The processes were started wrongly (a launcher's variables missing or inconsistent):
    bad input, so the CLI exits 2; the message names the variable and how to launch."""
