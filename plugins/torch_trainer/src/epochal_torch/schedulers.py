"""PyTorch LR scheduling: any ``torch.optim.lr_scheduler`` class as an epochal callback.

``TorchLRScheduler("StepLR", step_size=10)`` builds one scheduler per scheduled optimizer when
training begins and steps it after every epoch (``step_on="epoch"``) or after every training batch
(``step_on="batch"``). With ``monitor`` (required by ``ReduceLROnPlateau``) the scheduler is
stepped with that metric's value after each epoch. The schedulers' state rides in the checkpoint,
so a resumed run continues the schedule instead of restarting it.

Registered as ``torch_lr_scheduler`` by epochal-torch's plugin, and used by the trainer's
``lr_scheduler_cls``. torch is imported only inside the functions that need it, so looking the
name up (``epochal plugins``) stays cheap.
"""

from __future__ import annotations

import copy
import difflib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from epochal.job.trust import import_checked
from epochal.loop.callbacks import (
    AbstractCallback,
    TrainerView,
    lookup_metric,
    same_optimizers,
    select_optimizers,
)

__all__ = ["STEP_ON", "TorchLRScheduler", "resolve_scheduler_cls"]

STEP_ON = ("epoch", "batch")
#: Optimizer hyper-parameters torch schedulers write (OneCycleLR and CyclicLR cycle momentum).
_SCHEDULED_KEYS = ("lr", "momentum", "betas")
#: epochal's names for the direction of a score, accepted for ReduceLROnPlateau's ``mode``.
_PLATEAU_MODES = {"lowest": "min", "highest": "max"}
#: Schedulers that wrap other schedulers: they cannot be built from an optimizer and kwargs alone.
_WRAPPERS = ("LRScheduler", "SequentialLR", "ChainedScheduler")


def resolve_scheduler_cls(scheduler_cls: type | str | Callable[..., Any]) -> Callable[..., Any]:
    """A class from ``torch.optim.lr_scheduler`` by name, a ``"module:attr"`` path, or as given.

    Besides classes with a ``step()`` method, a factory ``f(optimizer, **params)`` that returns
    a scheduler is accepted (the way to build ``SequentialLR`` or ``ChainedScheduler``).
    """
    if isinstance(scheduler_cls, str):
        if ":" in scheduler_cls:  # checked like a config's path: epochal.job.trust
            from torch.optim import lr_scheduler

            scheduler_cls = import_checked(
                scheduler_cls,
                "lr_schedulers",
                "scheduler_cls",
                bases=(lr_scheduler.LRScheduler, lr_scheduler.ReduceLROnPlateau),
            )
        else:
            from torch.optim import lr_scheduler

            names = [name for name in lr_scheduler.__all__ if name not in _WRAPPERS]
            if scheduler_cls not in names:
                close = difflib.get_close_matches(scheduler_cls, names, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise ValueError(
                    f"unknown torch scheduler {scheduler_cls!r}: {hint}torch.optim.lr_scheduler "
                    f"has {', '.join(names)}. Or pass a class or a 'module:attr' path "
                    "(SequentialLR and ChainedScheduler wrap other schedulers: pass a factory "
                    "function(optimizer) that builds them)."
                )
            scheduler_cls = getattr(lr_scheduler, scheduler_cls)
    is_scheduler_class = inspect.isclass(scheduler_cls) and callable(
        getattr(scheduler_cls, "step", None)
    )
    if not is_scheduler_class and not inspect.isfunction(scheduler_cls):
        raise TypeError(
            "scheduler_cls must be a scheduler class with a step() method (e.g. "
            "torch.optim.lr_scheduler.StepLR), its name ('StepLR'), a 'module:attr' path or a "
            f"function(optimizer, **params) returning a scheduler; got {scheduler_cls!r}"
        )
    return scheduler_cls


def _subclass_of(scheduler_cls: object, base_name: str) -> bool:
    from torch.optim import lr_scheduler

    base = getattr(lr_scheduler, base_name)
    return inspect.isclass(scheduler_cls) and issubclass(scheduler_cls, base)


class TorchLRScheduler(AbstractCallback):
    """Steps a torch LR scheduler on the trainer's optimizer(s) per epoch or per batch.

    Args:
        scheduler_cls: a scheduler class, its name in ``torch.optim.lr_scheduler``
            (``"StepLR"``), a ``"module:attr"`` path, or a factory ``f(optimizer, **params)``.
        step_on: ``"epoch"`` (after each epoch's validation) or ``"batch"`` (after each
            training step; OneCycleLR, CyclicLR, warm-up lambdas).
        monitor: the metric fed to ``step(value)`` after each epoch, e.g. ``"val_CE"``;
            required for ``ReduceLROnPlateau``, whose ``mode`` may also be given as
            ``"lowest"``/``"highest"``.
        optimizer: the name of the optimizer in ``trainer.optimizers`` to schedule, or
            ``None``/``"all"`` for one scheduler on each of them.
        **scheduler_params: passed to ``scheduler_cls`` after the optimizer.
    """

    def __init__(
        self,
        scheduler_cls: type | str | Callable[..., Any],
        step_on: str = "epoch",
        monitor: str | None = None,
        optimizer: str | None = "default",
        **scheduler_params: Any,
    ) -> None:
        if step_on not in STEP_ON:
            raise ValueError(
                f"TorchLRScheduler: step_on must be one of {STEP_ON}, got {step_on!r}: 'epoch' "
                "steps after each epoch, 'batch' after each training batch"
            )
        self.scheduler_cls = resolve_scheduler_cls(scheduler_cls)
        self.step_on = step_on
        self.monitor = monitor
        self.optimizer = optimizer
        self.scheduler_params = dict(scheduler_params)
        if _subclass_of(self.scheduler_cls, "ReduceLROnPlateau"):
            mode = self.scheduler_params.get("mode")
            if mode in _PLATEAU_MODES:
                self.scheduler_params["mode"] = _PLATEAU_MODES[mode]
        elif monitor is not None and _subclass_of(self.scheduler_cls, "LRScheduler"):
            raise ValueError(
                f"TorchLRScheduler: {self.scheduler_cls.__name__} takes no metric, but "
                f"monitor={monitor!r} was given; drop monitor (only ReduceLROnPlateau and "
                "custom schedulers whose step() takes a value use it)"
            )
        self._check_plateau_use(_subclass_of(self.scheduler_cls, "ReduceLROnPlateau"))
        self._schedulers: dict[str, Any] | None = None
        self._optimizers: dict[str, Any] = {}
        self._step_fns: tuple[Callable[[], Any], ...] = ()
        self._pending: dict[str, Any] | None = None
        if step_on == "batch":
            # An instance attribute, not a method: the trainer dispatches the batch hook only to
            # callbacks that have it, so epoch-wise scheduling costs nothing per batch.
            self.at_batch_end = self._step_batch

    def _check_plateau_use(self, is_plateau: bool) -> None:
        if not is_plateau:
            return
        if self.step_on == "batch":
            raise ValueError(
                "TorchLRScheduler: ReduceLROnPlateau reacts to a validation metric, which "
                "exists once per epoch; use step_on='epoch'"
            )
        if self.monitor is None:
            raise ValueError(
                "TorchLRScheduler: ReduceLROnPlateau needs monitor=<metric>, e.g. "
                "monitor='val_CE' (with mode='min') or monitor='val_accuracy' (with mode='max')"
            )

    @property
    def schedulers(self) -> dict[str, Any]:
        """The scheduler of each scheduled optimizer (empty until training begins)."""
        return dict(self._schedulers or {})

    # -- life cycle ------------------------------------------------------------------

    def at_training_begin(self, trainer: TrainerView, **kwargs: Any) -> None:
        """Build the schedulers (unless already built on these optimizers), then restore state."""
        optimizers = select_optimizers("TorchLRScheduler", trainer, self.optimizer)
        # On the same optimizers (a second train() call) the schedule continues.
        if self._schedulers is None or not same_optimizers(self._optimizers, optimizers):
            self._optimizers = optimizers
            self._schedulers = {name: self._build(name, opt) for name, opt in optimizers.items()}
            self._step_fns = tuple(scheduler.step for scheduler in self._schedulers.values())
        if self._pending is not None:
            self._restore(self._pending)
            self._pending = None
        return None

    def _build(self, name: str, optimizer: Any) -> Any:
        import torch

        if not isinstance(optimizer, torch.optim.Optimizer):
            cls = type(optimizer)
            raise TypeError(
                f"TorchLRScheduler: optimizer {name!r} is a {cls.__module__}.{cls.__qualname__}, "
                "not a torch.optim.Optimizer; for Keras optimizers use the tf_* schedulers "
                "(tf_step_decay, tf_cosine_decay, tf_warmup, tf_reduce_on_plateau)"
            )
        scheduler = self.scheduler_cls(optimizer, **self.scheduler_params)
        if not callable(getattr(scheduler, "step", None)):
            raise TypeError(
                f"TorchLRScheduler: {self.scheduler_cls!r} returned {scheduler!r}, which has no "
                "step() method"
            )
        self._check_plateau_use(isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau))
        return scheduler

    def _step_batch(self, trainer: TrainerView, **kwargs: Any) -> None:
        # Hot path: one Python call per scheduler, no tensor read, so no host sync.
        for step in self._step_fns:
            step()

    def at_epoch_end(
        self,
        trainer: TrainerView,
        metrics_train: Mapping[str, Any] | None = None,
        metrics_val: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Step the epoch-wise schedulers, with the monitored value when there is one."""
        if self.step_on != "epoch" or self._schedulers is None:
            return None
        if self.monitor is None:
            for step in self._step_fns:
                step()
            return None
        value = lookup_metric(
            "TorchLRScheduler", self.monitor, metrics_train or {}, metrics_val or {}
        )
        for step in self._step_fns:
            step(value)
        return None

    # -- checkpoints -------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Each scheduler's state and the hyper-parameters it wrote into its optimizer.

        Before training begins: the state waiting to be restored, or ``{}`` (never ``None``,
        which would tell the trainer this callback keeps no state).
        """
        if self._schedulers is None:
            return copy.deepcopy(self._pending) if self._pending is not None else {}
        return copy.deepcopy(
            {
                "schedulers": {
                    name: scheduler.state_dict()
                    for name, scheduler in self._schedulers.items()
                    if callable(getattr(scheduler, "state_dict", None))
                },
                "param_groups": {
                    name: [
                        {key: group[key] for key in _SCHEDULED_KEYS if key in group}
                        for group in optimizer.param_groups
                    ]
                    for name, optimizer in self._optimizers.items()
                },
            }
        )

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore now if built, else when training begins (a resume loads state first)."""
        if self._schedulers is None:
            self._pending = state
        else:
            self._restore(state)

    def _restore(self, state: Mapping[str, Any]) -> None:
        import torch

        schedulers = self._schedulers or {}
        saved = set(state.get("schedulers", {})) | set(state.get("param_groups", {}))
        if saved and saved != set(schedulers):
            raise ValueError(
                f"TorchLRScheduler: the checkpoint schedules the optimizers {sorted(saved)}, this "
                f"run schedules {sorted(schedulers)}; resume with the same optimizer= "
                "setting as the run that wrote the checkpoint"
            )
        for name, scheduler_state in state.get("schedulers", {}).items():
            schedulers[name].load_state_dict(scheduler_state)
        # Building a scheduler writes its first values into the optimizer (LambdaLR sets lr =
        # base_lr * lambda(0)); put back the values the schedule had reached.
        for name, groups in state.get("param_groups", {}).items():
            param_groups = self._optimizers[name].param_groups
            if len(groups) != len(param_groups):
                raise ValueError(
                    f"TorchLRScheduler: optimizer {name!r} has {len(param_groups)} parameter "
                    f"groups, the checkpoint {len(groups)}; resume with the same optimizer"
                )
            for group, values in zip(param_groups, groups, strict=True):
                for key, value in values.items():
                    if isinstance(group.get(key), torch.Tensor):
                        group[key].fill_(value)
                    else:
                        group[key] = value
