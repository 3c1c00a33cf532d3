"""SupervisedTrainer: delira's supervised trainer, written once for every framework.

A backend's trainer (``PyTorchNetworkTrainer``, ``TfNetworkTrainer``) subclasses
:class:`SupervisedTrainer` and declares only what differs: the name of the losses argument
(``criterions`` or ``losses``), its own parameters (:attr:`SupervisedTrainer.options_type`), the
default ``optim_fn``, and the framework primitives of :class:`epochal.loop.backend.TrainingBackend`
(place the network, build optimizers, one evaluation step, read values from the device...).
Everything else is here, once: delira's constructor and its checks, the parsing of
``mixed_precision_kwargs``, the custom-closure detection, the LR-scheduler hook-up, and
``predict``'s batching and sample-weighted means.

The per-step extension point is :meth:`SupervisedTrainer.train_step`: a subclass overrides it to
change what one training batch does (distillation, GANs, several optimizers), and both backends'
epochs call it (torch in its general loop, TensorFlow inside the compiled step).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from typing import Any

__all__ = ["APEX_KEYS", "MixedPrecisionArgs"]

#: delira's apex options: accepted with a warning (epochal uses the framework's own AMP).
APEX_KEYS = frozenset({"allow_banned", "enable_caching", "verbose", "opt_level"})
_DTYPES = {"float16": "float16", "half": "float16", "bfloat16": "bfloat16"}


@dataclasses.dataclass(frozen=True)
class MixedPrecisionArgs:
    """``mixed_precision`` and ``mixed_precision_kwargs``, checked and resolved: what a backend
    builds its framework objects from (autocast and a GradScaler, Keras dtype policies).

    Attributes:
        enabled: whether to compute in 16 bits.
        dtype: ``"float16"`` or ``"bfloat16"``; ``None`` when not given (the backend picks by
            device: float16 on a GPU, bfloat16 on the CPU).
        options: the backend's own options (e.g. ``init_scale``), defaults filled in.
    """

    enabled: bool
    dtype: str | None
    options: Mapping[str, float]

    @classmethod
    def parse(
        cls,
        mixed_precision: bool,
        kwargs: Mapping[str, Any] | None,
        options: Mapping[str, float],
        owner: str = "epochal",
    ) -> MixedPrecisionArgs:
        """Check ``kwargs`` against ``dtype``, ``enabled`` and ``options`` (name -> default,
        whose type each value is converted to); apex's keys warn and are ignored, others raise
        ``ValueError`` naming the allowed keys. ``owner`` names the trainer in the warning."""
        kwargs = dict(kwargs or {})
        allowed = sorted({"dtype", "enabled", *options})
        apex = sorted(APEX_KEYS & set(kwargs))
        if apex:
            warnings.warn(
                f"mixed_precision_kwargs {apex} are apex options (delira's PyTorch trainer); "
                f"{owner} uses its framework's mixed precision and ignores them. Its options "
                f"are {allowed}.",
                UserWarning,
                stacklevel=4,
            )
        unknown = sorted(set(kwargs) - APEX_KEYS - set(allowed))
        if unknown:
            raise ValueError(f"unknown mixed_precision_kwargs {unknown}; allowed: {allowed}")
        dtype = kwargs.get("dtype")
        if dtype is not None:
            # "float16", "torch.float16", torch.float16, tf.float16, "mixed_float16", "half"
            name = dtype if isinstance(dtype, str) else getattr(dtype, "name", None) or str(dtype)
            name = name.removeprefix("torch.").removeprefix("tf.").removeprefix("mixed_")
            if name not in _DTYPES:
                raise ValueError(
                    f"mixed_precision_kwargs dtype {dtype!r} is not supported: use 'float16' or "
                    "'bfloat16'"
                )
            dtype = _DTYPES[name]
        return cls(
            enabled=bool(mixed_precision) and bool(kwargs.get("enabled", True)),
            dtype=dtype,
            options={
                key: type(default)(kwargs.get(key, default)) for key, default in options.items()
            },
        )
