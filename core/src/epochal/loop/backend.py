"""The backend contract: what a backend's trainer provides, and nothing more.

A backend's trainer subclasses :class:`~epochal.loop.trainer.AbstractNetworkTrainer`; the core
does everything that is not framework code (the loop, best-model tracking, the checkpoint
schedule and lookup, resume, restoring the best weights, ``train()``'s return value). What it
needs from the framework is named here, as typed ``Protocol`` classes: public names, no
underscored method, so that a third party implements them from this file and
``docs/plugins.md`` alone. ``isinstance(trainer, Backend)`` checks that they are all there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "Backend",
    "CheckpointPrimitives",
    "LoopPrimitives",
    "SupervisedBackend",
    "TrainingPrimitives",
]


@runtime_checkable
class CheckpointPrimitives(Protocol):
    """A backend's state and file format; the core writes and reads checkpoints with them
    (:mod:`epochal.runs.checkpoints`).

    A checkpoint is one mapping: ``network_state()``, the core's part (``epoch``, ``fold``,
    ``best_val_score``, ``best_epoch``, ``callbacks``, ``interrupted``) and, unless it is
    ``weights_only``, ``training_state()``; the keys of the three parts must not clash.
    ``save_state(name)`` writes it with ``write_checkpoint``, adding :attr:`checkpoint_suffix`
    when ``name`` has none; ``load_state(name)`` reads it back with ``read_checkpoint``;
    ``update_state(name)`` loads it into the trainer with ``load_network_state``,
    ``load_training_state``, then the core's part.
    """

    #: The file suffix of this backend's checkpoints (e.g. ``".npz"``).
    checkpoint_suffix: ClassVar[str]
    #: Suffixes a file name given to ``save_state``/``load_state`` may already end with, so
    #: that no second suffix is added (e.g. delira's ``".pth"``). Optional: ``()``.
    checkpoint_suffix_aliases: ClassVar[tuple[str, ...]]

    @staticmethod
    def write_checkpoint(path: str, state: dict[str, Any]) -> str:
        """Write ``state`` to ``path`` atomically (a temporary file, then ``os.replace``: a
        crash leaves the previous file whole); return ``path``. A failed write raises
        :class:`~epochal.errors.CheckpointError` naming the file and the cause."""
        ...

    @staticmethod
    def read_checkpoint(path: str) -> dict[str, Any]:
        """Read what :meth:`write_checkpoint` wrote, safely: nothing unpickled or executed, no
        link followed (:func:`epochal.runs.files.open_run_file`), every value checked
        (:func:`epochal.runs.checkpoints.check_core_state` for the core's part). A bad file
        raises :class:`~epochal.errors.CheckpointError` naming it. Extra keyword options
        (e.g. ``map_location``) come from ``load_state``."""
        ...

    def network_state(self) -> dict[str, Any]:
        """The network's weights as checkpoint entries (e.g. ``{"model": weights}``).
        Loaded into the network by :meth:`load_network_state`; also the in-memory best
        weights of a trainer without a run folder (the core copies it)."""
        ...

    def load_network_state(self, state: Mapping[str, Any]) -> None:
        """Load the network entries of ``state`` (a whole checkpoint) into the network, after
        checking that they fit it: a checkpoint of another architecture raises
        :class:`~epochal.errors.CheckpointError` naming what does not fit."""
        ...

    def training_state(self) -> dict[str, Any]:
        """Everything else a resume needs: optimizers, a loss scaler, RNG states. Left out of
        ``weights_only`` checkpoints. Optional: the core's default is ``{}``."""
        ...

    def load_training_state(self, state: Mapping[str, Any]) -> None:
        """Load the entries of :meth:`training_state` that ``state`` holds (a checkpoint
        written ``weights_only`` holds none). Optional: the core's default loads nothing."""
        ...


@runtime_checkable
class LoopPrimitives(Protocol):
    """What the core's loop (:class:`~epochal.loop.trainer.AbstractNetworkTrainer.train`)
    calls for each epoch; a :class:`~epochal.loop.supervised.SupervisedTrainer` provides
    ``predict`` itself, from :class:`TrainingPrimitives`."""

    def train_epoch(self, batches: Iterable[dict[str, Any]], epoch: int) -> dict[str, float]:
        """Train one epoch over ``batches`` (dicts of arrays: ``data``, ``label``...); return
        the epoch's sample-weighted mean losses and metrics, read from the device once. An
        epoch without batches raises ``ValueError``; a non-finite loss follows
        ``on_nonfinite`` (:class:`~epochal.errors.NonFiniteLossError`). Call
        ``self.batch_end_hook`` (when not ``None``) after each batch."""
        ...

    def predict(
        self, batchgen: Iterable[dict[str, Any]], batch_size: int | None = None
    ) -> tuple[np.ndarray, list[np.ndarray], dict[str, float]]:
        """``(predictions, [labels], mean losses and metrics)`` over ``batchgen`` in inference
        mode, batches merged up to ``batch_size`` samples (``None``: as they come)."""
        ...

    @staticmethod
    def set_seed(seed: int) -> None:
        """Seed the framework's generators (the experiment seeds numpy and ``random``).
        Optional."""
        ...


@runtime_checkable
class TrainingPrimitives(Protocol):
    """The framework code of delira's supervised trainer: a backend whose trainer subclasses
    :class:`~epochal.loop.supervised.SupervisedTrainer` declares these class attributes and
    implements these methods; the core does the constructor (its signature built from the
    first three attributes), the checks, ``train_step``, ``predict`` and the scheduler hook-up.
    Methods marked optional have a default in ``SupervisedTrainer``.
    """

    #: The losses argument's name (delira's ``"criterions"`` or ``"losses"``).
    losses_parameter: ClassVar[str]
    #: A frozen dataclass whose fields are the backend's own constructor parameters (after
    #: ``on_nonfinite``); the values arrive as ``self.options``.
    options_type: ClassVar[type]
    #: ``optim_fn``'s default: ``(network, optimizer_cls, **optimizer_params) -> {name: opt}``.
    default_optim_fn: ClassVar[Callable[..., dict[str, Any]]]
    #: delira's network base class (``closure``, ``prepare_batch``), or ``None``.
    network_base: ClassVar[type | None]
    #: The default step, delira's closure signature: ``(model, data_dict, optimizers, losses,
    #: metrics, fold, **kwargs) -> (metric_vals, loss_vals, predictions)``.
    default_closure: ClassVar[Callable[..., tuple[Any, Any, Any]]]
    #: ``mixed_precision_kwargs`` of the backend's own (besides ``dtype``, ``enabled``).
    mixed_precision_options: ClassVar[Mapping[str, float]]
    #: Keys of ``**kwargs`` the backend reads itself (``self.backend_kwargs``), not the closure.
    backend_kwargs_names: ClassVar[frozenset[str]]

    def check_arguments(self, network: Any) -> None:
        """Refuse a network (or loss, metric) the framework cannot train, with an error that
        says the fix. Optional."""
        ...

    def place_network(self, network: Any, gpu_ids: list[int]) -> Any:
        """Pick the device(s) (``[]``: the CPU), join the processes (set ``self.collective``),
        build the mixed-precision objects from ``self.precision``, move the network; return
        it (the core keeps it as ``self.module`` and ``self.train_module``)."""
        ...

    def create_optimizers(self, optim_fn: Callable[..., dict[str, Any]]) -> dict[str, Any]:
        """``optim_fn(self.module, self.optimizer_cls, **self.optimizer_params)``, in the
        device's scope where the framework needs one. Optional."""
        ...

    def wrap_optimizers(self, optimizers: dict[str, Any]) -> dict[str, Any]:
        """The checked optimizers as the step uses them (loss scaling). Optional."""
        ...

    def prepare_training(self) -> None:
        """The last of the setup: compile steps, wrap ``self.train_module`` (DDP), checks
        that depend on the step (``self.uses_default_step``). Optional."""
        ...

    @staticmethod
    def scheduler_callback(scheduler_cls: Any, params: dict[str, Any]) -> object:
        """The callback that runs delira's ``lr_scheduler_cls`` with ``lr_scheduler_params``."""
        ...

    def evaluating(self) -> AbstractContextManager[Any]:
        """The context ``predict`` runs its steps in (eval mode, no gradients). Optional."""
        ...

    def eval_step(self, batch: Mapping[str, Any]) -> tuple[Any, dict[str, Any] | None]:
        """One inference batch (a dict of numpy arrays): ``(predictions, {loss and metric
        name: the batch's mean})``, or ``(predictions, None)`` when it has no ``label``; values
        stay on the device."""
        ...

    def stack_values(self, values: list[list[Any]]) -> np.ndarray:
        """``values[k][i]`` (key ``k``, batch ``i``) as one float64 ``(keys, batches)`` array,
        read from the device at once. Optional (numpy's ``asarray``)."""
        ...

    def stack_batches(self, outputs: list[Any]) -> np.ndarray:
        """The batches' predictions as one float32 numpy array. Optional."""
        ...


@runtime_checkable
class Backend(CheckpointPrimitives, LoopPrimitives, Protocol):
    """Every primitive a backend's trainer provides to the core: its state and file format,
    and one epoch and prediction. A trainer subclassing
    :class:`~epochal.loop.supervised.SupervisedTrainer` is a :class:`SupervisedBackend`.
    """


@runtime_checkable
class SupervisedBackend(Backend, TrainingPrimitives, Protocol):
    """A :class:`Backend` whose trainer is delira's supervised trainer."""
