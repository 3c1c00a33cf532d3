"""The Python API, without a config file: a PyTorch experiment on digits, then a test.

python examples/train_api.py --epochs 10
torchrun --standalone --nproc-per-node 2 examples/train_api.py    # the same with DDP
"""

from __future__ import annotations

import argparse

import torch

from epochal.data import DataManager
from epochal.job.params import Parameters
from epochal.plugins.registry import get_dataset
from epochal.runs.experiment import Experiment


class Net(torch.nn.Module):
    """Your own network: any torch.nn.Module that maps batch["data"] to logits."""

    def __init__(self, hidden: int = 64) -> None:
        super().__init__()
        self.layers = torch.nn.Sequential(
            torch.nn.Linear(64, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 10)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--save-path", default="runs")
    args = parser.parse_args()

    params = Parameters(
        fixed_params={
            "model": {"hidden": 64},
            "training": {
                "num_epochs": args.epochs,
                "optimizer_cls": torch.optim.Adam,  # objects or names ("Adam") both work
                "optimizer_params": {"lr": 0.003},
                "losses": {"CE": torch.nn.CrossEntropyLoss()},
                "metrics": {"accuracy": "accuracy"},
            },
        }
    )
    digits = get_dataset("digits")
    train_val, test = digits.train_test_split(test_size=0.2, random_state=0, stratify="label")
    train, val = train_val.train_test_split(test_size=0.2, random_state=0, stratify="label")

    experiment = Experiment(
        params, Net, name="api-example", save_path=args.save_path, val_score_key="accuracy",
        backend="torch", seed=0,
    )  # fmt: skip
    network = experiment.run(
        DataManager(train, 32, 0, sampler_cls="random", seed=0), DataManager(val, 256, 0)
    )
    run = experiment.last_run
    if not run.trainer.is_main_process:  # under torchrun: rank 0 reports
        return
    print(f"best val_accuracy {run.best_val_score:.4f} at epoch {run.best_epoch}")
    print(f"run folder: {run.run_dir}")
    _, _, scores = experiment.test(network, test, {"accuracy": "accuracy"})
    print(f"test accuracy {scores['accuracy']:.4f} on {len(test)} held-out digits")


if __name__ == "__main__":
    main()
