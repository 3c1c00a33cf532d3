"""The contract between the trainer and its plugins.

Two kinds of hooks live here. *Registration hooks* are called whenever a
registry is built and hand a plugin a ``register`` callable (the llm/datasette
pattern). *Life-cycle hooks* are called by :class:`~epochal.loop.trainer.AbstractNetworkTrainer`
at the moment they are named after, on a per-trainer plugin manager that holds
the global plugins plus the callbacks registered on that trainer.

Every hook a plugin implements must be marked with :data:`hookimpl`
(``from epochal import hookimpl``) and use argument names from the spec; a
plugin may take any subset of the arguments. The ``trainer`` the life-cycle hooks
get is typed :class:`~epochal.loop.callbacks.TrainerView`: what a plugin may use of it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:  # pragma: no cover - imports for type checkers only
    import click

    from epochal.loop.callbacks import TrainerView

__all__ = [
    "PROJECT_NAME",
    "epochal_at_batch_end",
    "epochal_at_epoch_begin",
    "epochal_at_epoch_end",
    "epochal_at_training_begin",
    "epochal_at_training_end",
    "epochal_load_state_dict",
    "epochal_register_callbacks",
    "epochal_register_commands",
    "epochal_register_datasets",
    "epochal_register_default_job",
    "epochal_register_samplers",
    "epochal_register_trainers",
    "epochal_setup",
    "epochal_state_dict",
    "hookimpl",
    "hookspec",
]

PROJECT_NAME = "epochal"
hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

#: ``register(name, obj)``: ``obj`` is the object itself or a ``"module:attr"``
#: string that is imported only when the name is looked up.
Register = Callable[[str, Any], None]


# --- registration hooks -------------------------------------------------------


@hookspec
def epochal_register_trainers(register: Register) -> None:
    """Register training backends by name.

    Fires whenever the trainer registry is built (``epochal plugins``, an
    experiment picking its backend). Call ``register("mybackend",
    "mypackage.trainer:MyTrainer")`` once per backend; pass a
    ``"module:attr"`` string so that listing plugins does not import the
    framework. The return value is ignored.
    """


@hookspec
def epochal_register_callbacks(register: Register) -> None:
    """Register callbacks by name so that a config's ``[callbacks]`` table can name them.

    Fires whenever the callback registry is built. ``register(name, cls)`` with
    a callback class (or factory, or ``"module:attr"`` string); the registry
    calls it with the config's keyword arguments. The return value is ignored.
    """


@hookspec
def epochal_register_datasets(register: Register) -> None:
    """Register datasets by name (``"digits"`` ships in the core).

    Fires whenever the dataset registry is built. ``register(name, factory)``
    where ``factory(**kwargs)`` returns an :class:`~epochal.data.AbstractDataset`.
    The return value is ignored.
    """


@hookspec
def epochal_register_samplers(register: Register) -> None:
    """Register samplers by name (``"sequential"``, ``"random"``, ... ship in the core).

    Fires whenever the sampler registry is built. ``register(name, cls)`` with
    an :class:`~epochal.data.AbstractSampler` subclass (or ``"module:attr"``),
    so configs can say ``sampler = "balanced"``. The return value is ignored.
    """


@hookspec
def epochal_register_commands(cli: click.Group) -> None:
    """Add click commands to the ``epochal`` command line.

    Fires once when the ``epochal`` command group first lists or resolves its
    commands (not at import). Use ``@cli.command()`` or ``cli.add_command``.
    A plugin that raises here is reported by ``epochal plugins``; the other
    commands keep working. The return value is ignored.
    """


@hookspec
def epochal_register_default_job(job: dict[str, Any]) -> None:
    """Add what this plugin gives to the default job (``epochal train`` without a config).

    Fires whenever the default job is built (and when a config leaves
    ``experiment.backend`` out). ``job`` is the core's default config, a dict of
    TOML tables; add with ``setdefault`` so that an earlier plugin's choice
    stands: a backend offers itself with
    ``job["experiment"].setdefault("backend", name)`` (mark the implementation
    ``tryfirst`` to be preferred), a callbacks plugin adds its callbacks to
    ``job["callbacks"]``. The return value is ignored.
    """


# --- life-cycle hooks ---------------------------------------------------------


@hookspec
def epochal_setup(trainer: TrainerView) -> None:
    """The backend has built the network and optimizers (end of ``_setup``).

    Use it to attach to the trainer's objects, for example to build an LR
    scheduler on ``trainer.optimizers``. The return value is ignored.
    """


@hookspec
def epochal_at_training_begin(trainer: TrainerView) -> None:
    """``train`` is about to run its first epoch (also after a resume).

    ``trainer.start_epoch`` is the first epoch that will run. The return value
    is ignored.
    """


@hookspec
def epochal_at_epoch_begin(
    trainer: TrainerView,
    epoch: int,
    num_epochs: int,
    metrics_val: dict[str, float],
    val_score_key: str | None,
) -> dict[str, Any] | None:
    """An epoch is about to start; ``metrics_val`` holds the previous epoch's.

    May return a dict that is merged into ``trainer.state`` (for example
    ``{"stop_training": True}``), or ``None``.
    """


@hookspec
def epochal_at_batch_end(
    trainer: TrainerView,
    epoch: int,
    batch_nr: int,
    losses: dict[str, Any],
    metrics: dict[str, Any],
) -> None:
    """A training batch has been stepped.

    ``losses`` and ``metrics`` are the backend's values for this batch (device
    tensors on a GPU; reading them forces a host sync, so read sparingly).
    The backends dispatch this hook only when some plugin implements it, so it
    costs nothing otherwise. The return value is ignored.
    """


@hookspec
def epochal_at_epoch_end(
    trainer: TrainerView,
    epoch: int,
    num_epochs: int,
    metrics_train: dict[str, float],
    metrics_val: dict[str, float],
    val_score_key: str | None,
    is_best: bool,
) -> dict[str, Any] | None:
    """An epoch has been trained and validated; fires before its checkpoint.

    ``metrics_train`` are the epoch's mean training losses and metrics,
    ``metrics_val`` the validation ones (keys prefixed ``val_``), ``is_best``
    whether this epoch has the best validation score so far. May return a dict
    merged into ``trainer.state``; ``{"stop_training": True}`` ends training
    after this epoch. State changed here is saved in this epoch's checkpoint.
    """


@hookspec
def epochal_at_training_end(trainer: TrainerView) -> None:
    """The last epoch has finished (or training stopped early).

    Fires before the backend's ``_at_training_end`` picks the network that
    ``train`` returns. The return value is ignored.
    """


@hookspec
def epochal_state_dict(trainer: TrainerView) -> dict[str, Any] | None:
    """Contribute to a checkpoint that is about to be written.

    Return ``{key: state}`` with a key unique to the plugin and a state made of
    plain containers, numbers and strings (and the backend's tensors), or
    ``None``. All contributions are merged; a key returned twice is an error.
    Before every save the state is checked (:mod:`epochal.runs.checkpoint_state`):
    ``None``, ``bool``, ``int``, ``float``, ``str``, lists, tuples and dicts with
    ``str`` keys, plus the backend's ``checkpoint_value_types``; anything else (a
    numpy number, a set, an object) is a :class:`~epochal.errors.PluginError`
    naming the plugin and the value, raised before a file is written.
    """


@hookspec
def epochal_load_state_dict(trainer: TrainerView, state: dict[str, Any]) -> None:
    """A checkpoint is being restored (``update_state`` / ``_update_state``).

    ``state`` is the merged dict that ``epochal_state_dict`` produced; each
    plugin picks its own key (absent when the checkpoint predates it). The
    return value is ignored.
    """
