"""The per-step extension point on TensorFlow: a TfNetworkTrainer subclass's ``train_step`` is
what the compiled step runs (traced once per signature, run for every batch)."""

from __future__ import annotations

import pytest

from epochal_tf import TfNetworkTrainer

from .conftest import accuracy, cross_entropy, mlp

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")


class PenaltyTrainer(TfNetworkTrainer):
    """The default step, plus the weights' squared norm reported as a loss of its own, and a
    count of the batches the step ran for (a variable: the step runs in a graph)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.batches_run = tf.Variable(0, dtype=tf.int64, trainable=False)

    def train_step(self, data_dict):
        self.batches_run.assign_add(1)
        losses, metrics = super().train_step(data_dict)
        squares = [tf.reduce_sum(tf.square(w)) for w in self.module.trainable_weights]
        return {**losses, "l2": tf.add_n(squares)}, metrics


def test_a_subclass_step_is_compiled_once_and_learns(managers):
    keras.utils.set_random_seed(0)
    train, valid = managers()
    trainer = PenaltyTrainer(
        mlp(), None, {"CE": cross_entropy()}, keras.optimizers.Adam, {"learning_rate": 0.01},
        {"accuracy": accuracy},
    )  # fmt: skip
    assert not trainer.uses_default_step
    n_batches = len(list(train.get_batchgen(seed=1)))
    means = trainer.train_epoch(train.get_batchgen(seed=1), 1)
    assert set(means) == {"CE", "l2", "accuracy"} and means["l2"] > 0
    assert int(trainer.batches_run.numpy()) == n_batches
    traces = trainer.steps.trace_count  # (a custom step's sums are made on its first trace)
    trainer.train(4, train, valid, val_score_key="accuracy")
    assert int(trainer.batches_run.numpy()) == 5 * n_batches  # the epoch above, then 4
    assert trainer.steps.trace_count == traces + 1  # no new training trace; one evaluation
    _, _, scores = trainer.predict(valid.get_batchgen())
    assert scores["accuracy"] > 0.85


@pytest.mark.filterwarnings("ignore:strategy=.mirrored. has one device")
def test_a_subclass_step_refuses_a_strategy():
    with pytest.raises(ValueError, match="PenaltyTrainer its own train_step"):
        PenaltyTrainer(mlp(), None, {"CE": cross_entropy()}, "adam", strategy="mirrored")
