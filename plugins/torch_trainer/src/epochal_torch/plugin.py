"""Entry point of `epochal-torch`: the backend ``"torch"`` and its LR scheduler callback,
registered by name without importing torch."""

from __future__ import annotations

from typing import Any

from epochal import hookimpl
from epochal.plugins.hookspecs import Register


@hookimpl
def epochal_register_trainers(register: Register) -> None:
    register("torch", "epochal_torch.trainer:PyTorchNetworkTrainer")


@hookimpl
def epochal_register_callbacks(register: Register) -> None:
    # The LR scheduler of delira's lr_scheduler_cls, also for configs' [callbacks] tables.
    register("torch_lr_scheduler", "epochal_torch.schedulers:TorchLRScheduler")


@hookimpl(tryfirst=True)  # the default job prefers this backend when it is installed
def epochal_register_default_job(job: dict[str, Any]) -> None:
    job.setdefault("experiment", {}).setdefault("backend", "torch")
