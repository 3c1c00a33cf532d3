"""Entry point of `epochal-torch`: the backend ``"torch"`` and its LR scheduler callback,
registered by name without importing torch."""

from __future__ import annotations

from epochal import hookimpl
from epochal.plugins.hookspecs import Register

#: name -> "module:attr" of the callbacks this backend brings (configs' ``[callbacks]`` names).
CALLBACKS = {"torch_lr_scheduler": "epochal_torch.schedulers:TorchLRScheduler"}


@hookimpl
def epochal_register_trainers(register: Register) -> None:
    register("torch", "epochal_torch.trainer:PyTorchNetworkTrainer")


@hookimpl
def epochal_register_callbacks(register: Register) -> None:
    for name, target in CALLBACKS.items():
        register(name, target)
