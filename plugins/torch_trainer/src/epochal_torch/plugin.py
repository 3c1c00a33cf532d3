"""Entry point of `epochal-torch`: registers the backend ``"torch"`` without importing torch."""

from __future__ import annotations

from epochal import hookimpl
from epochal.plugins.hookspecs import Register


@hookimpl
def epochal_register_trainers(register: Register) -> None:
    register("torch", "epochal_torch.trainer:PyTorchNetworkTrainer")
