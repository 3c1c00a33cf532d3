"""The example backend's own tests: its gradient. Checkpoints, resume, predict and the rest
every backend does: ``test_conformance.py`` (``epochal.testing.conformance``)."""

from __future__ import annotations

import numpy as np

from epochal_numpy.network import SoftmaxRegression, softmax_cross_entropy


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
