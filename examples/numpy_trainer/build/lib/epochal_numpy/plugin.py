"""The entry point epochal loads: registrations only, nothing heavy imported."""

from __future__ import annotations

import click

from epochal import hookimpl


@hookimpl
def epochal_register_trainers(register):
    register("numpy", "epochal_numpy.trainer:NumpyNetworkTrainer")


@hookimpl
def epochal_register_commands(cli: click.Group) -> None:
    @cli.command(name="numpy-demo")
    @click.option("--epochs", default=5, show_default=True, type=click.IntRange(min=1))
    @click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1))
    @click.option("--lr", default=1.0, show_default=True, type=float)
    @click.option("--workers", default=0, show_default=True, type=click.IntRange(min=0))
    @click.option("--seed", default=0, show_default=True, type=int)
    def numpy_demo(epochs: int, batch_size: int, lr: float, workers: int, seed: int) -> None:
        """Train softmax regression on digits with the numpy backend."""
        from epochal_numpy.demo import run_demo

        run_demo(epochs=epochs, batch_size=batch_size, lr=lr, workers=workers, seed=seed)
