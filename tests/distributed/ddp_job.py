"""A training through the Python API, the same in one process and under torchrun: what the
distributed tests compare. ``python ddp_job.py OUT BATCH [key=value ...]``; under torchrun
each rank takes BATCH samples a step and rank 0 writes OUT (weights and metrics, .npz)."""

import os
import sys

import numpy as np
import torch

from epochal.data import DataManager
from epochal.data.digits import load_digits
from epochal_torch import PyTorchNetworkTrainer
from epochal_torch.metrics import accuracy
from epochal_torch.models import MLP


def main(out: str, batch_size: int, **options: str) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    data = load_digits()
    train = data.get_subset(range(1280))  # 20 global batches of 64: no partial step
    valid = data.get_subset(range(1280, 1597))
    mixed = options.get("amp") == "1"
    gpu = options.get("gpu") == "1"  # every rank on GPU 0, all-reduced by gloo (one GPU)
    ranks = int(os.environ.get("WORLD_SIZE", "1"))
    devices = {"gpu_ids": [0] * ranks, "dist_backend": "gloo"} if gpu else {}
    trainer = PyTorchNetworkTrainer(
        MLP(in_features=64, hidden=(32,), num_classes=10),
        None,
        criterions={"CE": torch.nn.CrossEntropyLoss()},
        optimizer_cls=torch.optim.SGD,
        optimizer_params={"lr": 0.05, "momentum": 0.9},
        metrics={"accuracy": accuracy},
        mixed_precision=mixed,
        **devices,
    )
    history = []
    trainer.register_callback(_Record(history))
    trainer.train(
        int(options.get("epochs", 3)),
        DataManager(train, batch_size, 0, sampler_cls="random", seed=7),
        DataManager(valid, 100, 0),
        val_score_key="accuracy",
    )
    if trainer.is_main_process:
        weights = {k: v.float().cpu().numpy() for k, v in trainer.module.state_dict().items()}
        np.savez(out, history=np.array(history), world=trainer.collective.world_size, **weights)


class _Record:
    def __init__(self, history):
        self.history = history

    def at_epoch_begin(self, trainer, **kwargs):
        return {}

    def at_epoch_end(self, trainer, metrics_train, metrics_val, **kwargs):
        self.history.append(
            [
                metrics_train["CE"],
                metrics_train["accuracy"],
                metrics_val["val_CE"],
                metrics_val["val_accuracy"],
            ]
        )
        return {}


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), **dict(arg.split("=", 1) for arg in sys.argv[3:]))
