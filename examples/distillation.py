"""Knowledge distillation by overriding the trainer's step: a small student learns from a larger
teacher's softened predictions as well as from the labels (Hinton et al., 2015), on digits.

python examples/distillation.py --epochs 8

``SupervisedTrainer.train_step(data_dict)`` is the per-step extension point of both backends: a
subclass overrides it to change what one training batch does (distillation, GANs, several
optimizers) and returns ``(losses, metrics)``, each ``{name: the batch's value}``; the trainer
averages them over the epoch, reports them, and keeps everything else (validation, checkpoints,
callbacks, resume) as it is.
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
import torch.nn.functional as F

from epochal.data import DataManager
from epochal.plugins.registry import get_dataset
from epochal_torch import PyTorchNetworkTrainer
from epochal_torch.metrics import accuracy


def mlp(hidden: int) -> torch.nn.Module:
    """An MLP for the 8x8 digits (64 pixels, 10 classes)."""
    return torch.nn.Sequential(
        torch.nn.Linear(64, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 10)
    )


class DistillationTrainer(PyTorchNetworkTrainer):
    """Trains the student on ``(1 - alpha) * CE(labels) + alpha * T² * KL(teacher ‖ student)``
    at temperature ``T``; the teacher stays frozen. Reports both parts: ``CE`` and ``distill``.
    """

    def __init__(
        self,
        *args: Any,
        teacher: torch.nn.Module,
        temperature: float = 4.0,
        alpha: float = 0.7,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.teacher = teacher.to(self.input_device).eval().requires_grad_(False)
        self.temperature, self.alpha = temperature, alpha
        self.steps_taken = 0

    def train_step(self, data_dict: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        data, label = data_dict["data"], data_dict["label"]
        t = self.temperature
        with torch.no_grad():
            soft_targets = F.softmax(self.teacher(data) / t, dim=1)
        logits = self.train_module(data)
        hard = self.losses["CE"](logits, label)
        soft = F.kl_div(F.log_softmax(logits / t, dim=1), soft_targets, reduction="batchmean")
        total = (1 - self.alpha) * hard + self.alpha * t * t * soft
        optimizer = self.optimizers["default"]
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        self.steps_taken += 1
        with torch.no_grad():
            metrics = {name: fn(logits, label) for name, fn in self.metrics.items()}
        return {"CE": hard.detach(), "distill": soft.detach()}, metrics


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    digits = get_dataset("digits")
    train, val = digits.train_test_split(test_size=0.25, random_state=0, stratify="label")
    batches = DataManager(train, 32, 0, sampler_cls="random", seed=0)
    val_batches = DataManager(val, 256, 0)
    losses, metrics = {"CE": torch.nn.CrossEntropyLoss()}, {"accuracy": accuracy}
    teacher = PyTorchNetworkTrainer(
        mlp(256), None, losses, torch.optim.Adam, {"lr": 3e-3}, metrics
    ).train(args.epochs, batches, val_batches, val_score_key="accuracy")
    student = DistillationTrainer(
        mlp(16), None, losses, torch.optim.Adam, {"lr": 3e-3}, metrics, teacher=teacher
    )
    student.train(args.epochs, batches, val_batches, val_score_key="accuracy")
    _, _, scores = student.predict(val_batches.get_batchgen())
    print(f"student ({student.steps_taken} distillation steps): val accuracy "
          f"{scores['accuracy']:.4f}, best epoch {student.best_epoch}")  # fmt: skip
    return scores


if __name__ == "__main__":
    main()
