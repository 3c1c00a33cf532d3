"""The backend conformance suite (``epochal.testing.conformance``) run against this backend."""

from __future__ import annotations

from epochal.testing.conformance import *  # noqa: F403  (the suite's tests and fixtures)
from epochal.testing.conformance import conformance_backend
from epochal_numpy.network import SoftmaxRegression
from epochal_numpy.trainer import NumpyNetworkTrainer


def make_trainer(save_path=None, *, seed=0, network="default", lr=0.5, **kwargs):
    """Softmax regression on the 64 digit pixels; "other" reads 32 features (other shapes)."""
    features = 32 if network == "other" else 64
    return NumpyNetworkTrainer(SoftmaxRegression(features, 10, seed=seed), save_path, lr, **kwargs)


epochal_backend = conformance_backend(
    "numpy",
    make_trainer,
    unstable={"lr": 5.0},
    distribution="epochal-numpy-example",
    random_state=False,  # plain SGD on batches in the given order: nothing random to restore
)
