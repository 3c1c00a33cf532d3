"""Fixtures for the torch trainer's tests: small real networks on digits."""

from __future__ import annotations

import pytest
import torch

from epochal_torch.trainer import PyTorchNetworkTrainer


def accuracy(predictions: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return (predictions.argmax(1) == labels).float().mean()


def mlp(dropout: float = 0.0) -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Dropout(dropout), torch.nn.Linear(32, 10)
    )


@pytest.fixture
def torch_trainer():
    """``torch_trainer(network=None, save_path=None, **kwargs)`` -> a trainer on an MLP."""

    def build(network=None, save_path=None, seed=0, **kwargs):
        torch.manual_seed(seed)
        kwargs.setdefault("optimizer_cls", torch.optim.Adam)
        kwargs.setdefault("optimizer_params", {"lr": 0.01})
        kwargs.setdefault("metrics", {"accuracy": accuracy})
        return PyTorchNetworkTrainer(
            network if network is not None else mlp(),
            save_path,
            {"CE": torch.nn.CrossEntropyLoss()},
            **kwargs,
        )

    return build


@pytest.fixture
def make_mlp():
    """``make_mlp(dropout=0.0)`` -> the 64-32-10 MLP."""
    return mlp
