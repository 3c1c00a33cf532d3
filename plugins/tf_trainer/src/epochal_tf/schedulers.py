"""Keras 3 LR scheduling: epoch rules that set each optimizer's learning rate at epoch begin.

Each rule is plain math, ``lr_at(epoch, base_lr) -> lr`` (epochs count from 1), so it can be read
and tested without a framework; only :class:`EpochRule`'s hooks touch Keras, by assigning
``optimizer.learning_rate`` (a variable: a compiled train step sees the new value without
retracing). The base rate is read from the optimizer when training begins and kept in the
checkpoint, so a resumed run does not decay an already decayed rate again.

An optimizer built with a ``keras.optimizers.schedules.LearningRateSchedule`` already sets its
rate every step; combining it with an epoch rule is refused with an error rather than one
silently overriding the other. Keras is imported only inside the hooks. Registered by
epochal-tf's plugin as ``tf_step_decay``, ``tf_cosine_decay``, ``tf_warmup`` and
``tf_reduce_on_plateau``, and used by the trainer's ``lr_scheduler_cls``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from epochal.loop.callbacks import (
    AbstractCallback,
    TrainerView,
    check_mode,
    improved,
    lookup_metric,
    same_optimizers,
    select_optimizers,
)

__all__ = ["CosineDecay", "EpochRule", "ReduceOnPlateau", "StepDecay", "WarmUp"]


def _positive_int(owner: str, name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{owner}: {name} must be an integer >= 1 (epochs), got {value!r}")
    return value


def _check_settable(owner: str, name: str, optimizer: Any) -> None:
    """Refuse what an epoch rule cannot or must not set: non-Keras optimizers and schedules."""
    import keras

    if not isinstance(optimizer, keras.optimizers.Optimizer):
        cls = type(optimizer)
        raise TypeError(
            f"{owner}: optimizer {name!r} is a {cls.__module__}.{cls.__qualname__}, not a Keras 3 "
            "optimizer; for torch optimizers use TorchLRScheduler ('torch_lr_scheduler')"
        )
    # The public property evaluates a schedule at the current step; the schedule itself is here.
    rate = getattr(optimizer, "_learning_rate", None)
    if isinstance(rate, keras.optimizers.schedules.LearningRateSchedule) or (
        callable(rate) and not isinstance(rate, keras.Variable)
    ):
        raise TypeError(
            f"{owner}: optimizer {name!r} takes its learning_rate from a schedule "
            f"({type(rate).__name__}) that sets the rate every step; {owner} would overwrite "
            f"it every epoch. Use one of the two: drop {owner}, or give the optimizer a float "
            "learning_rate."
        )


class EpochRule(AbstractCallback):
    """Base of the epoch rules: subclasses give the math, this class assigns it to Keras.

    Args:
        optimizer: the name of the optimizer in ``trainer.optimizers`` to schedule, or
            ``None``/``"all"`` for each of them (each keeps its own base rate).
    """

    def __init__(self, optimizer: str | None = "default") -> None:
        self.optimizer = optimizer
        self.base_lrs: dict[str, float] = {}
        self._optimizers: dict[str, Any] = {}
        self._state_loaded = False

    # -- the rule (framework-free) -----------------------------------------------------

    def lr_at(self, epoch: int, base_lr: float) -> float:
        """The learning rate for ``epoch`` (1-based) given the rate training began with."""
        raise NotImplementedError(f"{type(self).__name__} must implement lr_at")

    def observe(
        self, epoch: int, metrics_train: Mapping[str, Any], metrics_val: Mapping[str, Any]
    ) -> None:
        """Take in an epoch's metrics (rules that react to them override this)."""

    def rule_state(self) -> dict[str, Any]:
        """The rule's own state for checkpoints (plain numbers)."""
        return {}

    def load_rule_state(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`rule_state` returned."""

    def reset(self) -> None:
        """Forget the rule's state: a fresh run begins."""

    # -- hooks (Keras) -------------------------------------------------------------------

    def at_training_begin(self, trainer: TrainerView, **kwargs: Any) -> None:
        """Check the optimizers can be set and read their base rates (unless resumed)."""
        owner = type(self).__name__
        optimizers = select_optimizers(owner, trainer, self.optimizer)
        for name, optimizer in optimizers.items():
            _check_settable(owner, name, optimizer)
        if not self._state_loaded and not same_optimizers(self._optimizers, optimizers):
            # other optimizers and no checkpoint loaded: a new run, not a continued one
            self.base_lrs = {}
            self.reset()
        for name, optimizer in optimizers.items():
            if name not in self.base_lrs:  # a keras.Variable, checked above
                self.base_lrs[name] = float(optimizer.learning_rate)
        self._optimizers = optimizers
        self._state_loaded = False
        return None

    def at_epoch_begin(self, trainer: TrainerView, epoch: int, **kwargs: Any) -> None:
        """Assign this epoch's rate to each scheduled optimizer."""
        for name, optimizer in self._optimizers.items():
            optimizer.learning_rate = self.lr_at(epoch, self.base_lrs[name])
        return None

    def at_epoch_end(
        self,
        trainer: TrainerView,
        epoch: int,
        metrics_train: Mapping[str, Any] | None = None,
        metrics_val: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self.observe(epoch, metrics_train or {}, metrics_val or {})
        return None

    def state_dict(self) -> dict[str, Any]:
        """The base rates and the rule's state (plain numbers, JSON-safe)."""
        return {"base_lrs": dict(self.base_lrs), "rule": self.rule_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore; the base rates win over what the optimizer holds when training begins."""
        self.base_lrs = {name: float(rate) for name, rate in state.get("base_lrs", {}).items()}
        self.load_rule_state(state.get("rule") or {})
        self._state_loaded = True


class StepDecay(EpochRule):
    """``base_lr * gamma ** ((epoch - 1) // step_size)``: decay by ``gamma`` every ``step_size``."""

    def __init__(self, step_size: int, gamma: float = 0.1, optimizer: str | None = "default"):
        super().__init__(optimizer)
        self.step_size = _positive_int("StepDecay", "step_size", step_size)
        if not gamma > 0:
            raise ValueError(f"StepDecay: gamma must be > 0 (a factor), got {gamma!r}")
        self.gamma = float(gamma)

    def lr_at(self, epoch: int, base_lr: float) -> float:
        return base_lr * self.gamma ** ((epoch - 1) // self.step_size)


class CosineDecay(EpochRule):
    """Half a cosine from ``base_lr`` (epoch 1) to ``min_lr`` (epoch ``total_epochs + 1``).

    Like ``torch.optim.lr_scheduler.CosineAnnealingLR(T_max=total_epochs)`` stepped per epoch:
    the last epoch trains just above ``min_lr``; later epochs stay at ``min_lr``.
    """

    def __init__(self, total_epochs: int, min_lr: float = 0.0, optimizer: str | None = "default"):
        super().__init__(optimizer)
        self.total_epochs = _positive_int("CosineDecay", "total_epochs", total_epochs)
        if not min_lr >= 0:
            raise ValueError(f"CosineDecay: min_lr must be >= 0, got {min_lr!r}")
        self.min_lr = float(min_lr)

    def lr_at(self, epoch: int, base_lr: float) -> float:
        progress = min(epoch - 1, self.total_epochs) / self.total_epochs
        return self.min_lr + (base_lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


class WarmUp(EpochRule):
    """Linear warm-up, ``base_lr * epoch / warmup_epochs``, then ``then`` or the base rate.

    ``then`` is another rule (its ``optimizer`` is ignored); it counts epochs from the end of
    the warm-up, so ``WarmUp(5, then=CosineDecay(95))`` decays over epochs 6 to 100, and a
    ``ReduceOnPlateau`` there only watches epochs after the warm-up.
    """

    def __init__(
        self, warmup_epochs: int, then: EpochRule | None = None, optimizer: str | None = "default"
    ):
        super().__init__(optimizer)
        self.warmup_epochs = _positive_int("WarmUp", "warmup_epochs", warmup_epochs)
        if then is not None and not isinstance(then, EpochRule):
            raise TypeError(
                "WarmUp: then must be another epoch rule (StepDecay, CosineDecay, "
                f"ReduceOnPlateau) or None for a constant rate afterwards, got {then!r}"
            )
        self.then = then

    def lr_at(self, epoch: int, base_lr: float) -> float:
        if epoch <= self.warmup_epochs:
            return base_lr * epoch / self.warmup_epochs
        if self.then is None:
            return base_lr
        return self.then.lr_at(epoch - self.warmup_epochs, base_lr)

    def observe(
        self, epoch: int, metrics_train: Mapping[str, Any], metrics_val: Mapping[str, Any]
    ) -> None:
        if self.then is not None and epoch > self.warmup_epochs:
            self.then.observe(epoch - self.warmup_epochs, metrics_train, metrics_val)

    def rule_state(self) -> dict[str, Any]:
        return {"then": self.then.rule_state()} if self.then is not None else {}

    def load_rule_state(self, state: Mapping[str, Any]) -> None:
        if self.then is not None:
            self.then.load_rule_state(state.get("then") or {})

    def reset(self) -> None:
        if self.then is not None:
            self.then.reset()


class ReduceOnPlateau(EpochRule):
    """Multiply the rate by ``factor`` when ``monitor`` has not improved for ``patience`` epochs.

    An epoch improves when ``monitor`` beats the best value by more than ``min_delta`` in the
    direction of ``mode`` (``"lowest"`` for losses, ``"highest"`` for accuracies). After a
    reduction, ``cooldown`` epochs are not counted; the rate never falls below ``min_lr``. The
    decision is made at epoch end and takes effect when the next epoch begins.
    """

    def __init__(
        self,
        monitor: str,
        mode: str = "lowest",
        factor: float = 0.1,
        patience: int = 10,
        min_delta: float = 0.0,
        min_lr: float = 0.0,
        cooldown: int = 0,
        optimizer: str | None = "default",
    ) -> None:
        super().__init__(optimizer)
        owner = "ReduceOnPlateau"
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(f"{owner}: monitor must name a metric, e.g. 'val_CE'; got {monitor!r}")
        if not 0 < factor < 1:
            raise ValueError(f"{owner}: factor must be between 0 and 1 (exclusive), got {factor!r}")
        for name, value in (("patience", patience), ("cooldown", cooldown)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{owner}: {name} must be an integer >= 0, got {value!r}")
        if not min_delta >= 0 or not min_lr >= 0:
            raise ValueError(f"{owner}: min_delta and min_lr must be >= 0")
        self.monitor = monitor
        self.mode = check_mode(owner, mode)
        self.factor = float(factor)
        self.patience = patience
        self.min_delta = float(min_delta)
        self.min_lr = float(min_lr)
        self.cooldown = cooldown
        self.reset()

    def reset(self) -> None:
        self.scale = 1.0
        self.best: float | None = None
        self.wait = 0
        self.cooldown_left = 0

    def lr_at(self, epoch: int, base_lr: float) -> float:
        return max(base_lr * self.scale, min(self.min_lr, base_lr))

    def observe(
        self, epoch: int, metrics_train: Mapping[str, Any], metrics_val: Mapping[str, Any]
    ) -> None:
        value = lookup_metric("ReduceOnPlateau", self.monitor, metrics_train, metrics_val)
        in_cooldown = self.cooldown_left > 0
        if in_cooldown:
            self.cooldown_left -= 1
        if improved(self.mode, self.best, value, self.min_delta):
            self.best, self.wait = value, 0
        elif not in_cooldown:
            self.wait += 1
            if self.wait >= self.patience:
                self.scale *= self.factor
                self.wait, self.cooldown_left = 0, self.cooldown

    def rule_state(self) -> dict[str, Any]:
        return {
            "scale": self.scale,
            "best": self.best,
            "wait": self.wait,
            "cooldown_left": self.cooldown_left,
        }

    def load_rule_state(self, state: Mapping[str, Any]) -> None:
        self.scale = float(state.get("scale", 1.0))
        self.best = state.get("best")
        self.wait = int(state.get("wait", 0))
        self.cooldown_left = int(state.get("cooldown_left", 0))
