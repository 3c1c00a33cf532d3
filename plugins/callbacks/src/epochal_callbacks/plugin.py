"""Entry point of `epochal-callbacks`: every callback registered by name, lazily.

The names are what configs look up. The LR schedulers are the backends' own (epochal-torch
registers ``torch_lr_scheduler``, epochal-tf the ``tf_*`` rules): this package needs no framework.
"""

from __future__ import annotations

from typing import Any

from epochal import hookimpl
from epochal.plugins.hookspecs import Register

#: name -> "module:attr"; nothing is imported until a name is used.
CALLBACKS = {
    "early_stopping": "epochal_callbacks.early_stopping:EarlyStopping",
    "csv_logger": "epochal_callbacks.csv_logger:CSVLogger",
    "timer": "epochal_callbacks.timer:Timer",
    "progress_bar": "epochal_callbacks.progress:ProgressBar",
    "tensorboard": "epochal_callbacks.tensorboard:TensorBoardLogger",
    "learning_curves": "epochal_callbacks.plots:LearningCurvePlot",
}


@hookimpl
def epochal_register_callbacks(register: Register) -> None:
    for name, target in CALLBACKS.items():
        register(name, target)


#: The callbacks of the default job (``epochal train`` without a config), with their parameters.
DEFAULT_JOB_CALLBACKS: dict[str, dict[str, Any]] = {
    "progress_bar": {"lines": True},
    "csv_logger": {},  # metrics.csv
    "tensorboard": {},  # tensorboard --logdir <run folder>
    "learning_curves": {},  # curves.png
}


@hookimpl
def epochal_register_default_job(job: dict[str, Any]) -> None:
    callbacks = job.setdefault("callbacks", {})
    for name, params in DEFAULT_JOB_CALLBACKS.items():
        callbacks.setdefault(name, dict(params))
