"""The per-step extension point: a PyTorchNetworkTrainer subclass overrides ``train_step``
(``examples/distillation.py``: knowledge distillation) and trains through the general loop."""

from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path

import pytest
import torch

from epochal_torch import PyTorchNetworkTrainer

from .conftest import accuracy

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "distillation.py"


@pytest.fixture(scope="module")
def distillation():
    spec = importlib.util.spec_from_file_location("distillation_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_subclass_step_trains_and_learns(distillation, managers):
    torch.manual_seed(0)
    train, valid = managers(batch_size=32)
    ce, metrics = {"CE": torch.nn.CrossEntropyLoss()}, {"accuracy": accuracy}
    teacher = PyTorchNetworkTrainer(
        distillation.mlp(128), None, ce, torch.optim.Adam, {"lr": 3e-3}, metrics
    ).train(4, train, valid, val_score_key="accuracy")
    student = distillation.DistillationTrainer(
        distillation.mlp(16), None, ce, torch.optim.Adam, {"lr": 3e-3}, metrics, teacher=teacher
    )
    assert not student.uses_default_step  # so the fast path is not taken
    _, _, before = student.predict(valid.get_batchgen())
    epoch_means = student.train_epoch(train.get_batchgen(seed=1), 1)
    n_batches = len(list(train.get_batchgen(seed=1)))
    assert student.steps_taken == n_batches  # every batch went through the subclass's step
    assert set(epoch_means) == {"CE", "distill", "accuracy"}  # its own losses are reported
    student.train(4, train, valid, val_score_key="accuracy")
    _, _, after = student.predict(valid.get_batchgen())
    assert after["accuracy"] > 0.85 > before["accuracy"]  # it learned
    assert student.best_epoch is not None  # validation and best-model tracking as usual


def test_the_subclass_keeps_delira_signature_and_refuses_skip_batch(distillation):
    parameters = list(inspect.signature(distillation.DistillationTrainer).parameters)
    assert parameters[:3] == ["args", "teacher", "temperature"]
    own = list(inspect.signature(PyTorchNetworkTrainer).parameters)
    assert own[:4] == ["network", "save_path", "criterions", "optimizer_cls"]
    with pytest.raises(ValueError, match="DistillationTrainer overrides train_step"):
        distillation.DistillationTrainer(
            distillation.mlp(8),
            None,
            {"CE": torch.nn.CrossEntropyLoss()},
            torch.optim.SGD,
            on_nonfinite="skip_batch",
            teacher=distillation.mlp(8),
        )
