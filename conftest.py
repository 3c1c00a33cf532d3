"""Fixtures shared by every package's tests: digits data and the numpy example trainer."""

from __future__ import annotations

import pytest

from epochal.data import DataManager, RandomSampler
from epochal.registry import get_dataset
from epochal_numpy.network import SoftmaxRegression
from epochal_numpy.trainer import NumpyNetworkTrainer


@pytest.fixture(scope="session")
def digits_split():
    dataset = get_dataset("digits")
    return dataset.train_test_split(test_size=0.2, random_state=0, stratify="label")


@pytest.fixture
def managers(digits_split):
    """``managers(workers=0, batch_size=64)`` -> (train, valid) DataManagers on digits."""

    def build(workers: int = 0, batch_size: int = 64, seed: int = 0):
        train, valid = digits_split
        return (
            DataManager(train, batch_size, workers, sampler_cls=RandomSampler, seed=seed),
            DataManager(valid, 128, 0),
        )

    return build


def _make_trainer(save_path=None, callbacks=None, lr=1.0, seed=0, **kwargs) -> NumpyNetworkTrainer:
    return NumpyNetworkTrainer(
        SoftmaxRegression(64, 10, seed=seed),
        save_path=save_path,
        lr=lr,
        callbacks=callbacks,
        **kwargs,
    )


@pytest.fixture
def make_trainer():
    """``make_trainer(save_path=None, callbacks=None, lr=1.0, seed=0)`` -> numpy trainer."""
    return _make_trainer
