"""TF's own checkpoint format: what it holds, pickled objects refused, exact error wording,
the Keras random state. Files, resume, the best model, refusals every backend shares:
``test_conformance.py`` (``epochal.testing.conformance``)."""

from __future__ import annotations

import numpy as np
import pytest

from epochal_tf._tf import keras
from epochal_tf.io import CheckpointError
from epochal_tf.trainer import TfNetworkTrainer


def test_checkpoint_contents(tf_trainer, tmp_path):
    trainer = tf_trainer()
    state = TfNetworkTrainer.load_state(trainer.save_state(str(tmp_path / "c"), epoch=1))
    assert set(state) >= {"model", "optimizers", "rng", "callbacks", "best_epoch"}
    assert set(state["rng"]) == {"numpy", "numpy_keys", "python"} | (
        {"keras_global"} & set(state["rng"])
    )
    adam = trainer.optimizers["default"]
    assert len(state["optimizers"]["default"]) == len(adam.variables)


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
