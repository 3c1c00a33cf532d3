"""Checkpoints: files, atomic writes, no pickle, bitwise resume, the best model."""

from __future__ import annotations

import os

import numpy as np
import pytest

from epochal import AbstractCallback
from epochal.errors import PluginError
from epochal_tf._tf import keras
from epochal_tf.io import CheckpointError
from epochal_tf.trainer import TfNetworkTrainer


def same_arrays(left: list, right: list) -> bool:
    return len(left) == len(right) and all(
        np.array_equal(a, b) for a, b in zip(left, right, strict=True)
    )


def test_checkpoint_files_and_contents(tf_trainer, managers, tmp_path):
    trainer = tf_trainer(save_path=tmp_path, save_freq=2)
    train, valid = managers()
    trainer.train(4, train, valid, val_score_key="accuracy")
    assert sorted(os.listdir(tmp_path)) == [
        "checkpoint_best.tf.npz",
        "checkpoint_epoch_2.tf.npz",
        "checkpoint_epoch_4.tf.npz",
        "checkpoint_last.tf.npz",
    ]  # and no temporary file left behind
    state = TfNetworkTrainer.load_state(str(tmp_path / "checkpoint_last"))
    assert state["epoch"] == 4 and state["best_val_score"] == trainer.best_val_score
    assert set(state) >= {"model", "optimizers", "rng", "callbacks", "best_epoch"}
    assert set(state["rng"]) == {"numpy", "numpy_keys", "python"} | (
        {"keras_global"} & set(state["rng"])
    )
    adam = trainer.optimizers["default"]
    assert len(state["optimizers"]["default"]) == len(adam.variables)


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_is_bitwise_equal_to_an_uninterrupted_run(
    tf_trainer, managers, make_mlp, tmp_path, workers
):
    def fresh(save_path, seed=1):
        keras.utils.set_random_seed(1)  # the same initial weights for both runs
        network = make_mlp(dropout=0.3)
        return tf_trainer(network, save_path=save_path, seed=seed)

    train, valid = managers(workers=workers)
    straight = fresh(tmp_path / "straight")  # dropout: the RNG state matters too
    straight.train(4, train, valid, val_score_key="accuracy")

    fresh(tmp_path / "resumed").train(2, train, valid, val_score_key="accuracy")
    keras.utils.set_random_seed(12345)  # a new process would not share the first run's RNG
    resumed = tf_trainer(make_mlp(dropout=0.3), save_path=tmp_path / "resumed", seed=99)
    resumed.update_state(str(tmp_path / "resumed" / "checkpoint_last"))
    assert resumed.start_epoch == 3
    resumed.train(4, train, valid, val_score_key="accuracy")

    last = {
        run: TfNetworkTrainer.load_state(str(tmp_path / run / "checkpoint_last"))
        for run in ("straight", "resumed")
    }
    assert same_arrays(last["resumed"]["model"], last["straight"]["model"])  # bit for bit
    assert same_arrays(
        last["resumed"]["optimizers"]["default"], last["straight"]["optimizers"]["default"]
    )
    assert (resumed.best_epoch, resumed.best_val_score) == (
        straight.best_epoch,
        straight.best_val_score,
    )
    assert same_arrays(  # the best epoch's weights, returned by both
        [v.numpy() for v in resumed.module.variables],
        [v.numpy() for v in straight.module.variables],
    )


def test_train_returns_the_best_epochs_weights(tf_trainer, managers, tmp_path):
    class Snapshot(AbstractCallback):
        def __init__(self):
            self.weights = {}

        def at_epoch_end(self, trainer, epoch, **kwargs):
            self.weights[epoch] = [v.numpy() for v in trainer.module.variables]

    for save_path in (tmp_path, None):  # from checkpoint_best, or from the copy in memory
        snapshot = Snapshot()
        # a learning rate so high that the validation loss jumps around: the best is not last
        trainer = tf_trainer(
            save_path=save_path,
            optimizer_cls="sgd",
            optimizer_params={"learning_rate": 3.0},
            callbacks=[snapshot],
        )
        train, valid = managers()
        network = trainer.train(6, train, valid, val_score_key="CE", val_score_mode="lowest")
        assert trainer.best_epoch is not None and trainer.best_epoch != 6, trainer.best_epoch
        weights = [v.numpy() for v in network.variables]
        assert same_arrays(weights, snapshot.weights[trainer.best_epoch])


def test_a_checkpoint_with_pickled_objects_is_refused(tmp_path):
    crafted = tmp_path / "crafted.tf.npz"
    np.savez(crafted, __state__=np.array("{}"), payload=np.array([object()], dtype=object))
    with pytest.raises(CheckpointError, match="was refused: it holds pickled objects"):
        TfNetworkTrainer.load_state(str(crafted))


def test_truncated_and_foreign_files(tf_trainer, tmp_path):
    path = tf_trainer().save_state(str(tmp_path / "good"), epoch=1)
    assert path.endswith("good.tf.npz")
    data = open(path, "rb").read()
    (tmp_path / "truncated.tf.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or not an epochal TF checkpoint"):
        TfNetworkTrainer.load_state(str(tmp_path / "truncated"))
    (tmp_path / "notes.tf.npz").write_text("these are my notes")
    with pytest.raises(CheckpointError, match=r"'.*notes\.tf\.npz' cannot be read"):
        TfNetworkTrainer.load_state(str(tmp_path / "notes.tf.npz"))
    np.savez(tmp_path / "foreign.npz", weights=np.zeros(2))
    with pytest.raises(CheckpointError, match="not an epochal TF checkpoint"):
        TfNetworkTrainer.load_state(str(tmp_path / "foreign.npz"))
    with pytest.raises(CheckpointError, match="does not exist"):
        TfNetworkTrainer.load_state(str(tmp_path / "missing"))


def test_another_architecture_names_the_mismatching_variables(tf_trainer, make_mlp, tmp_path):
    path = tf_trainer().save_state(str(tmp_path / "small"), epoch=1)
    other = tf_trainer(make_mlp(hidden=16))
    with pytest.raises(CheckpointError) as info:
        other.update_state(path)
    message = str(info.value)
    assert message.startswith(
        "the checkpoint does not fit this network (was it written for another architecture?): "
        "other shapes: "
    )
    assert "kernel (64, 32) in the checkpoint, (64, 16) here" in message
    assert "bias (32,) in the checkpoint, (16,) here" in message


def test_a_failed_write_keeps_the_previous_checkpoint(tf_trainer, tmp_path):
    class NotJson(AbstractCallback):
        def __init__(self):
            self.broken = False

        def state_dict(self):
            return {"callback": object() if self.broken else 1}

    callback = NotJson()
    trainer = tf_trainer(callbacks=[callback])
    path = trainer.save_state(str(tmp_path / "checkpoint_last"), epoch=1)
    before = open(path, "rb").read()
    callback.broken = True  # refused before the file is touched, naming the callback
    with pytest.raises(PluginError, match=r"'NotJson' .* at state\['callback'\]: object"):
        trainer.save_state(str(tmp_path / "checkpoint_last"), epoch=2)
    assert open(path, "rb").read() == before
    assert sorted(os.listdir(tmp_path)) == ["checkpoint_last.tf.npz"]  # no temporary file
    assert TfNetworkTrainer.load_state(path)["epoch"] == 1


def test_resume_restores_numpy_python_and_keras_random_states(tf_trainer, tmp_path):
    import random

    trainer = tf_trainer()
    keras.random.uniform((2,))  # creates the Keras global seed generator
    path = trainer.save_state(str(tmp_path / "state"), epoch=1)
    drawn = (np.random.rand(3), random.random(), keras.random.uniform((2,)).numpy())
    trainer.update_state(path)
    again = (np.random.rand(3), random.random(), keras.random.uniform((2,)).numpy())
    assert np.array_equal(drawn[0], again[0]) and drawn[1] == again[1]
    assert np.array_equal(drawn[2], again[2])
