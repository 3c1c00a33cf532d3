"""The backend conformance suite (``epochal.testing.conformance``) run against ``tf``."""

from __future__ import annotations

from epochal.testing.conformance import *  # noqa: F403  (the suite's tests and fixtures)
from epochal.testing.conformance import conformance_backend
from epochal_tf._tf import keras
from epochal_tf.trainer import TfNetworkTrainer


def accuracy(predictions, labels):
    """delira's order: ``(predictions, labels)``."""
    hits = keras.ops.argmax(predictions, 1) == keras.ops.cast(labels, "int32")
    return keras.ops.mean(keras.ops.cast(hits, "float32"))


def make_trainer(save_path=None, *, seed=0, network="default", **kwargs):
    """The 64-32-10 MLP (dropout 0.3 when "random", 16 hidden units when "other"), Adam. tanh,
    not ReLU: TensorFlow's ReLU turns NaN into 0, and a NaN input must give a NaN loss."""
    keras.utils.set_random_seed(seed)  # the initial weights, too
    hidden, dropout = (16 if network == "other" else 32), (0.3 if network == "random" else 0.0)
    mlp = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(hidden, activation="tanh"),
            keras.layers.Dropout(dropout),
            keras.layers.Dense(10),
        ]
    )
    kwargs.setdefault("optimizer_cls", keras.optimizers.Adam)
    kwargs.setdefault("optimizer_params", {"learning_rate": 0.01})
    kwargs.setdefault("metrics", {"accuracy": accuracy})
    losses = {"CE": keras.losses.SparseCategoricalCrossentropy(from_logits=True)}
    return TfNetworkTrainer(mlp, save_path, losses, **kwargs)


epochal_backend = conformance_backend(
    "tf",
    make_trainer,
    unstable={"optimizer_cls": "sgd", "optimizer_params": {"learning_rate": 3.0}},
    distribution="epochal-tf",
)
