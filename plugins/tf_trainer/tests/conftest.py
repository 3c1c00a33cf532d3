"""Fixtures for the TF trainer's tests: small real Keras networks on digits."""

from __future__ import annotations

import pytest

from epochal_tf.trainer import TfNetworkTrainer

keras = pytest.importorskip("keras")


def accuracy(predictions, labels):
    """delira's order: ``(predictions, labels)``."""
    hits = keras.ops.argmax(predictions, 1) == keras.ops.cast(labels, "int32")
    return keras.ops.mean(keras.ops.cast(hits, "float32"))


def mlp(dropout: float = 0.0, hidden: int = 32) -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(hidden, activation="relu"),
            keras.layers.Dropout(dropout),
            keras.layers.Dense(10),
        ]
    )


def cross_entropy():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


@pytest.fixture
def tf_trainer():
    """``tf_trainer(network=None, save_path=None, seed=0, **kwargs)`` -> a trainer on an MLP."""

    def build(network=None, save_path=None, seed=0, **kwargs):
        keras.utils.set_random_seed(seed)
        kwargs.setdefault("optimizer_cls", keras.optimizers.Adam)
        kwargs.setdefault("optimizer_params", {"learning_rate": 0.01})
        kwargs.setdefault("metrics", {"accuracy": accuracy})
        return TfNetworkTrainer(
            network if network is not None else mlp(), save_path, {"CE": cross_entropy()}, **kwargs
        )

    return build


@pytest.fixture
def make_mlp():
    """``make_mlp(dropout=0.0, hidden=32)`` -> the 64-hidden-10 MLP."""
    return mlp
