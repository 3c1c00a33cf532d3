"""The example backend's own tests: gradient, checkpoints, predict."""

from __future__ import annotations

import numpy as np
import pytest

from epochal_numpy.network import SoftmaxRegression, softmax_cross_entropy
from epochal_numpy.trainer import NumpyNetworkTrainer


def test_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    data, labels = rng.normal(size=(8, 5)), rng.integers(0, 3, size=8)
    network = SoftmaxRegression(5, 3, seed=1)
    _, probs = softmax_cross_entropy(network(data), labels)
    probs[np.arange(8), labels] -= 1.0
    analytic = data.T @ probs / 8
    numeric = np.zeros_like(network.weight)
    for index in np.ndindex(network.weight.shape):
        for sign in (1, -1):
            network.weight[index] += sign * 1e-6
            loss = softmax_cross_entropy(network(data), labels)[0].mean()
            network.weight[index] -= sign * 1e-6
            numeric[index] += sign * loss / 2e-6
    np.testing.assert_allclose(analytic, numeric, atol=1e-6)


def test_checkpoint_round_trip_and_atomicity(tmp_path):
    trainer = NumpyNetworkTrainer(SoftmaxRegression(4, 2, seed=3), save_path=tmp_path)
    path = trainer.save_state(str(tmp_path / "checkpoint_last"), epoch=7)
    assert path.endswith(".npz") and sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint_last.npz"
    ]  # no temporary file left behind
    state = NumpyNetworkTrainer.load_state(str(tmp_path / "checkpoint_last"))
    assert state["epoch"] == 7
    other = NumpyNetworkTrainer(SoftmaxRegression(4, 2, seed=4))
    other._update_state(state)
    np.testing.assert_array_equal(other.module.weight, trainer.module.weight)
    assert other.start_epoch == 8


def test_checkpoint_of_another_shape_is_refused(tmp_path):
    NumpyNetworkTrainer(SoftmaxRegression(4, 2)).save_state(str(tmp_path / "small"), epoch=1)
    state = NumpyNetworkTrainer.load_state(str(tmp_path / "small"))
    with pytest.raises(ValueError, match=r"checkpoint holds weight \(4, 2\).*network has \(6, 2\)"):
        NumpyNetworkTrainer(SoftmaxRegression(6, 2))._update_state(state)


def test_predict_stacks_batches_up_to_batch_size():
    trainer = NumpyNetworkTrainer(SoftmaxRegression(3, 2, seed=0))
    batches = [
        {"data": np.full((2, 3), i, np.float32), "label": np.array([0, 1])} for i in range(5)
    ]
    predictions, labels, metrics = trainer.predict(batches, batch_size=4)
    assert predictions.shape == (10, 2) and labels[0].tolist() == [0, 1] * 5
    assert set(metrics) == {"CE", "accuracy"}
    unstacked = trainer.predict(batches)[0]
    np.testing.assert_allclose(predictions, unstacked)
