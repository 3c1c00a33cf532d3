"""The backend conformance suite (``epochal.testing.conformance``) run against ``torch``."""

from __future__ import annotations

import torch

from epochal.testing.conformance import *  # noqa: F403  (the suite's tests and fixtures)
from epochal.testing.conformance import conformance_backend
from epochal_torch.trainer import PyTorchNetworkTrainer


def accuracy(predictions: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return (predictions.argmax(1) == labels).float().mean()


def make_trainer(save_path=None, *, seed=0, network="default", **kwargs):
    """The 64-32-10 MLP (dropout 0.3 when "random", 16 hidden units when "other"), Adam."""
    torch.manual_seed(seed)
    hidden, dropout = (16 if network == "other" else 32), (0.3 if network == "random" else 0.0)
    mlp = torch.nn.Sequential(
        torch.nn.Linear(64, hidden),
        torch.nn.ReLU(),
        torch.nn.Dropout(dropout),
        torch.nn.Linear(hidden, 10),
    )
    kwargs.setdefault("optimizer_cls", torch.optim.Adam)
    kwargs.setdefault("optimizer_params", {"lr": 0.01})
    kwargs.setdefault("metrics", {"accuracy": accuracy})
    return PyTorchNetworkTrainer(mlp, save_path, {"CE": torch.nn.CrossEntropyLoss()}, **kwargs)


epochal_backend = conformance_backend(
    "torch",
    make_trainer,
    unstable={"optimizer_cls": torch.optim.SGD, "optimizer_params": {"lr": 3.0}},
    distribution="epochal-torch",
    # one criterion and no metric: the fast path, which stops at a bad batch on the CPU
    paths={"fast path": {"metrics": {}}, "general": {}},
)
