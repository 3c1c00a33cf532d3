"""Optimizers and mixed precision (Keras dtype policies) for the trainer.

Mixed precision is scoped to the trainer's network: each of its layers gets the policy
(``mixed_bfloat16`` on the CPU, ``mixed_float16`` on a GPU) through ``layer.dtype_policy``;
``keras.config.set_dtype_policy`` is never called, so models built elsewhere in the process
keep the global policy. Variables stay float32 (the policies' variable dtype); float16 adds
loss scaling by wrapping each optimizer in ``keras.optimizers.LossScaleOptimizer``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from epochal.loop.supervised import MixedPrecisionArgs
from epochal_tf._tf import keras

__all__ = [
    "PRECISION_OPTIONS",
    "MixedPrecision",
    "build_optimizers",
    "create_optims_default_tf",
    "resolve_optimizer_cls",
    "scheduler_callback",
]

#: ``mixed_precision_kwargs`` of Keras's own, besides ``dtype`` and ``enabled`` (parsed by
#: :class:`epochal.loop.supervised.MixedPrecisionArgs`), with their defaults.
PRECISION_OPTIONS: Mapping[str, float] = MappingProxyType(
    {"initial_scale": 2.0**15, "dynamic_growth_steps": 2000}
)


def resolve_optimizer_cls(optimizer_cls: Any) -> Any:
    """A Keras optimizer class, or a name such as ``"adam"`` / ``"SGD"``."""
    if isinstance(optimizer_cls, str):
        try:
            return type(keras.optimizers.get(optimizer_cls))
        except ValueError as exc:
            raise ValueError(
                f"optimizer_cls {optimizer_cls!r} is not a Keras optimizer name; use e.g. "
                "'adam', 'sgd' or a class such as keras.optimizers.Adam"
            ) from exc
    return optimizer_cls


def create_optims_default_tf(
    network: keras.Model, optim_cls: type[keras.optimizers.Optimizer], **optim_params: Any
) -> dict[str, keras.optimizers.Optimizer]:
    """``{"default": optim_cls(**optim_params)}`` (delira's default), built on the network's
    trainable variables when the network is built (so its state can be restored).

    ``lr`` is taken as ``learning_rate`` (torch's and Keras 2's name), so one config's
    ``optimizer_params = {lr = ...}`` serves both backends.
    """
    if "lr" in optim_params:
        if "learning_rate" in optim_params:
            raise ValueError("optimizer_params has both 'lr' and 'learning_rate': give one")
        optim_params["learning_rate"] = optim_params.pop("lr")
    optimizer = resolve_optimizer_cls(optim_cls)(**optim_params)
    if network.built:
        optimizer.build(network.trainable_variables)
    return {"default": optimizer}


def build_optimizers(optimizers: Mapping[str, Any], network: keras.Model) -> None:
    """Build the default optimizer once the network has variables (a lazily built model)."""
    optimizer = optimizers.get("default")
    if optimizer is not None and not optimizer.built:
        optimizer.build(network.trainable_variables)


@dataclass(frozen=True)
class MixedPrecision:
    """Resolved mixed-precision settings for one trainer."""

    enabled: bool
    policy: str = "float32"
    initial_scale: float = 2.0**15
    dynamic_growth_steps: int = 2000

    @property
    def uses_loss_scaling(self) -> bool:
        """float16 needs loss scaling; bfloat16 has float32's range and does not."""
        return self.enabled and self.policy == "mixed_float16"

    @classmethod
    def from_args(cls, args: MixedPrecisionArgs, on_gpu: bool) -> MixedPrecision:
        """The settings for the device (no dtype given: float16 on a GPU, bfloat16 on the CPU)."""
        dtype = args.dtype or ("float16" if on_gpu else "bfloat16")
        return cls(
            enabled=args.enabled,
            policy=f"mixed_{dtype}" if args.enabled else "float32",
            initial_scale=args.options.get("initial_scale", 2.0**15),
            dynamic_growth_steps=int(args.options.get("dynamic_growth_steps", 2000)),
        )

    def apply_to(self, network: keras.Model) -> None:
        """Give every float layer of ``network`` this policy (the global policy is untouched)."""
        if not self.enabled:
            return
        for layer in network._flatten_layers(include_self=True, recursive=True):
            policy = layer.dtype_policy
            if policy.quantization_mode is not None or not policy.compute_dtype.startswith("float"):
                continue  # quantized and integer (preprocessing) layers keep theirs
            layer.dtype_policy = self.policy

    def wrap(self, optimizers: dict[str, Any]) -> dict[str, Any]:
        """float16: each optimizer in a ``LossScaleOptimizer`` (unless it already is one)."""
        if not self.uses_loss_scaling:
            return optimizers
        wrapped = {}
        for name, optimizer in optimizers.items():
            if not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
                built = optimizer.built
                optimizer = keras.optimizers.LossScaleOptimizer(
                    optimizer,
                    initial_scale=self.initial_scale,
                    dynamic_growth_steps=self.dynamic_growth_steps,
                )
                if built:
                    optimizer.build(optimizer.inner_optimizer._trainable_variables)
            wrapped[name] = optimizer
        return wrapped


def scheduler_callback(scheduler_cls: Any, params: dict[str, Any]) -> object:
    """delira's ``lr_scheduler_cls``: served by the Keras epoch rules (:mod:`.schedulers`)."""
    from epochal.errors import UnknownNameError
    from epochal.plugins.registry import get_callback

    if isinstance(scheduler_cls, str):
        from epochal_tf import schedulers as rules

        name = scheduler_cls
        scheduler_cls = getattr(rules, name, None) if name in rules.__all__ else None
        for candidate in (name, f"tf_{name}"):
            if scheduler_cls is not None:
                break
            try:
                scheduler_cls = get_callback(candidate)
            except UnknownNameError:
                continue
        if scheduler_cls is None:
            raise ValueError(
                f"lr_scheduler_cls {name!r} is unknown: use one of {rules.__all__[1:]} or their "
                "registered names ('tf_step_decay', ...)"
            )
    if not callable(scheduler_cls):
        raise TypeError(f"lr_scheduler_cls must be a class or a name, got {scheduler_cls!r}")
    return scheduler_cls(**params)
