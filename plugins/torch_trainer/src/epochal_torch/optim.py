"""Optimizers and mixed precision (``torch.amp``) for the trainer.

delira's closures call ``optimizers["default"].scale_loss(loss)`` (apex's API) and
``optimizer.step()``; :func:`attach_amp` gives every optimizer a ``scale_loss`` and, when a
float16 ``GradScaler`` is active, routes ``step()`` through it, so those closures run unchanged
with and without AMP. Optimizers stay real ``torch.optim.Optimizer`` objects (LR schedulers
require that).
"""

from __future__ import annotations

import types
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["AmpConfig", "attach_amp", "create_optims_default_pytorch"]

_APEX_KEYS = frozenset({"allow_banned", "enable_caching", "verbose", "opt_level"})
_AMP_KEYS = frozenset({"dtype", "init_scale", "growth_interval", "enabled"})
_DTYPES = {"float16": torch.float16, "half": torch.float16, "bfloat16": torch.bfloat16}


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
    def from_kwargs(
        cls, mixed_precision: bool, kwargs: Mapping[str, Any] | None, device: torch.device
    ) -> AmpConfig:
        kwargs = dict(kwargs or {})
        apex = sorted(_APEX_KEYS & set(kwargs))
        if apex:
            warnings.warn(
                f"mixed_precision_kwargs {apex} are apex options (delira); epochal uses torch.amp "
                f"and ignores them. Its options are {sorted(_AMP_KEYS)}.",
                UserWarning,
                stacklevel=3,
            )
        unknown = sorted(set(kwargs) - _APEX_KEYS - _AMP_KEYS)
        if unknown:
            raise ValueError(
                f"unknown mixed_precision_kwargs {unknown}; allowed: {sorted(_AMP_KEYS)}"
            )
        device_type = device.type
        default_dtype = torch.float16 if device_type == "cuda" else torch.bfloat16
        dtype = kwargs.get("dtype", default_dtype)
        if isinstance(dtype, str):
            if dtype.removeprefix("torch.") not in _DTYPES:
                raise ValueError(
                    f"mixed_precision_kwargs dtype {dtype!r} is not supported: use 'float16' or "
                    "'bfloat16'"
                )
            dtype = _DTYPES[dtype.removeprefix("torch.")]
        if dtype not in (torch.float16, torch.bfloat16):
            raise ValueError(f"mixed precision dtype must be float16 or bfloat16, got {dtype}")
        return cls(
            enabled=bool(mixed_precision) and bool(kwargs.get("enabled", True)),
            device_type=device_type,
            dtype=dtype,
            init_scale=float(kwargs.get("init_scale", 2.0**16)),
            growth_interval=int(kwargs.get("growth_interval", 2000)),
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
