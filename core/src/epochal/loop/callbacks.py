"""delira-style callbacks and their adapter onto the life-cycle hooks.

A callback written for delira (``at_epoch_begin(trainer, **kwargs)`` /
``at_epoch_end(trainer, **kwargs)`` returning a dict) keeps working: the
trainer's callbacks sit in a :class:`CallbackChain`, one pluggy plugin on the
trainer's own hook manager that calls them in registration order. Arguments
are passed under both delira's names (``curr_epoch``, ``val_metrics``) and the
hooks' names (``epoch``, ``metrics_val``, ...); a callback whose method takes
no ``**kwargs`` gets only the names it declares.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

from epochal.errors import MissingMetricError
from epochal.plugins.hookspecs import hookimpl

__all__ = ["AbstractCallback", "BatchCallbackChain", "CallbackChain", "is_hook_plugin"]
__all__ += ["SupervisedTrainerView", "TrainerView"]
__all__ += ["check_mode", "improved", "lookup_metric", "same_optimizers", "select_optimizers"]


@runtime_checkable
class TrainerView(Protocol):
    """What a callback or plugin may use of the trainer its hooks are given, on any backend.

    Every trainer (:class:`~epochal.loop.trainer.AbstractNetworkTrainer`) has these; the rest
    of a trainer is the loop's and the backend's business. To change what the loop does, a
    callback returns a dict merged into :attr:`state` (``{"stop_training": True}``) or calls
    :meth:`request_stop`; it does not set the trainer's attributes (:attr:`time_data_wait`
    is the one switch meant for callbacks). Backends add public attributes of their own:
    see :class:`SupervisedTrainerView` for the network and optimizers.
    """

    #: What hooks returned, merged (``stop_training``), and the loop's ``train_seconds``,
    #: ``val_seconds`` (and ``data_wait_seconds`` when :attr:`time_data_wait` is set).
    state: dict[str, Any]
    #: Set to ``True`` to have the loop time its waits for batches (a timer does).
    time_data_wait: bool

    @property
    def fold(self) -> int:
        """The cross-validation fold this trainer trains (0 outside ``kfold``)."""

    @property
    def save_path(self) -> str | None:
        """The run folder (``None``: nothing is written)."""

    @property
    def start_epoch(self) -> int:
        """The first epoch ``train`` runs (after a resume: the one after the checkpoint)."""

    @property
    def best_val_score(self) -> float | None:
        """The best validation score so far (``None``: none yet)."""

    @property
    def best_epoch(self) -> int | None:
        """The epoch of :attr:`best_val_score`."""

    @property
    def val_score_key(self) -> str | None:
        """The validation metric the run monitors (set by ``train``)."""

    @property
    def val_score_mode(self) -> str:
        """``"highest"`` or ``"lowest"``: which way :attr:`val_score_key` improves."""

    @property
    def is_main_process(self) -> bool:
        """Rank 0, or the only process: the one that writes files and talks to the user."""

    @property
    def callbacks(self) -> list[object]:
        """The registered callbacks, in registration order (a copy)."""

    def request_stop(self, reason: str = "stop") -> None:
        """Stop at the next batch boundary, writing ``checkpoint_last`` to resume from."""

    def register_callback(self, callback: object) -> None:
        """Add a callback (delira style) or a plugin object with ``@epochal.hookimpl`` hooks."""


@runtime_checkable
class SupervisedTrainerView(TrainerView, Protocol):
    """A :class:`TrainerView` of a supervised backend
    (:class:`~epochal.loop.supervised.SupervisedTrainer`): the network and the optimizers,
    for callbacks such as LR schedulers and loggers of learning rates. A callback that
    needs them checks for them (:func:`select_optimizers` does)."""

    @property
    def module(self) -> Any:
        """The framework's network, as trained (delira's name)."""

    @property
    def optimizers(self) -> Mapping[str, Any]:
        """``{name: optimizer}`` of the framework (``"default"`` for the default step)."""


class AbstractCallback:
    """Base class for callbacks; override only what you need.

    Each ``at_*`` method receives the trainer and keyword arguments and may
    return a dict that is merged into ``trainer.state`` (``{"stop_training":
    True}`` stops training). Define ``at_batch_end(trainer, **kwargs)`` to be
    called after every training batch (it is not called otherwise, so it costs
    nothing unless defined). ``state_dict``/``load_state_dict`` let a callback
    keep its state across a resume.

    In distributed training every rank runs the callbacks with the same (global) metrics,
    so that e.g. early stopping stops all ranks together; callbacks that write files or
    print set ``main_process_only = True`` and run on rank 0 only.
    """

    #: Run on rank 0 only when training in several processes (loggers, plots, progress).
    main_process_only: bool = False

    def at_training_begin(self, trainer: TrainerView, **kwargs: Any) -> dict | None:
        return {}

    def at_epoch_begin(self, trainer: TrainerView, **kwargs: Any) -> dict | None:
        return {}

    def at_epoch_end(self, trainer: TrainerView, **kwargs: Any) -> dict | None:
        return {}

    def at_training_end(self, trainer: TrainerView, **kwargs: Any) -> dict | None:
        return {}

    def state_dict(self) -> dict[str, Any] | None:
        """State to keep in checkpoints (plain containers, numbers, strings, and the
        backend's tensors), or ``None``; checked before every save like a plugin's
        ``epochal_state_dict`` (a numpy number is refused: use ``float(x)``)."""
        return None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


# -- helpers for callbacks in any plugin (early stopping, LR schedules of every backend) -----


def lookup_metric(
    owner: str, key: str, metrics_train: Mapping[str, Any], metrics_val: Mapping[str, Any]
) -> float:
    """The value of ``key`` this epoch (validation keys start ``val_``); a missing key raises
    :class:`~epochal.errors.MissingMetricError` naming ``owner`` and the keys there are."""
    metrics = {**metrics_train, **metrics_val}
    if key not in metrics:
        raise MissingMetricError(
            f"{owner}: the epoch produced no metric {key!r}; it produced {sorted(metrics)}. "
            "Validation metrics carry the prefix 'val_' (e.g. 'val_accuracy')."
        )
    return float(metrics[key])


def check_mode(owner: str, mode: str) -> str:
    """``mode`` if it is a direction of a score (``"highest"`` or ``"lowest"``), else raise."""
    if mode not in ("highest", "lowest"):
        raise ValueError(f"{owner}: mode must be 'highest' or 'lowest', got {mode!r}")
    return mode


def improved(mode: str, best: float | None, value: float, min_delta: float = 0.0) -> bool:
    """Whether ``value`` beats ``best`` by more than ``min_delta`` in the direction of ``mode``."""
    if value != value:  # NaN never improves
        return False
    if best is None:
        return True
    return value > best + min_delta if mode == "highest" else value < best - min_delta


def select_optimizers(owner: str, trainer: TrainerView, optimizer: str | None) -> dict[str, Any]:
    """The trainer's optimizers a callback acts on: the one named, or all for ``None``/``"all"``.

    Backends expose ``trainer.optimizers`` (a dict name -> optimizer, delira's convention); a
    trainer without it, or a name it lacks, raises naming what there is.
    """
    optimizers = getattr(trainer, "optimizers", None)
    if not isinstance(optimizers, Mapping) or not optimizers:
        raise TypeError(
            f"{owner} schedules trainer.optimizers (a dict name -> optimizer), but "
            f"{type(trainer).__name__} has {'none' if optimizers is None else repr(optimizers)}; "
            "use a backend that exposes its optimizers"
        )
    if optimizer is None or optimizer == "all":
        return dict(optimizers)
    if optimizer not in optimizers:
        raise KeyError(
            f"{owner}: the trainer has no optimizer {optimizer!r}; it has {sorted(optimizers)}. "
            "Pass optimizer=<one of those>, or optimizer=None to schedule each of them."
        )
    return {optimizer: optimizers[optimizer]}


def same_optimizers(bound: Mapping[str, Any], optimizers: Mapping[str, Any]) -> bool:
    """Whether ``optimizers`` are the very objects a callback was bound to (the same run)."""
    return bound.keys() == optimizers.keys() and all(bound[k] is v for k, v in optimizers.items())


def is_hook_plugin(obj: object) -> bool:
    """Whether ``obj`` has at least one attribute marked with ``@epochal.hookimpl``."""
    marker = "epochal_impl"
    for name in dir(obj):
        if not name.startswith("epochal_"):
            continue
        if hasattr(getattr(obj, name, None), marker):
            return True
    return False


class _Method:
    """A callback method called with only the keyword arguments it accepts."""

    def __init__(self, owner: object, name: str) -> None:
        self.owner = owner
        self.name = name
        self.function: Callable[..., Any] | None = getattr(owner, name, None)
        self.accepted: frozenset[str] | None = None  # None: takes **kwargs
        if self.function is not None:
            try:
                params = inspect.signature(self.function).parameters.values()
            except (TypeError, ValueError):
                return
            if not any(p.kind is p.VAR_KEYWORD for p in params):
                self.accepted = frozenset(
                    p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                )

    def __call__(self, trainer: TrainerView, **kwargs: Any) -> dict | None:
        if self.function is None:
            return None
        if self.accepted is not None:
            kwargs = {k: v for k, v in kwargs.items() if k in self.accepted}
        result = self.function(trainer, **kwargs)
        if result is not None and not isinstance(result, Mapping):
            raise TypeError(
                f"{type(self.owner).__name__}.{self.name} returned {type(result).__name__}; "
                "a callback must return a dict (merged into trainer.state) or None"
            )
        return dict(result) if result else None


class _Entry:
    """One registered callback, its state key and its methods."""

    def __init__(self, callback: object, key: str) -> None:
        self.callback = callback
        self.key = key
        self.training_begin = _Method(callback, "at_training_begin")
        self.epoch_begin = _Method(callback, "at_epoch_begin")
        self.epoch_end = _Method(callback, "at_epoch_end")
        self.training_end = _Method(callback, "at_training_end")
        self.batch_end = _Method(callback, "at_batch_end")
        self.main_only = bool(getattr(callback, "main_process_only", False))


def _apply(trainer: TrainerView, result: dict | None) -> None:
    if result:
        trainer.state.update(result)


class CallbackChain:
    """A trainer's delira-style callbacks as one plugin, called in registration order.

    pluggy calls the most recently registered plugin first; delira called callbacks in
    the order they were registered, and a logger registered after an LR scheduler must see
    the rate the scheduler just set. So the callbacks share one hook implementation that
    loops over them in order, and what each returns is in ``trainer.state`` before the next
    one runs.
    """

    def __init__(self) -> None:
        self.entries: list[_Entry] = []

    def add(self, callback: object, key: str) -> None:
        if any(entry.key == key for entry in self.entries):
            raise ValueError(
                f"two callbacks use the state key {key!r}; give one a different state_key"
            )
        self.entries.append(_Entry(callback, key))

    def active(self, trainer: TrainerView) -> list[_Entry]:
        """The callbacks that run in this process (rank 0: all; other ranks: those not
        marked ``main_process_only``)."""
        if getattr(trainer, "is_main_process", True):
            return self.entries
        return [entry for entry in self.entries if not entry.main_only]

    @property
    def has_batch_callbacks(self) -> bool:
        return any(entry.batch_end.function is not None for entry in self.entries)

    def keys_with_state(self) -> list[str]:
        """Keys of the callbacks that can load state from a checkpoint."""
        return [
            entry.key
            for entry in self.entries
            if callable(getattr(entry.callback, "load_state_dict", None))
        ]

    @hookimpl
    def epochal_at_training_begin(self, trainer: TrainerView) -> None:
        for entry in self.active(trainer):
            _apply(trainer, entry.training_begin(trainer))

    @hookimpl
    def epochal_at_epoch_begin(
        self,
        trainer: TrainerView,
        epoch: int,
        num_epochs: int,
        metrics_val: dict,
        val_score_key: str | None,
    ) -> None:
        for entry in self.active(trainer):
            _apply(
                trainer,
                entry.epoch_begin(
                    trainer,
                    epoch=epoch,
                    curr_epoch=epoch,
                    num_epochs=num_epochs,
                    metrics_val=metrics_val,
                    val_metrics=metrics_val,
                    val_score_key=val_score_key,
                ),
            )

    @hookimpl
    def epochal_at_epoch_end(
        self,
        trainer: TrainerView,
        epoch: int,
        num_epochs: int,
        metrics_train: dict,
        metrics_val: dict,
        val_score_key: str | None,
        is_best: bool,
    ) -> None:
        for entry in self.active(trainer):
            _apply(
                trainer,
                entry.epoch_end(
                    trainer,
                    epoch=epoch,
                    curr_epoch=epoch,
                    num_epochs=num_epochs,
                    metrics_train=metrics_train,
                    metrics_val=metrics_val,
                    val_metrics=metrics_val,
                    val_score_key=val_score_key,
                    is_best=is_best,
                ),
            )

    @hookimpl
    def epochal_at_training_end(self, trainer: TrainerView) -> None:
        for entry in self.active(trainer):
            _apply(trainer, entry.training_end(trainer))

    @hookimpl
    def epochal_state_dict(self, trainer: TrainerView) -> dict | None:
        states = {}
        for entry in self.active(trainer):
            state_dict = getattr(entry.callback, "state_dict", None)
            state = state_dict() if callable(state_dict) else None
            if state is not None:
                states[entry.key] = state
        return states or None

    @hookimpl
    def epochal_load_state_dict(self, trainer: TrainerView, state: dict) -> None:
        for entry in self.active(trainer):
            load = getattr(entry.callback, "load_state_dict", None)
            if callable(load) and entry.key in state:
                load(state[entry.key])


class BatchCallbackChain:
    """The batch hook of a :class:`CallbackChain`, registered only once a callback defines
    ``at_batch_end``, so that a trainer without one never dispatches per batch."""

    def __init__(self, chain: CallbackChain) -> None:
        self.chain = chain

    @hookimpl
    def epochal_at_batch_end(
        self,
        trainer: TrainerView,
        epoch: int,
        batch_nr: int,
        losses: dict,
        metrics: dict,
    ) -> None:
        for entry in self.chain.active(trainer):
            if entry.batch_end.function is not None:
                entry.batch_end(
                    trainer, epoch=epoch, batch_nr=batch_nr, losses=losses, metrics=metrics
                )
