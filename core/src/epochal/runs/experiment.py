"""``Experiment``: delira's experiment, framework-neutral: run, resume, test and k-fold.

The backend's trainer comes from the registry by name (``backend="<name>"``); models, losses,
metrics and optimizers may be given as objects or by name (:mod:`epochal.job.components`). Each
run gets its own folder: ``config.toml``, checkpoints, ``summary.json`` and what the job's
callbacks write there (metrics, event logs, plots).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from epochal.errors import ConfigError, EpochalError
from epochal.job.backends import backend_name, backend_trainer, default_backend
from epochal.job.components import resolve_component, seed_everything
from epochal.job.limits import check_output_dir, check_seed
from epochal.job.params import Parameters
from epochal.job.ready_models import check_model_arguments, model_error
from epochal.job.spec import Job
from epochal.job.trainer_args import TRAINING_KEYS, build_named, trainer_kwargs
from epochal.loop.interrupt import TrainingInterrupted, stop_on_signals
from epochal.runs import checkpoints
from epochal.runs.files import atomic_write, remove_stale_temp_files
from epochal.runs.folder import (
    RunRecorder,
    RunResult,
    new_run_dir,
    own_run_dir,
    read_summary,
    reconcile_best,
    versions,
    write_summary,
)
from epochal.runs.kfold import KFoldResult, cross_validate

__all__ = ["TRAINING_KEYS", "Experiment", "KFoldResult", "RunResult"]


class Experiment:
    """Sets up and runs trainings of one model (delira's ``Experiment`` API, any backend).

    Args:
        params: :class:`Parameters`, a ``{"model": ..., "training": ...}`` dict, a TOML path,
            or a checked config's typed :class:`~epochal.job.spec.Job` (what
            :meth:`from_config` passes). ``model`` holds the model's keyword arguments;
            ``training`` the losses, optimizer, metrics, scheduler, batch sizes and any trainer
            keyword argument.
        model_cls: the network class (or factory), or its name for the backend (``"mlp"``).
        n_epochs: epochs per run (default: ``training.num_epochs``).
        name: the experiment's name, the folder under ``save_path`` that holds its runs.
        save_path: where runs go (default ``./runs``).
        key_mapping: delira's; epochal's trainers feed ``batch["data"]`` to the network.
        val_score_key: the validation metric that picks the best epoch (default: the
            ``training.val_score_key``, else the first metric, else the first loss).
        optim_builder: ``optim_fn`` for the trainer (default: the backend's).
        checkpoint_freq: write ``checkpoint_epoch_<n>`` every this many epochs.
        trainer_cls: the trainer class (default: the one registered as ``backend``).
        backend: the registered backend name (default: the default job's backend when it is
            installed, else another installed one: :func:`epochal.job.backends.default_backend`).
        **kwargs: trainer keyword arguments (``gpu_ids``, ``mixed_precision``,
            ``callbacks``, ...), plus ``seed``, ``val_score_mode`` and ``trusted_modules``
            (modules whose functions ``"module:attr"`` strings may name: :mod:`epochal.job.trust`).
    """

    def __init__(
        self,
        params: Parameters | Job | Mapping[str, Any] | str | os.PathLike[str],
        model_cls: Any,
        n_epochs: int | None = None,
        name: str | None = None,
        save_path: str | os.PathLike[str] | None = None,
        key_mapping: Mapping[str, str] | None = None,
        val_score_key: str | None = None,
        optim_builder: Callable[..., Any] | None = None,
        checkpoint_freq: int = 1,
        trainer_cls: type | None = None,
        backend: str | None = None,
        **kwargs: Any,
    ) -> None:
        #: The same config as typed objects (:class:`epochal.job.spec.Job`), checked once: an
        #: experiment built from a config reads its model and training groups from it.
        self.job: Job | None = params if isinstance(params, Job) else None
        self._params: Parameters | None = None
        if isinstance(params, (str, os.PathLike)):
            self._params = Parameters.load(params)
        elif isinstance(params, Parameters):
            self._params = params
        elif self.job is None:
            self._params = Parameters.from_dict(params)
        if backend is None:
            backend = backend_name(trainer_cls) if trainer_cls is not None else None
            backend = backend or default_backend()
        self.backend = backend
        self.trainer_cls = trainer_cls if trainer_cls is not None else backend_trainer(backend)
        #: Modules whose functions a ``"module:attr"`` string may name (:mod:`epochal.job.trust`).
        self.trusted_modules: tuple[str, ...] = tuple(kwargs.pop("trusted_modules", None) or ())
        self.model_cls = resolve_component(
            self.trainer_cls, "models", model_cls, "model", self.trusted_modules
        )
        training = self._training()
        self.n_epochs = n_epochs or training.get("num_epochs") or training.get("n_epochs")
        self.name = name or getattr(self.model_cls, "__name__", "experiment")
        if "\x00" in self.name:  # a folder name: refused now, not when the run folder is made
            raise ConfigError(f"name {self.name!r} contains a NUL byte (\\x00)")
        self.save_path = os.fspath(save_path) if save_path is not None else "runs"
        self.key_mapping = dict(key_mapping) if key_mapping else None
        self.val_score_key = val_score_key or training.get("val_score_key") or self._first_score()
        self.optim_builder = optim_builder
        self.checkpoint_freq = checkpoint_freq
        self.seed: int | None = check_seed(kwargs.pop("seed", None), "seed")
        self.val_score_mode: str | None = kwargs.pop("val_score_mode", None)
        self.kwargs = kwargs
        #: The resolved config this experiment was built from (set by ``from_config``); lets
        #: ``run``/``resume``/``kfold`` build their data and write ``config.toml``.
        self.config: dict[str, Any] | None = None
        self.last_run: RunResult | None = None

    @classmethod
    def from_config(cls, config: Any, overrides: Iterable[str] = ()) -> Experiment:
        """From a TOML file, a config dict or the embedded default (``None``); ``overrides``
        are ``"dotted.key=value"`` strings."""
        from epochal.job.build import experiment_from_config
        from epochal.job.config import load_config

        return experiment_from_config(load_config(config, overrides))

    # -- setting up ------------------------------------------------------------------------

    @property
    def params(self) -> Parameters:
        """delira's :class:`Parameters` of this experiment. One built from a config makes
        them from its job when they are first asked for; from then on (and when they are
        set) they are what the experiment trains with, as in delira."""
        if self._params is None:
            assert self.job is not None
            self._params = Parameters(
                {"model": dict(self.job.model), "training": self.job.training_kwargs(False)},
                dataclasses.asdict(self.job.variable),
            )
        return self._params

    @params.setter
    def params(self, params: Parameters) -> None:
        self._params = params

    def _model_kwargs(self, params: Parameters | None = None) -> dict[str, Any]:
        """The model's keyword arguments: ``params``', else the job's or the experiment's."""
        if params is None and self._params is None and self.job is not None:
            return self.job.model_kwargs()
        return (params or self.params).model_kwargs

    def _training(self, params: Parameters | None = None) -> dict[str, Any]:
        """The training group: ``params``', else the job's (:meth:`Job.training_kwargs`, for
        an experiment built from a config) or the experiment's :class:`Parameters`'."""
        if params is None and self._params is None and self.job is not None:
            return self.job.training_kwargs()
        return (params or self.params).training_kwargs

    def _first_score(self) -> str | None:
        training = self._training()
        for group in ("metrics", "val_metrics", "losses"):
            if training.get(group):
                return sorted(training[group])[0]
        return None

    def _score_mode(self) -> str:
        training = self._training()
        mode = self.val_score_mode or training.get("val_score_mode")
        if mode:
            return mode
        losses = training.get("losses") or {}
        key = (self.val_score_key or "").removeprefix("val_")
        return "lowest" if key in losses else "highest"  # a loss falls, a metric rises

    def trainer_kwargs(self, params: Parameters | None = None) -> dict[str, Any]:
        """The trainer's keyword arguments from the training group (``params``', else the
        job's or the experiment's), names resolved for the backend and checked against the
        trainer's declared keys and signature (:mod:`epochal.job.trainer_args`)."""
        return trainer_kwargs(
            self.trainer_cls,
            self._training(params),
            save_freq=self.checkpoint_freq,
            optim_fn=self.optim_builder,
            extra=self.kwargs,
            trusted=self.trusted_modules,
            network_cls=self.model_cls,
        )

    def build_network(self, params: Parameters | None = None) -> Any:
        """The model, built from the ``model`` group (seeded first when ``seed`` is set)."""
        if self.seed is not None:
            seed_everything(self.trainer_cls, self.seed)
        model_kwargs = self._model_kwargs(params)
        check_model_arguments(self.model_cls, model_kwargs)  # its declared checks, by key
        try:
            return self.model_cls(**model_kwargs)
        except (TypeError, ValueError, OverflowError, RuntimeError, MemoryError) as exc:
            if isinstance(exc, EpochalError):
                raise
            # A model without declared checks refused its arguments (a size it cannot
            # allocate): the config's [model] table as a whole, and not a failed training
            # (exit 2, not 1).
            raise model_error(self.model_cls, model_kwargs, exc) from exc

    def setup(self, params: Parameters | None = None, training: bool = True, **kwargs: Any) -> Any:
        """A trainer for a fresh network (delira's ``setup``); ``kwargs`` go to the trainer."""
        return self._trainer({**self.trainer_kwargs(params), **kwargs}, params)

    def _trainer(
        self, arguments: Mapping[str, Any], params: Parameters | None = None, **extra: Any
    ) -> Any:
        """The trainer built from ``arguments`` (the trainer's keyword arguments, computed once
        per run by :meth:`trainer_kwargs`) and ``extra``, for a network of ``params``."""
        trainer_kwargs = {**arguments, **extra}
        network = trainer_kwargs.pop("network", None) or self.build_network(params)
        save_path = trainer_kwargs.pop("save_path", None)
        try:
            return self.trainer_cls(network, save_path, **trainer_kwargs)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, EpochalError):
                raise
            # Each declared key was checked by name (trainer_kwargs); what the trainer still
            # refuses is the training group's as a whole (exit 2, not a failed training).
            raise ConfigError(f"training: {exc}") from exc

    def _callbacks(self, n_batches: int | None = None) -> list[object]:
        if self.config is None:
            return []
        from epochal.job.build import build_callbacks

        return build_callbacks(
            self.job or self.config, self._score_mode(), self.val_score_key, n_batches
        )

    def _data(self, train_data: Any, val_data: Any) -> tuple[Any, Any]:
        if train_data is None:
            if self.config is None:
                raise ConfigError(
                    "no training data: pass train_data, or build the experiment with "
                    "Experiment.from_config so that it knows its data"
                )
            from epochal.job.build import build_data

            return build_data(self.job or self.config, self.seed)
        training = self._training()
        batch_size = int(training.get("batch_size", 64))
        val_batch = int(training.get("val_batch_size", max(batch_size, 256)))
        workers = int(training.get("num_workers", 0))
        return (
            _as_manager(train_data, batch_size, workers, "random", self.seed),
            _as_manager(val_data, val_batch, 0, "sequential", None)
            if val_data is not None
            else None,
        )

    # -- running ---------------------------------------------------------------------------

    def run(
        self,
        train_data: Any = None,
        val_data: Any = None,
        params: Parameters | None = None,
        run_dir: str | os.PathLike[str] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Train in a new run folder and return the best network (``last_run`` has the rest).

        ``train_data``/``val_data``: data managers or datasets (wrapped with the training
        group's ``batch_size``); left out, they come from the config. ``handle_signals=True``
        makes SIGTERM and Ctrl-C stop at the next batch boundary with a checkpoint to resume
        from (:class:`~epochal.loop.interrupt.TrainingInterrupted` is raised). A run folder held by
        another process is refused, and so is one that cannot be written (before the data
        are built).
        """
        num_epochs = self._epochs(kwargs.pop("num_epochs", None))
        handle_signals = kwargs.pop("handle_signals", False)
        self._check_output_dir(run_dir)
        train, val = self._data(train_data, val_data)
        arguments = {**self.trainer_kwargs(params), **kwargs}  # once: the processes and trainer
        with self._processes(arguments) as collective:
            callbacks = self._callbacks(_batches_per_rank(train, collective))
            # Everything is built before the folder exists: a config error leaves no empty
            # run. In several processes, rank 0 names the folder and the others use it.
            run_dir = os.fspath(run_dir) if run_dir else None
            if run_dir is None and collective.is_main:
                run_dir = new_run_dir(self.save_path, self.name)
            run_dir = collective.broadcast(run_dir)
            trainer = self._trainer(arguments, params, save_path=run_dir)
            for callback in callbacks:
                trainer.register_callback(callback)
            with own_run_dir(run_dir, collective):
                if collective.is_main:
                    remove_stale_temp_files(run_dir)  # a run_dir whose first run was killed
                    self._write_config(run_dir, params)
                return self._train(trainer, run_dir, train, val, num_epochs, handle_signals)

    def _check_output_dir(self, run_dir: Any = None, key: str = "run_dir") -> None:
        """Refuse (:class:`ConfigError`) a ``run_dir``, else a ``save_path``, that cannot hold a
        run: a file on the way, a read-only file system, no write permission, ``/proc``."""
        if run_dir:
            check_output_dir(run_dir, key)
        else:
            key = "experiment.save_path" if self.config is not None else "save_path"
            check_output_dir(self.save_path, key)

    @contextlib.contextmanager
    def _processes(self, arguments: Mapping[str, Any] | None = None) -> Any:
        """The processes this run trains in, joined for its duration (the backend's launcher
        started them; one process otherwise); ``arguments``: the trainer's keyword arguments
        (:meth:`trainer_kwargs`), which hold the backend's distributed options."""
        if arguments is None:
            arguments = self.trainer_kwargs()
        try:
            collective = self.trainer_cls.distributed_collective(**arguments)
        except (TypeError, ValueError) as exc:  # e.g. dist_backend: the config's
            if isinstance(exc, EpochalError):
                raise
            raise ConfigError(f"training: {exc}") from exc
        try:
            yield collective
        finally:
            collective.close()

    def resume(
        self,
        run_dir: str | os.PathLike[str],
        train_data: Any = None,
        val_data: Any = None,
        num_epochs: int | None = None,
        handle_signals: bool = False,
    ) -> Any:
        """Continue the run in ``run_dir`` from its ``checkpoint_last`` to ``num_epochs``
        (mid-epoch, if it was stopped there). ``handle_signals``: see :meth:`run`.

        A run folder with ``config.toml`` but no ``checkpoint_last`` (a run stopped before
        its first epoch ended, e.g. killed while it wrote its first checkpoint) is trained
        from epoch 1 in the same folder, as :meth:`run` would have: nothing was saved to
        continue from, and there is nothing else to lose.
        """
        run_dir = os.fspath(run_dir)
        if not os.path.isdir(run_dir):
            raise ConfigError(f"run folder {run_dir!r} does not exist")
        if not os.path.isfile(os.path.join(run_dir, "config.toml")) and (
            self._find_checkpoint(run_dir, "checkpoint_last") is None
        ):
            raise ConfigError(
                f"{run_dir} has no checkpoint_last and no config.toml: no run started there. "
                f"Train one in it with `epochal train --run-dir {run_dir}`"
            )
        check_output_dir(run_dir, "run_dir")
        train, val = self._data(train_data, val_data)
        seed_everything(self.trainer_cls, self.seed or 0)
        arguments = self.trainer_kwargs()  # once: the processes and the trainer
        with self._processes(arguments) as collective:
            trainer = self._trainer(arguments, save_path=run_dir)
            for callback in self._callbacks(_batches_per_rank(train, collective)):
                trainer.register_callback(callback)  # before the state load: they have state
            with own_run_dir(run_dir, collective):
                if collective.is_main:
                    remove_stale_temp_files(run_dir)  # left by a process killed mid-write
                collective.barrier()
                # looked for while the folder is held: a run that just ended is not restarted
                last = self._find_checkpoint(run_dir, "checkpoint_last")
                if last is not None:
                    try:
                        trainer.update_state(last)
                    except EpochalError as exc:  # a truncated, foreign or other-model file
                        raise ConfigError(str(exc)) from exc
                    if collective.is_main:
                        reconcile_best(trainer, run_dir)
                # else: the fresh trainer starts at epoch 1 (``resumed_at_epoch`` = 1)
                return self._train(trainer, run_dir, train, val, num_epochs, handle_signals, True)

    def _epochs(self, num_epochs: int | None) -> int:
        """``num_epochs``, else the experiment's; checked before anything is written."""
        num_epochs = self.n_epochs if num_epochs is None else num_epochs
        if num_epochs is None:
            raise ConfigError("the number of epochs is not set: training.num_epochs = 20")
        if isinstance(num_epochs, bool) or not isinstance(num_epochs, int) or num_epochs < 1:
            raise ConfigError(f"num_epochs must be an integer >= 1, got {num_epochs!r}")
        return num_epochs

    def _find_checkpoint(self, run_dir: str, stem: str) -> str | None:
        """``run_dir/stem`` (as the backends' ``load_state`` takes it) if that checkpoint exists."""
        return checkpoints.find(run_dir, stem)

    def restore(self, run_dir: str | os.PathLike[str], checkpoint: str = "best") -> Any:
        """A trainer holding the weights of ``checkpoint_<checkpoint>`` in ``run_dir`` (falls
        back to ``checkpoint_last`` when the run tracked no best), ready to ``predict``."""
        run_dir = os.fspath(run_dir)
        found = checkpoints.for_predict(run_dir, checkpoint)
        if found is None:
            raise ConfigError(f"{run_dir} holds no checkpoint (checkpoint_{checkpoint} or _last)")
        # in one process, whatever the run was trained in
        alone = getattr(self.trainer_cls, "single_process_kwargs", {})
        trainer = self.setup(callbacks=self._callbacks(), **alone)
        trainer.update_state(found)  # the callbacks only claim their state; they never run
        return trainer

    def _train(
        self,
        trainer: Any,
        run_dir: str,
        train: Any,
        val: Any,
        num_epochs: int | None,
        handle_signals: bool = False,
        resumed: bool = False,
    ) -> Any:
        num_epochs = self._epochs(num_epochs)
        recorder = RunRecorder()
        trainer.register_callback(recorder)
        previous = read_summary(run_dir) if resumed else {}
        started = time.perf_counter()
        summary: dict[str, Any] = {
            "name": self.name,
            "backend": self.backend,
            "status": "running",
            "num_epochs": int(num_epochs),
            "val_score_key": self.val_score_key,
            "val_score_mode": self._score_mode(),
            "started": previous.get("started") or _dt.datetime.now().isoformat(timespec="seconds"),
            "versions": versions(self.trainer_cls),
        }
        if resumed:
            summary["resumed_at_epoch"] = trainer.start_epoch  # the first epoch trained now
            if previous.get("status") == "running":  # that process never wrote its end
                summary["previous_run"] = f"ended without a word (pid {previous.get('pid')})"
        summary["pid"] = os.getpid()
        if trainer.collective.distributed:
            summary["processes"] = trainer.collective.world_size
        main = trainer.is_main_process  # the other ranks write nothing
        if main:
            write_summary(run_dir, summary)  # "running" until the end: a killed run shows it
        signals = (
            stop_on_signals(trainer, announce=main) if handle_signals else contextlib.nullcontext()
        )
        try:
            with signals:
                network = trainer.train(
                    int(num_epochs),
                    train,
                    val,
                    self.val_score_key if val is not None else None,
                    self._score_mode(),
                )
            summary["status"] = "stopped early" if trainer.state.get("stop_training") else "done"
        except TrainingInterrupted as stop:
            summary["status"] = f"stopped by {stop.reason}"
            summary["stopped_at"] = {"epoch": stop.epoch, "batches_done": stop.batches_done}
            raise
        except BaseException as exc:
            summary["status"] = "failed" if not isinstance(exc, KeyboardInterrupt) else "stopped"
            summary["error"] = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            summary.update(
                epochs_run=(recorder.epochs[-1] if recorder.epochs else previous.get("epochs_run")),
                best_epoch=trainer.best_epoch,
                best_val_score=trainer.best_val_score,
                last_metrics=recorder.last or previous.get("last_metrics", {}),
                wall_seconds=round(
                    time.perf_counter() - started + previous.get("wall_seconds", 0.0), 3
                ),
                finished=_dt.datetime.now().isoformat(timespec="seconds"),
            )
            try:
                if main:
                    write_summary(run_dir, summary)
            except OSError as exc:  # e.g. the full disk that failed the run: keep its error
                if sys.exc_info()[1] is None:
                    raise
                warnings.warn(f"summary.json was not updated: {exc}", stacklevel=2)
        self.last_run = RunResult(run_dir, trainer, network, summary)
        return network

    # -- run folder files ------------------------------------------------------------------

    def _write_config(self, run_dir: str, params: Parameters | None) -> None:
        import tomli_w

        from epochal.job.build import config_for_saving

        config = config_for_saving(self, params)
        with atomic_write(os.path.join(run_dir, "config.toml")) as handle:
            handle.write(tomli_w.dumps(config).encode())

    # -- testing and cross-validation ------------------------------------------------------

    def test(
        self, network: Any, test_data: Any, metrics: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> tuple[Any, list[Any], dict[str, float]]:
        """Predict ``test_data`` with ``network``; returns ``trainer.predict``'s
        ``(predictions, labels, mean losses and metrics)``. ``metrics`` may use names."""
        trainer_kwargs = self.trainer_kwargs()
        named = build_named(
            self.trainer_cls, "metrics", "metrics", metrics or {}, self.trusted_modules
        )
        if named:  # else the training group's metrics, if it has any
            trainer_kwargs["metrics"] = named
        trainer_kwargs.update(getattr(self.trainer_cls, "single_process_kwargs", {}))
        trainer_kwargs.update(kwargs)
        trainer = self.trainer_cls(network, None, **trainer_kwargs)
        batch_size = int(self._training().get("val_batch_size", 256))
        manager = _as_manager(test_data, batch_size, 0, "sequential", None)
        from epochal.data.batching import closing_batchgen

        with closing_batchgen(manager.get_batchgen()) as batchgen:
            return trainer.predict(batchgen)

    def kfold(
        self,
        data: Any = None,
        metrics: Mapping[str, Any] | None = None,
        num_epochs: int | None = None,
        num_splits: int = 5,
        shuffle: bool = True,
        random_seed: int | None = None,
        split_type: str = "random",
        val_split: float | None = 0.2,
        label_key: str = "label",
        run_dir: str | os.PathLike[str] | None = None,
    ) -> KFoldResult:
        """Train and test on ``num_splits`` folds of ``data`` (a dataset or data manager; from
        the config if left out); ``val_split`` of each fold's training part validates."""
        if split_type not in ("random", "stratified"):
            raise ConfigError(f"split_type must be 'random' or 'stratified', got {split_type!r}")
        if isinstance(num_splits, bool) or not isinstance(num_splits, int) or num_splits < 2:
            raise ConfigError(f"num_splits must be an integer >= 2, got {num_splits!r}")
        check_seed(random_seed, "random_seed")
        self._check_output_dir(run_dir)
        dataset = self._kfold_dataset(data)
        seed = random_seed if random_seed is not None else self.seed
        with self._processes() as collective:  # one root folder, named by rank 0
            root = os.fspath(run_dir) if run_dir else None
            if root is None and collective.is_main:
                root = new_run_dir(self.save_path, self.name + "-kfold")
            root = collective.broadcast(root)
            return cross_validate(
                self,
                dataset,
                metrics,
                num_epochs,
                num_splits,
                shuffle,
                seed,
                split_type,
                val_split,
                label_key,
                root,
            )

    def _kfold_dataset(self, data: Any) -> Any:
        if data is None:
            if self.config is None:
                raise ConfigError("kfold needs data, or an experiment built with from_config")
            from epochal.job.build import build_dataset

            return build_dataset(self.job or self.config)
        dataset = getattr(data, "dataset", data)
        if not hasattr(dataset, "kfold"):
            raise TypeError(f"kfold needs a dataset or a DataManager, got {type(data).__name__}")
        return dataset


def _batches_per_rank(train: Any, collective: Any) -> int | None:
    """Batches an epoch of ``train`` has in this process (its share, in several processes):
    what the progress bar counts to."""
    if collective.distributed and hasattr(train, "shard"):
        train = train.shard(collective.world_size, collective.rank)
    return getattr(train, "n_batches", None)


def _as_manager(data: Any, batch_size: int, workers: int, sampler: str, seed: int | None) -> Any:
    if hasattr(data, "get_batchgen"):
        return data
    from epochal.data import DataManager

    return DataManager(data, min(batch_size, len(data)), workers, sampler_cls=sampler, seed=seed)
