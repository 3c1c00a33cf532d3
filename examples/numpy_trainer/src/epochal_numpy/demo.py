"""``epochal numpy-demo``: the plugin's command, training through the core loop."""

from __future__ import annotations

import click

from epochal.data import DataManager, RandomSampler
from epochal.plugins.registry import get_dataset, get_trainer
from epochal_numpy.network import SoftmaxRegression


class _EpochLine:
    """Prints one line per epoch."""

    def at_epoch_begin(self, trainer, **kwargs):
        return {}

    def at_epoch_end(self, trainer, epoch, num_epochs, metrics_train, metrics_val, **kwargs):
        train = " ".join(f"{k}={v:.4f}" for k, v in sorted(metrics_train.items()))
        val = " ".join(f"{k}={v:.4f}" for k, v in sorted(metrics_val.items()))
        click.echo(f"epoch {epoch}/{num_epochs}  {train}  {val}")
        return {}


def run_demo(epochs: int, batch_size: int, lr: float, workers: int, seed: int) -> float:
    dataset = get_dataset("digits")
    train, val = dataset.train_test_split(test_size=0.2, random_state=seed, stratify="label")
    trainer = get_trainer("numpy")(
        SoftmaxRegression(64, 10, seed=seed), lr=lr, callbacks=[_EpochLine()]
    )
    trainer.train(
        epochs,
        DataManager(train, batch_size, workers, sampler_cls=RandomSampler, seed=seed),
        DataManager(val, 256, 0),
        val_score_key="accuracy",
        val_score_mode="highest",
    )
    click.echo(f"best val_accuracy {trainer.best_val_score:.4f} at epoch {trainer.best_epoch}")
    return trainer.best_val_score
