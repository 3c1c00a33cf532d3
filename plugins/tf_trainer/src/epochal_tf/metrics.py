"""Losses and metrics that configs name for the tf backend (the torch backend's names)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from epochal_tf._tf import keras, tf

__all__ = ["CrossEntropy", "accuracy", "check_metrics"]


class CrossEntropy(keras.losses.SparseCategoricalCrossentropy):
    """Cross-entropy of class-index labels and logits (``torch.nn.CrossEntropyLoss``'s
    meaning: ``from_logits=True`` by default)."""

    def __init__(self, from_logits: bool = True, **kwargs: Any) -> None:
        super().__init__(from_logits=from_logits, **kwargs)


def accuracy(predictions: Any, labels: Any) -> Any:
    """Share of samples whose highest output is the label: class indices, or one-hot /
    class-probability rows (compared by their highest entry)."""
    if labels.shape.rank == 2 and labels.shape[1] == predictions.shape[1] and labels.shape[1] > 1:
        labels = tf.argmax(labels, axis=1)
    labels = tf.reshape(tf.cast(labels, tf.int64), [-1])
    return tf.reduce_mean(tf.cast(tf.equal(tf.argmax(predictions, axis=1), labels), tf.float32))


def check_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """``metrics`` if each is a stateless function (the step sums their values itself)."""
    for name, fn in metrics.items():
        if isinstance(fn, keras.metrics.Metric):
            raise TypeError(
                f"metric {name!r} is a stateful keras.metrics.Metric object; pass a function "
                "fn(predictions, label) -> scalar, or a Keras metric function such as "
                "keras.metrics.sparse_categorical_accuracy"
            )
        if not callable(fn):
            raise TypeError(f"metric {name!r} must be callable, got {type(fn).__name__}")
    return dict(metrics)
