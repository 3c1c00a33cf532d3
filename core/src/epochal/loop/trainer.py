"""AbstractNetworkTrainer: the one train/validate loop every backend shares.

A backend (every framework's, the numpy example's) fills in ``_setup`` (then calls
``super()._setup()``), ``_train_single_epoch``, ``predict``, sets ``self.module`` (the network
``train`` returns) and provides the checkpoint primitives of :mod:`epochal.loop.backend`; the
loop below, best-model tracking, checkpoints (``save_state``, ``load_state``, ``update_state``,
the schedule, the best weights at the end: :mod:`epochal.runs.checkpoints`), resume
bookkeeping and the share of a distributed run's work are written once, here. Plugins and
callbacks are registered through :class:`~epochal.loop.hooks.TrainerHooks`.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, ClassVar

from epochal.data.batching import TimedBatches, closing_batchgen
from epochal.loop.distributed import Collective
from epochal.loop.hooks import TrainerHooks
from epochal.loop.interrupt import TrainingInterrupted, skip_batches, stoppable
from epochal.plugins.manager import EpochalPluginManager
from epochal.runs import checkpoints

__all__ = ["VAL_PREFIX", "VAL_SCORE_MODES", "AbstractNetworkTrainer"]

VAL_SCORE_MODES = ("highest", "lowest")
VAL_PREFIX = "val_"


def _check_mode(mode: object) -> None:
    if mode not in VAL_SCORE_MODES:
        raise ValueError(
            f"val_score_mode must be one of {VAL_SCORE_MODES}, got {mode!r}: use 'highest' for "
            "scores such as accuracy and 'lowest' for losses"
        )


class AbstractNetworkTrainer(TrainerHooks):
    """The framework-neutral trainer (delira's ``AbstractNetworkTrainer`` API).

    Args:
        fold: which cross-validation fold this trainer trains (kept for naming).
        callbacks: callbacks registered with :meth:`register_callback`.
        save_path: run folder for checkpoints; ``None`` saves nothing.
        save_freq: write ``checkpoint_epoch_<n>`` every ``save_freq`` epochs.
        start_epoch: first epoch ``train`` runs (a resume sets it).
        plugin_manager: the global plugins to start from (default: the process-wide one).
    """

    def __init__(
        self,
        fold: int = 0,
        callbacks: Iterable[object] | None = None,
        *,
        save_path: str | os.PathLike[str] | None = None,
        save_freq: int = 1,
        start_epoch: int = 1,
        plugin_manager: EpochalPluginManager | None = None,
    ) -> None:
        if isinstance(save_freq, bool) or not isinstance(save_freq, int) or save_freq < 1:
            raise ValueError(f"save_freq must be a positive integer (epochs), got {save_freq!r}")
        if isinstance(start_epoch, bool) or not isinstance(start_epoch, int) or start_epoch < 1:
            raise ValueError(f"start_epoch must be an integer >= 1, got {start_epoch!r}")
        self.fold = fold
        self.save_path = os.fspath(save_path) if save_path is not None else None
        self.save_freq = save_freq
        self.start_epoch = start_epoch
        self.best_val_score: float | None = None
        self.best_epoch: int | None = None
        #: What callbacks returned (``stop_training`` and friends); never trainer attributes.
        #: The loop also puts each epoch's ``train_seconds`` and ``val_seconds`` here, and
        #: ``data_wait_seconds`` when :attr:`time_data_wait` is set.
        self.state: dict[str, Any] = {"stop_training": False}
        #: Measure the time ``_train_single_epoch`` waits for batches (costs ~1 µs a batch,
        #: so it is off unless a plugin such as a timer asks for it).
        self.time_data_wait = False
        #: Set by :meth:`request_stop` (e.g. from a signal handler): the loop stops before the
        #: next training batch. Checked per batch only while :attr:`interruptible` is set.
        self.stop_requested: str | None = None
        self.interruptible = False
        self._interrupted_at: dict[str, int] | None = None
        self._resume_batches = 0
        #: The epoch at whose end the weights loaded by :meth:`update_state` were taken
        #: (``None``: nothing loaded, or a checkpoint of a stop mid-epoch).
        self.loaded_weights_epoch: int | None = None
        #: The best epoch's :meth:`network_state`, kept when there is no run folder to hold
        #: ``checkpoint_best`` (:mod:`epochal.runs.checkpoints`).
        self._best_network_state: dict[str, Any] | None = None
        #: The processes this trainer trains in (backends that train in several set theirs in
        #: ``_setup``): the loop shards the data, averages epoch metrics over the ranks, and
        #: lets only rank 0 write checkpoints (:mod:`epochal.loop.distributed`).
        self.collective = Collective()
        #: Set by ``train``: what the current run monitors, for callbacks that follow it.
        self.val_score_key: str | None = None
        self.val_score_mode = "highest"
        super().__init__(callbacks, plugin_manager)

    @property
    def is_main_process(self) -> bool:
        """Rank 0, or the only process: the one that writes files and talks to the user."""
        return self.collective.is_main

    #: Trainer arguments that make a trainer of a distributed run's config work alone, in
    #: one process (``predict``, ``Experiment.test``): e.g. ``{"strategy": None}``.
    single_process_kwargs: ClassVar[Mapping[str, Any]] = MappingProxyType({})

    @classmethod
    def distributed_collective(cls, **trainer_kwargs: Any) -> Collective:
        """The processes a trainer built with ``trainer_kwargs`` would train in, joined: one
        here; a backend that reads a launcher's environment overrides it. The
        :class:`~epochal.runs.experiment.Experiment` calls it before it makes the run folder."""
        return Collective()

    @classmethod
    def launch_processes(cls, nproc: int, argv: Sequence[str]) -> int:
        """``epochal ARGV`` in ``nproc`` processes (``--nproc``); returns the exit code. Only
        backends that train in several processes through a launcher of their own can."""
        from epochal.errors import ConfigError

        raise ConfigError(
            f"--nproc {nproc}: the {cls.__name__} backend does not start processes; run "
            "one process (a TensorFlow run uses several devices with strategy = 'mirrored', "
            "several machines with strategy = 'multi_worker'; see docs/distributed.md)"
        )

    def request_stop(self, reason: str = "stop") -> None:
        """Stop at the next batch boundary, writing ``checkpoint_last`` to resume from (safe
        to call from a signal handler; see :func:`epochal.loop.interrupt.stop_on_signals`)."""
        self.stop_requested = reason

    # -- life cycle (each fires its hook; backends extend and call super()) ------

    def _setup(self, *args: Any, **kwargs: Any) -> None:
        """delira's setup: backends build network and optimizers, then call
        ``super()._setup()``, which fires ``epochal_setup``. A backend that does not (its
        setup is its ``__init__``) needs nothing more: :meth:`train` fires it first."""
        self._set_up = True
        self._epoch_now = None
        with self._plugin_code_may_exit():
            self._hooks.epochal_setup(trainer=self)

    @staticmethod
    def set_seed(seed: int) -> None:
        """Seed the framework's generators (the experiment seeds numpy and ``random``
        itself); a backend without generators of its own keeps this default."""

    def _at_training_begin(self, *args: Any, **kwargs: Any) -> None:
        self._hooks.epochal_at_training_begin(trainer=self)

    def _at_epoch_begin(
        self,
        metrics_val: dict[str, float],
        val_score_key: str | None,
        epoch: int,
        num_epochs: int,
        **kwargs: Any,
    ) -> None:
        results = self._hooks.epochal_at_epoch_begin(
            trainer=self,
            epoch=epoch,
            num_epochs=num_epochs,
            metrics_val=metrics_val,
            val_score_key=val_score_key,
        )
        self._merge_hook_results(results, "epochal_at_epoch_begin")

    def _at_epoch_end(
        self,
        metrics_val: dict[str, float],
        val_score_key: str | None,
        epoch: int,
        is_best: bool,
        metrics_train: dict[str, float] | None = None,
        num_epochs: int | None = None,
        **kwargs: Any,
    ) -> None:
        results = self._hooks.epochal_at_epoch_end(
            trainer=self,
            epoch=epoch,
            num_epochs=num_epochs if num_epochs is not None else epoch,
            metrics_train=metrics_train or {},
            metrics_val=metrics_val,
            val_score_key=val_score_key,
            is_best=is_best,
        )
        self._merge_hook_results(results, "epochal_at_epoch_end")

    def _at_training_end(self, *args: Any, **kwargs: Any) -> Any:
        """Fires the hook (every rank waits for rank 0's last checkpoint first), puts the best
        epoch's weights back (:meth:`restore_best_weights`) and returns the network."""
        self.collective.barrier()
        self._hooks.epochal_at_training_end(trainer=self)
        self.restore_best_weights()
        return self.module

    # -- what a backend must provide -----------------------------------------------

    def train_epoch(self, batches: Iterable[dict], epoch: int) -> dict[str, float]:
        """Train one epoch over ``batches``; return the epoch's mean losses and metrics."""
        raise NotImplementedError(f"{type(self).__name__} must implement train_epoch")

    def _train_single_epoch(self, batchgen: Iterable[dict], epoch: int) -> dict[str, float]:
        """delira's name of :meth:`train_epoch`, which the loop calls through it."""
        return self.train_epoch(batchgen, epoch)

    def predict(self, batchgen: Iterable[dict], batch_size: int | None = None) -> tuple:
        """Return ``(predictions, labels, mean metrics and losses)`` over ``batchgen``."""
        raise NotImplementedError(f"{type(self).__name__} must implement predict")

    # -- checkpoint primitives (the backend's; see epochal.loop.backend) -----------------

    #: The network (set by the backend): what ``train`` returns, what checkpoints hold.
    module: Any

    #: The file suffix of this backend's checkpoints, e.g. ``".pt"``.
    checkpoint_suffix: ClassVar[str] = ""
    #: Suffixes a given file name may already end with (no second suffix is added).
    checkpoint_suffix_aliases: ClassVar[tuple[str, ...]] = ()

    @staticmethod
    def write_checkpoint(path: str, state: dict[str, Any]) -> str:
        """Write ``state`` to ``path`` atomically; return ``path``."""
        raise NotImplementedError("the backend's trainer must implement write_checkpoint")

    @staticmethod
    def read_checkpoint(path: str) -> dict[str, Any]:
        """Read a checkpoint written by :meth:`write_checkpoint` (safely, values checked)."""
        raise NotImplementedError("the backend's trainer must implement read_checkpoint")

    def network_state(self) -> dict[str, Any]:
        """The network's weights as checkpoint entries."""
        raise NotImplementedError(f"{type(self).__name__} must implement network_state")

    def load_network_state(self, state: Mapping[str, Any]) -> None:
        """Load a checkpoint's network entries into the network (checking that they fit)."""
        raise NotImplementedError(f"{type(self).__name__} must implement load_network_state")

    def training_state(self) -> dict[str, Any]:
        """Optimizers, scaler, RNG states: what a resume needs besides the weights."""
        return {}

    def load_training_state(self, state: Mapping[str, Any]) -> None:
        """Load what :meth:`training_state` wrote (none of it in a ``weights_only`` file)."""

    # -- checkpoints (written once, here and in epochal.runs.checkpoints) ----------------

    def save_state(
        self, file_name: str, epoch: int = 0, weights_only: bool = False, **kwargs: Any
    ) -> str:
        """Write a checkpoint (atomically): the network's state, the core's part (epoch, best
        score, callback and plugin state) and, unless ``weights_only``, the training state.
        The backend's suffix is added when ``file_name`` has none; returns the file written."""
        state = {**self.network_state(), **self._core_state(epoch)}
        if not weights_only:
            state.update(self.training_state())
        suffixes = self.checkpoint_suffix, self.checkpoint_suffix_aliases
        path = checkpoints.to_write(file_name, *suffixes)
        return self.write_checkpoint(path, state)

    @classmethod
    def load_state(cls, file_name: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Read a checkpoint written by ``save_state`` (its suffix may be left off) and return
        its state dict; options (e.g. ``map_location``) go to ``read_checkpoint``."""
        path = checkpoints.to_read(file_name, cls.checkpoint_suffix, cls.checkpoint_suffix_aliases)
        return cls.read_checkpoint(path, *args, **kwargs)

    def restore_best_weights(self) -> None:
        """Put the best epoch's weights into the network, one policy for every backend:
        ``checkpoint_best`` when the trainer has a run folder, else the copy kept in memory
        when the epoch was best. Nothing changes when no epoch was best."""
        if self.save_path is not None:
            best = os.path.join(self.save_path, checkpoints.BEST)
            found = checkpoints.to_write(best, self.checkpoint_suffix)
            if self.best_epoch is not None and os.path.exists(found):
                self.load_network_state(self.load_state(found))
        elif self._best_network_state is not None:
            self.load_network_state(self._best_network_state)

    # -- state -----------------------------------------------------------------------

    def _core_state(self, epoch: int) -> dict[str, Any]:
        """What every checkpoint holds besides the backend's weights."""
        return {
            "epoch": int(epoch),
            "fold": self.fold,
            "best_val_score": self.best_val_score,
            "best_epoch": self.best_epoch,
            # checked before anything is written: a value the file cannot hold is refused
            "callbacks": self._collect_plugin_state(for_checkpoint=True),
            # Set when a stop came mid-epoch: resume trains the rest of that epoch.
            "interrupted": self._interrupted_at,
        }

    def update_state(self, file_name: str, *args: Any, **kwargs: Any) -> AbstractNetworkTrainer:
        """Load a checkpoint into this trainer (resume); returns the trainer."""
        return self._update_state(self.load_state(file_name, *args, **kwargs))

    def _update_state(self, new_state: dict[str, Any]) -> AbstractNetworkTrainer:
        """Restore a checkpoint read by ``load_state``: the network's state, the training
        state (what the file holds of it), then the core part (epoch, best score, callbacks)."""
        self.load_network_state(new_state)
        self.load_training_state(new_state)
        self.loaded_weights_epoch = checkpoints.weights_epoch(new_state)
        if "epoch" in new_state:
            self.start_epoch = int(new_state["epoch"]) + 1
            self._checkpoint_last_epoch = int(new_state["epoch"])  # a resume's checkpoint_last
        interrupted = new_state.get("interrupted") or {}
        self._resume_batches = self._batches_to_skip(interrupted)
        if interrupted:
            self.start_epoch = int(interrupted["epoch"])
        self.best_val_score = new_state.get("best_val_score", self.best_val_score)
        self.best_epoch = new_state.get("best_epoch", self.best_epoch)
        saved = new_state.get("callbacks") or {}
        self._epoch_now = None
        with self._plugin_code_may_exit():
            claimed = set(self._collect_plugin_state())
        claimed |= set(self._callback_chain.keys_with_state())
        unclaimed = sorted(set(saved) - claimed)
        if unclaimed and self.is_main_process:  # other ranks leave out rank-0-only callbacks
            warnings.warn(
                f"the checkpoint holds state for {unclaimed}, which no registered callback or "
                "plugin has now: that state is ignored. Register the same callbacks as the run "
                "that wrote the checkpoint to resume them.",
                stacklevel=2,
            )
        with self._plugin_code_may_exit():
            self._hooks.epochal_load_state_dict(trainer=self, state=saved)
        return self

    def _batches_to_skip(self, interrupted: Mapping[str, Any]) -> int:
        """This process's batches done in a stopped epoch. A run stopped with another number
        of processes did ``batches_done * world_size`` per-rank batches in all; a whole number
        of this run's steps is skipped, and a remainder is trained again (with a warning)."""
        done = int(interrupted.get("batches_done", 0))
        saved_world = int(interrupted.get("world_size", 1))
        world = self.collective.world_size
        if not done or saved_world == world:
            return done
        skip, again = divmod(done * saved_world, world)
        if again and self.is_main_process:
            warnings.warn(
                f"the checkpoint was written by {saved_world} processes in the middle of epoch "
                f"{interrupted.get('epoch')}, and {world} processes resume it: "
                f"{again * 100 // world}% of a step's samples are trained a second time",
                stacklevel=3,
            )
        return skip

    # -- the loop ------------------------------------------------------------------

    @staticmethod
    def _is_better_val_scores(
        old_val_score: float | None, new_val_score: float, mode: str = "highest"
    ) -> bool:
        """Whether ``new_val_score`` beats ``old_val_score``; ``None`` is beaten by any score."""
        _check_mode(mode)
        if new_val_score is None or math.isnan(new_val_score):
            return False
        if old_val_score is None or math.isnan(old_val_score):
            return True
        if mode == "highest":
            return new_val_score > old_val_score
        return new_val_score < old_val_score

    def train(
        self,
        num_epochs: int,
        datamgr_train: Any,
        datamgr_valid: Any | None = None,
        val_score_key: str | None = None,
        val_score_mode: str = "highest",
    ) -> Any:
        """Train from ``start_epoch`` to ``num_epochs``; return what ``_at_training_end`` returns.

        Each epoch: epoch-begin hooks, ``_train_single_epoch``, validation via
        ``predict`` (metrics prefixed ``val_``), best-score tracking, epoch-end
        hooks, checkpoints (``checkpoint_epoch_<n>`` every ``save_freq`` epochs,
        ``checkpoint_best`` when best, ``checkpoint_last`` always), then stop if a
        callback asked for it.

        A plugin's or callback's ``sys.exit()`` (or ``KeyboardInterrupt``) in a hook ends
        training with a :class:`~epochal.errors.PluginError` naming it and the hook; the
        checkpoints of the epochs finished before are kept.
        """
        with self._plugin_code_may_exit():
            return self._train_epochs(
                num_epochs, datamgr_train, datamgr_valid, val_score_key, val_score_mode
            )

    def _train_epochs(
        self,
        num_epochs: int,
        datamgr_train: Any,
        datamgr_valid: Any | None,
        val_score_key: str | None,
        val_score_mode: str,
    ) -> Any:
        """The loop of :meth:`train`."""
        if isinstance(num_epochs, bool) or not isinstance(num_epochs, int) or num_epochs < 1:
            raise ValueError(f"num_epochs must be an integer >= 1, got {num_epochs!r}")
        _check_mode(val_score_mode)
        if val_score_key is not None and datamgr_valid is None:
            warnings.warn(
                f"val_score_key={val_score_key!r} is given but there is no datamgr_valid: no "
                "best model is tracked and train returns the last epoch's network",
                stacklevel=3,
            )
        if self.start_epoch > num_epochs:
            warnings.warn(
                f"start_epoch is {self.start_epoch} but num_epochs is {num_epochs}: this run is "
                "already complete; raise num_epochs to train further",
                stacklevel=3,
            )
        self.state["stop_training"] = False
        self.val_score_key, self.val_score_mode = val_score_key, val_score_mode
        collective = self.collective
        if collective.distributed:  # each rank trains and validates on its share
            datamgr_train = datamgr_train.shard(collective.world_size, collective.rank)
            if datamgr_valid is not None:
                datamgr_valid = datamgr_valid.shard(
                    collective.world_size, collective.rank, even=False
                )
        self._epoch_now = None
        if not getattr(self, "_set_up", False):
            AbstractNetworkTrainer._setup(self)  # a backend that did not call it
        self._at_training_begin()
        metrics_val: dict[str, float] = {}
        warned_missing_key = False
        for epoch in range(self.start_epoch, num_epochs + 1):
            self._epoch_now = epoch
            self._at_epoch_begin(metrics_val, val_score_key, epoch, num_epochs)
            if self.state.get("stop_training"):
                break
            started = time.perf_counter()
            done, self._resume_batches = self._resume_batches, 0  # a resumed, stopped epoch
            # a lost peer, met training, validating or in a collective, is one error
            with collective.lost_peer(f"epoch {epoch}"):
                with closing_batchgen(datamgr_train.get_batchgen(seed=epoch)) as batchgen:
                    source: Iterable[dict] = skip_batches(batchgen, done) if done else batchgen
                    if self.interruptible:
                        if self._stop_agreed():
                            self._stopped(TrainingInterrupted(self.stop_requested, epoch, done))
                        source = stoppable(source, self, epoch, done)
                    timed = TimedBatches(source) if self.time_data_wait else None
                    try:
                        metrics_train = self._train_single_epoch(timed or source, epoch)
                    except TrainingInterrupted as stop:
                        self._stopped(stop)
                if collective.distributed:
                    metrics_train = collective.mean(metrics_train or {}, datamgr_train.n_samples)
                validated = time.perf_counter()
                self.state["train_seconds"] = validated - started
                if timed is not None:
                    self.state["data_wait_seconds"] = timed.wait_seconds
                metrics_val = self._validate(datamgr_valid) if datamgr_valid is not None else {}
                self.state["val_seconds"] = time.perf_counter() - validated
            is_best = False
            if val_score_key is not None and datamgr_valid is not None:
                score_key = self._find_score_key(val_score_key, metrics_val)
                if score_key is None:
                    if not warned_missing_key:
                        warnings.warn(
                            f"val_score_key {val_score_key!r} is not among the validation "
                            f"metrics {sorted(metrics_val)}: no best model is tracked and train "
                            "returns the last epoch's network",
                            stacklevel=3,
                        )
                        warned_missing_key = True
                else:
                    score = float(metrics_val[score_key])
                    is_best = self._is_better_val_scores(self.best_val_score, score, val_score_mode)
                    if is_best:
                        self.best_val_score = score
                        self.best_epoch = epoch
            self._at_epoch_end(
                metrics_val,
                val_score_key,
                epoch,
                is_best,
                metrics_train=dict(metrics_train or {}),
                num_epochs=num_epochs,
            )
            self._save_epoch_checkpoints(epoch, is_best)
            if self.state.get("stop_training"):
                break
        return self._at_training_end()

    def _stop_agreed(self) -> bool:
        """Whether to stop before the next batch: a stop was requested here or, when training
        in several processes, on any rank (all ranks must stop at the same batch)."""
        if not self.collective.distributed:
            return self.stop_requested is not None
        agreed = self.collective.agree_stop(self.stop_requested)
        if agreed is not None and self.stop_requested is None:  # (never undo a new signal)
            self.stop_requested = agreed
        return agreed is not None

    def _stopped(self, stop: TrainingInterrupted) -> None:
        """Write ``checkpoint_last`` for a stop before batch ``stop.batches_done`` of
        ``stop.epoch`` (the weights so far, marked to resume mid-epoch), then re-raise."""
        if self.save_path is not None:
            path = os.path.join(self.save_path, checkpoints.LAST)
            if self.is_main_process:
                os.makedirs(self.save_path, exist_ok=True)
                self._interrupted_at = {
                    "epoch": stop.epoch,
                    "batches_done": stop.batches_done,
                    "world_size": self.collective.world_size,
                }
                try:
                    self.save_state(path, stop.epoch - 1)
                finally:
                    self._interrupted_at = None
            self.collective.barrier()  # the file is there once any rank reports it
            stop.checkpoint = path
        raise stop

    def _validate(self, datamgr_valid: Any) -> dict[str, float]:
        """Validate at the manager's own batch size; keys get the ``val_`` prefix."""
        with closing_batchgen(datamgr_valid.get_batchgen()) as batchgen:
            _, _, metrics = self.predict(batchgen, batch_size=None)
        if self.collective.distributed:  # each rank validated its share: the global means
            metrics = self.collective.mean(metrics or {}, datamgr_valid.n_samples)
        return {f"{VAL_PREFIX}{key}": float(value) for key, value in metrics.items()}

    @staticmethod
    def _find_score_key(val_score_key: str, metrics_val: Mapping[str, Any]) -> str | None:
        """``val_score_key`` as given, else with the ``val_`` prefix, else ``None``."""
        if val_score_key in metrics_val:
            return val_score_key
        prefixed = VAL_PREFIX + val_score_key
        return prefixed if prefixed in metrics_val else None

    def _save_epoch_checkpoints(self, epoch: int, is_best: bool) -> None:
        """The epoch's checkpoints (:func:`epochal.runs.checkpoints.stems_after_epoch`), by
        rank 0; without a run folder, a copy of the best epoch's weights in memory."""
        if self.save_path is None:
            if is_best:  # every rank: each returns its network from train()
                self._best_network_state = checkpoints.snapshot(self.network_state())
            return
        if not self.is_main_process:
            return
        os.makedirs(self.save_path, exist_ok=True)
        for stem in checkpoints.stems_after_epoch(epoch, is_best, self.save_freq):
            self.save_state(os.path.join(self.save_path, stem), epoch)
        self._checkpoint_last_epoch = epoch
