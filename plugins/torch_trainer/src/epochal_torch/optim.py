"""Optimizers and mixed precision (``torch.amp``) for the trainer.

delira's closures call ``optimizers["default"].scale_loss(loss)`` (apex's API) and
``optimizer.step()``; :func:`attach_amp` gives every optimizer a ``scale_loss`` and, when a
float16 ``GradScaler`` is active, routes ``step()`` through it, so those closures run unchanged
with and without AMP. Optimizers stay real ``torch.optim.Optimizer`` objects (LR schedulers
require that).
"""

from __future__ import annotations

import types
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import torch

from epochal.loop.supervised import MixedPrecisionArgs

__all__ = ["AMP_OPTIONS", "AmpConfig", "attach_amp", "create_optims_default_pytorch"]

#: ``mixed_precision_kwargs`` of torch's own, besides ``dtype`` and ``enabled`` (parsed by
#: :class:`epochal.loop.supervised.MixedPrecisionArgs`), with their defaults.
AMP_OPTIONS: Mapping[str, float] = MappingProxyType(
    {"init_scale": 2.0**16, "growth_interval": 2000}
)


def create_optims_default_pytorch(
    network: torch.nn.Module, optim_cls: type[torch.optim.Optimizer], **optim_params: Any
) -> dict[str, torch.optim.Optimizer]:
    """``{"default": optim_cls(network.parameters(), **optim_params)}`` (delira's default)."""
    return {"default": optim_cls(network.parameters(), **optim_params)}


@dataclass(frozen=True)
class AmpConfig:
    """Resolved mixed-precision settings for one trainer."""

    enabled: bool
    device_type: str
    dtype: torch.dtype
    init_scale: float = 2.0**16
    growth_interval: int = 2000

    @property
    def uses_scaler(self) -> bool:
        """float16 needs loss scaling; bfloat16 has float32's range and does not."""
        return self.enabled and self.dtype == torch.float16

    @classmethod
    def from_args(cls, args: MixedPrecisionArgs, device: torch.device) -> AmpConfig:
        """The settings for ``device`` (no dtype given: float16 on CUDA, bfloat16 elsewhere)."""
        dtype = args.dtype or ("float16" if device.type == "cuda" else "bfloat16")
        return cls(
            enabled=args.enabled,
            device_type=device.type,
            dtype=getattr(torch, dtype),
            init_scale=args.options.get("init_scale", 2.0**16),
            growth_interval=int(args.options.get("growth_interval", 2000)),
        )

    def autocast(self) -> torch.autocast:
        return torch.autocast(self.device_type, dtype=self.dtype, enabled=self.enabled)

    def make_scaler(self) -> torch.amp.GradScaler | None:
        if not self.uses_scaler:
            return None
        return torch.amp.GradScaler(
            self.device_type, init_scale=self.init_scale, growth_interval=self.growth_interval
        )


def attach_amp(optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None) -> None:
    """Give ``optimizer`` delira's ``scale_loss`` and, with a scaler, a scaler-aware ``step``."""

    @contextmanager
    def scale_loss(self: torch.optim.Optimizer, loss: torch.Tensor) -> Iterator[torch.Tensor]:
        yield loss if scaler is None else scaler.scale(loss)

    optimizer.scale_loss = types.MethodType(scale_loss, optimizer)  # type: ignore[attr-defined]
    if scaler is None:
        return
    plain_step = optimizer.step

    def step(self: torch.optim.Optimizer, *args: Any, **kwargs: Any) -> Any:
        # GradScaler.step calls optimizer.step() itself: that inner call must be the real one.
        if getattr(self, "_epochal_in_scaler", False):
            return plain_step(*args, **kwargs)
        self._epochal_in_scaler = True  # type: ignore[attr-defined]
        try:
            return scaler.step(self, *args, **kwargs)
        finally:
            self._epochal_in_scaler = False  # type: ignore[attr-defined]

    optimizer.step = types.MethodType(step, optimizer)  # type: ignore[method-assign]
