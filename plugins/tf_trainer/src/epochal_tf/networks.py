"""Networks: delira's ``AbstractTfNetwork`` (a ``keras.Model``) and the default supervised step.

A network that subclasses :class:`AbstractTfNetwork` brings its own ``closure`` (one training
step: forward, losses, gradients, optimizer updates), as in delira; a plain ``keras.Model`` is
trained by :func:`default_closure`. The trainer runs the closure inside one ``tf.function``, so
a closure is written with TensorFlow/Keras ops (no ``.numpy()``), as for ``Model.train_step``.

Argument order: losses are Keras losses, called ``loss(label, predictions)`` (``y_true``
first); metrics follow delira (and the torch backend), ``metric(predictions, label)``, so one
metric function serves both backends. Keras's own metric and loss functions (module
``keras...``) are recognised and called ``y_true`` first, as they expect.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from epochal_tf._tf import keras, tf

__all__ = [
    "AbstractTfNetwork",
    "call_metric",
    "default_closure",
    "prepare_batch",
    "supervised_step",
    "to_float32",
]


def prepare_batch(
    batch: Mapping[str, Any], input_device: str | None = None, output_device: str | None = None
) -> dict[str, Any]:
    """The numeric arrays of ``batch``, dtypes kept (class labels stay integers).

    The trainer feeds them to its compiled step as they are; TensorFlow copies them to the
    trainer's device. Entries that are not arrays (file names...) are left out of the step.
    """
    return {
        key: value
        for key, value in batch.items()
        if isinstance(value, (np.ndarray, tf.Tensor)) and _numeric(value.dtype)
    }


def _numeric(dtype: Any) -> bool:
    if isinstance(dtype, np.dtype):
        return dtype.kind in "biuf"
    return dtype.is_bool or dtype.is_integer or dtype.is_floating


def is_keras_order(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` is one of Keras's own (``y_true, y_pred``) functions or losses."""
    if isinstance(fn, keras.losses.Loss):
        return True
    module = getattr(fn, "__module__", None) or ""
    return module == "keras" or module.startswith("keras.")


def call_metric(fn: Callable[..., Any], predictions: Any, label: Any) -> Any:
    """``fn(predictions, label)`` (delira), or ``fn(label, predictions)`` for Keras's own."""
    value = fn(label, predictions) if is_keras_order(fn) else fn(predictions, label)
    return tf.reduce_mean(tf.cast(value, tf.float32))  # per-sample values -> the batch's mean


def to_float32(predictions: Any) -> Any:
    """Mixed precision computes in 16 bits; losses and metrics are computed in float32."""
    if isinstance(predictions, tf.Tensor) and predictions.dtype in (tf.float16, tf.bfloat16):
        return tf.cast(predictions, tf.float32)
    return predictions


def sum_losses(loss_vals: Mapping[str, Any]) -> Any:
    values = iter(loss_vals.values())
    try:
        total = next(values)  # no "0 +": one op less per step
    except StopIteration:
        raise ValueError(
            "no losses given: pass losses={'CE': "
            "keras.losses.SparseCategoricalCrossentropy(from_logits=True)}"
        ) from None
    for value in values:
        total = total + value
    return total


def default_closure(
    model: keras.Model,
    data_dict: dict[str, Any],
    optimizers: dict[str, keras.optimizers.Optimizer],
    losses: dict[str, Any],
    metrics: dict[str, Any],
    fold: int = 0,
    **kwargs: Any,
) -> tuple[dict[str, Any], dict[str, Any], Any]:
    """One supervised step: ``data`` -> network -> every loss on ``label``, summed.

    The model's own regularisation losses (``model.losses``) are added to the sum, as
    ``Model.fit`` does. ``optimizer.scale_loss`` is a no-op unless the optimizer is a
    ``LossScaleOptimizer`` (mixed float16), whose ``apply_gradients`` unscales the gradients.
    Returns ``(metric_vals, loss_vals, predictions)`` as tensors.
    """
    metric_vals, loss_vals, predictions, _ = supervised_step(
        model, data_dict, optimizers["default"], losses, metrics
    )
    return metric_vals, loss_vals, predictions


def supervised_step(
    model: keras.Model,
    data_dict: dict[str, Any],
    optimizer: keras.optimizers.Optimizer,
    losses: dict[str, Any],
    metrics: dict[str, Any],
    skip_nonfinite: bool = False,
    loss_weight: Any = None,
) -> tuple[dict[str, Any], dict[str, Any], Any, Any]:
    """:func:`default_closure`'s step, plus ``finite``: whether the summed loss (with the
    model's regularisation losses) is finite, a boolean tensor.

    With ``skip_nonfinite`` the update is made only when it is (``tf.cond`` in the graph: no
    host read): otherwise the optimizer is not called at all, so its state (iterations,
    moments, a loss scale) stays as it was.

    ``loss_weight`` (a replica under a tf.distribute strategy: its share of the global batch)
    multiplies the loss the gradients are taken of, so that the replicas' summed gradients are
    those of the global batch's mean; a per-sample loss vector is summed, as on one device.
    """
    label = data_dict["label"]
    with tf.GradientTape() as tape:
        predictions = model(data_dict["data"], training=True)
        output = to_float32(predictions)
        loss_vals = {name: loss(label, output) for name, loss in losses.items()}
        total = sum_losses(loss_vals)
        if model.losses:
            total = total + tf.add_n([tf.cast(x, total.dtype) for x in model.losses])
        if loss_weight is not None:
            weighted = total * tf.cast(loss_weight, total.dtype) if total.shape.rank == 0 else total
            scaled = optimizer.scale_loss(tf.reduce_sum(weighted))
        else:
            scaled = optimizer.scale_loss(total)
    variables = model.trainable_variables
    gradients = tape.gradient(scaled, variables)
    finite = tf.math.is_finite(tf.reduce_sum(total))
    if not skip_nonfinite:
        optimizer.apply_gradients(zip(gradients, variables, strict=True))
    else:
        if not optimizer.built:  # not inside the branch: variables are made outside a cond
            optimizer.build(variables)

        def update() -> Any:
            optimizer.apply_gradients(zip(gradients, variables, strict=True))
            return tf.constant(True)

        tf.cond(finite, update, lambda: tf.constant(False))
    metric_vals = {name: call_metric(fn, output, label) for name, fn in metrics.items()}
    return metric_vals, loss_vals, predictions, finite


class AbstractTfNetwork(keras.Model):
    """delira's base class on Keras 3: a ``keras.Model`` with its own training step.

    Override :meth:`closure` for custom steps (GANs, several optimizers); it runs inside the
    trainer's ``tf.function``. Override :meth:`prepare_batch` to change batches on the host
    before the step (it runs per batch, in Python).
    """

    #: One training step, delira's signature; the default is :func:`default_closure`.
    closure = staticmethod(default_closure)
    #: Batch dict of numpy arrays -> the dict the step receives (see :func:`prepare_batch`).
    prepare_batch = staticmethod(prepare_batch)
