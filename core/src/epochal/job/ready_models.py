"""The ready-made networks that configs name (``model = "mlp"``, ``model = "cnn"``).

Their arguments are the same on every backend, so that one config serves all: they are
documented and checked here, once, and each backend only builds its framework's layers from the
checked sizes. A bad size fails at once, naming the argument (``hidden = [-1]``, or
``[10**9]``: too many parameters), before anything is allocated.

A model class declares its check as ``check_arguments`` (``MLP.check_arguments =
mlp_layout``): :func:`check_model_arguments` runs it when a job is validated, before the model
is built, and its :class:`~epochal.job.limits.ArgumentError` names the ``model.`` key.
"""

from __future__ import annotations

import inspect
import numbers
import reprlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from epochal.errors import ConfigError
from epochal.job.components import check_kwargs
from epochal.job.limits import ArgumentError, cnn_channels, mlp_widths

__all__ = [
    "CNNLayout",
    "MLPLayout",
    "check_model_arguments",
    "cnn_layout",
    "mlp_layout",
    "model_error",
]


@dataclass(frozen=True)
class MLPLayout:
    """An MLP's checked sizes: ``widths`` from the inputs through the hidden layers to the
    outputs (logits), and the ``dropout`` after each hidden layer (0: none)."""

    widths: list[int]
    dropout: float

    @property
    def hidden(self) -> list[int]:
        return self.widths[1:-1]

    @property
    def num_classes(self) -> int:
        return self.widths[-1]


@dataclass(frozen=True)
class CNNLayout:
    """A small CNN's checked sizes: ``channels`` from the image's through each 3x3 conv block
    (conv, batch norm, ReLU, 2x2 max-pool), and ``num_classes`` outputs of the linear head."""

    channels: list[int]
    num_classes: int


def mlp_layout(
    in_features: Any, hidden: Sequence[int], num_classes: Any, dropout: Any
) -> MLPLayout:
    """The MLP's arguments, checked (a ``ValueError`` naming the argument).

    Args:
        in_features: inputs per sample after flattening (64 for ``digits``).
        hidden: the hidden layers' widths, e.g. ``[128]``.
        num_classes: outputs (logits).
        dropout: dropout after each hidden layer, from 0 (none) to 1.
    """
    widths = mlp_widths("MLP", in_features, hidden, num_classes)
    if (
        isinstance(dropout, bool)
        or not isinstance(dropout, numbers.Real)
        or not 0 <= float(dropout) <= 1
    ):
        raise ArgumentError(
            "dropout", f"MLP: dropout must be a number from 0 to 1, got {dropout!r}"
        )
    return MLPLayout(widths, float(dropout))


def cnn_layout(in_channels: Any, num_classes: Any, channels: Sequence[int]) -> CNNLayout:
    """The small CNN's arguments, checked (a ``ValueError`` naming the argument).

    Args:
        in_channels: image channels (1 for grey).
        num_classes: outputs (logits).
        channels: the conv blocks' widths, e.g. ``[16, 32]``.
    """
    widths = cnn_channels("SmallCNN", in_channels, num_classes, channels)
    return CNNLayout(widths, int(num_classes))


def model_error(
    model_cls: Any, kwargs: Mapping[str, Any], exc: BaseException, argument: str | None = None
) -> ConfigError:
    """The one-line error of a model that refused its ``kwargs``: under ``model.<argument>``
    when a declared check named it, else under ``model`` as a whole."""
    where = f"model.{argument}" if argument else "model"
    name = getattr(model_cls, "__qualname__", None) or repr(model_cls)
    call = ", ".join(f"{key}={reprlib.repr(value)}" for key, value in kwargs.items())
    cause = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ConfigError(f"{where}: {name}({call}) failed: {cause}")


def check_model_arguments(model_cls: Any, kwargs: Mapping[str, Any]) -> None:
    """Check the ``[model]`` table before the model is built: its names and value types
    against the model's signature, then the model's declared ``check_arguments`` (called with
    those of the model's arguments, defaults filled in, that it takes; skipped while one it
    needs is missing: the constructor then says so)."""
    check_kwargs(model_cls, kwargs, "model")
    check = getattr(model_cls, "check_arguments", None)
    if check is None:
        return
    try:
        bound = inspect.signature(model_cls).bind_partial(**kwargs)
    except TypeError:
        return  # the constructor will say what is wrong, under model
    bound.apply_defaults()
    wanted = inspect.signature(check).parameters
    arguments = {name: value for name, value in bound.arguments.items() if name in wanted}
    if any(
        parameter.default is inspect.Parameter.empty and name not in arguments
        for name, parameter in wanted.items()
        if parameter.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ):
        return
    try:
        check(**arguments)
    except ArgumentError as exc:
        raise model_error(model_cls, kwargs, exc, exc.argument) from exc
    except (TypeError, ValueError, OverflowError) as exc:
        raise model_error(model_cls, kwargs, exc) from exc
