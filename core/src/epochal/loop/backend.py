"""The backend contract: what a backend's trainer provides, and nothing more.

A backend's trainer subclasses :class:`~epochal.loop.trainer.AbstractNetworkTrainer`; the core
does everything that is not framework code (the loop, best-model tracking, the checkpoint
schedule and lookup, resume, restoring the best weights, ``train()``'s return value). What it
needs from the framework is named here, as typed ``Protocol`` classes: public names, no
underscored method, so that a third party implements them from this file and
``docs/plugins.md`` alone. ``isinstance(trainer, Backend)`` checks that they are all there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Protocol, runtime_checkable

__all__ = ["Backend", "CheckpointPrimitives"]


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

    #: The file suffix of this backend's checkpoints (``".pt"``, ``".tf.npz"``, ``".npz"``).
    checkpoint_suffix: ClassVar[str]
    #: Suffixes a file name given to ``save_state``/``load_state`` may already end with, so
    #: that no second suffix is added (torch: delira's ``".pth"``). Optional: ``()``.
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
        (torch: ``map_location``) come from ``load_state``."""
        ...

    def network_state(self) -> dict[str, Any]:
        """The network's weights as checkpoint entries (torch: ``{"model": state_dict}``).
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
class Backend(CheckpointPrimitives, Protocol):
    """Every primitive a backend's trainer provides to the core.

    The training primitives (building optimizers, preparing a batch, a training step, an
    evaluation step, seeding) join this class next to :class:`CheckpointPrimitives`.
    """
