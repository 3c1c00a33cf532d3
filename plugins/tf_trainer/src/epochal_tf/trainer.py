"""TfNetworkTrainer: delira's TensorFlow trainer on epochal's loop, on TF2 / Keras 3.

The core (``AbstractNetworkTrainer.train``) runs the epochs, validation, best-model tracking,
checkpoint scheduling and hooks; this class does one epoch, prediction and checkpoint I/O.
The training step (the network's ``closure``) is compiled once with ``tf.function``, with the
batch dimension left open, so a last partial batch does not trace it again. Losses and metrics
are added up in TensorFlow variables inside the step and read once per epoch.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np

from epochal.data.batching import batch_length, rebatch
from epochal.errors import NonFiniteLossError
from epochal.job.keys import SUPERVISED_KEYS, ConfigKey
from epochal.loop.distributed import Collective
from epochal.loop.supervised import MixedPrecisionArgs
from epochal.loop.trainer import AbstractNetworkTrainer
from epochal_tf._tf import keras, tf
from epochal_tf.devices import device_for
from epochal_tf.io import check_fits, load_checkpoint, restore_rng_state, rng_state, save_checkpoint
from epochal_tf.metrics import check_metrics
from epochal_tf.networks import AbstractTfNetwork, default_closure, to_float32
from epochal_tf.optim import (
    PRECISION_OPTIONS,
    MixedPrecision,
    build_optimizers,
    create_optims_default_tf,
    resolve_optimizer_cls,
    scheduler_callback,
)
from epochal_tf.steps import CompiledSteps
from epochal_tf.strategies import (
    check_strategy,
    distribute_variables,
    host_device,
    join_workers,
    make_strategy,
)

__all__ = ["TfNetworkTrainer"]


class TfNetworkTrainer(AbstractNetworkTrainer):
    """Trains a ``keras.Model`` (delira's ``TfNetworkTrainer`` API, name for name, on TF2).

    Args:
        network: an :class:`AbstractTfNetwork` (its ``closure`` is the training step) or any
            ``keras.Model`` (the default step: ``data`` -> network -> every loss on ``label``,
            summed, gradients applied by ``optimizers["default"]``).
        save_path: run folder for checkpoints (``None``: keep the best weights in memory).
        losses: ``{name: loss(y_true, y_pred)}``, Keras losses or functions.
        optimizer_cls, optimizer_params: a Keras optimizer class (or name, ``"adam"``) and its
            arguments.
        metrics: ``{name: fn(predictions, label) -> scalar}`` (delira's order; Keras's own
            metric functions are called ``(y_true, y_pred)``).
        lr_scheduler_cls, lr_scheduler_params: an epoch rule of :mod:`epochal_tf.schedulers`
            (``StepDecay``, ``CosineDecay``, ``WarmUp``, ``ReduceOnPlateau``; class or name such
            as ``"tf_step_decay"``) and its arguments.
        gpu_ids: ``[]`` for the CPU, ``[i]`` for GPU ``i``.
        save_freq: write ``checkpoint_epoch_<n>.tf.npz`` every ``save_freq`` epochs.
        optim_fn: ``optim_fn(network, optimizer_cls, **optimizer_params) -> {name: optimizer}``.
        fold, callbacks, start_epoch: as in :class:`AbstractNetworkTrainer`.
        mixed_precision: compute in 16 bits (``mixed_bfloat16`` on the CPU, ``mixed_float16``
            with loss scaling on a GPU), for this network only.
        mixed_precision_kwargs: ``dtype``, ``initial_scale``, ``dynamic_growth_steps``,
            ``enabled``.
        on_nonfinite: what a NaN or infinite training loss does: ``"raise"`` (stop with
            :class:`~epochal.errors.NonFiniteLossError` at the epoch's end, naming the first
            bad batch; no checkpoint of that epoch) or ``"skip_batch"`` (no update for that
            batch; counted as the train metric ``nonfinite_batches``). See
            :mod:`epochal_tf.steps`.
        strategy: ``None`` (one device), ``"mirrored"`` (the devices of ``gpu_ids``, or the
            logical CPUs, in this process) or ``"multi_worker"`` (one process per worker, as
            ``TF_CONFIG`` describes): ``tf.distribute``, see :mod:`epochal_tf.strategies`.
            ``batch_size`` is per process.
        **kwargs: ``run_eagerly=True`` (debugging: no ``tf.function``), ``jit_compile=True``
            (XLA); the rest is passed to the network's ``closure``.
    """

    #: What configs may name for this backend (:mod:`epochal.job.components`): the torch backend's
    #: names with Keras meanings, so that one config serves both.
    components: ClassVar[dict[str, dict[str, str]]] = {
        "models": {"mlp": "epochal_tf.models:MLP", "cnn": "epochal_tf.models:SmallCNN"},
        "losses": {
            "cross_entropy": "epochal_tf.metrics:CrossEntropy",
            "bce_with_logits": "keras.losses:BinaryCrossentropy",
            "mse": "keras.losses:MeanSquaredError",
            "l1": "keras.losses:MeanAbsoluteError",
            "smooth_l1": "keras.losses:Huber",
        },
        "metrics": {"accuracy": "epochal_tf.metrics:accuracy"},
        "optimizers": {
            name: f"keras.optimizers:{name}"
            for name in (
                "Adam",
                "AdamW",
                "SGD",
                "RMSprop",
                "Adagrad",
                "Adadelta",
                "Adamax",
                "Nadam",
                "Lion",
            )
        },
    }
    #: Modules whose loss and metric functions a config may name by path (:mod:`epochal.job.trust`).
    function_modules: ClassVar[tuple[str, ...]] = (
        "keras.losses",
        "keras.metrics",
        "keras.ops",
        "keras.src.losses",
        "keras.src.metrics",
        "keras.src.ops",
    )

    @classmethod
    def component_bases(cls, kind: str) -> tuple[type, ...]:
        """The classes a config's ``"module:attr"`` path must subclass in a ``kind`` slot."""
        return {
            "models": (keras.Model,),
            "losses": (keras.losses.Loss,),
            "metrics": (keras.metrics.Metric,),
            "optimizers": (keras.optimizers.Optimizer,),
        }.get(kind, ())

    single_process_kwargs: ClassVar[Mapping[str, Any]] = MappingProxyType({"strategy": None})
    #: The ``training.`` keys a config may set for this trainer, checked when it is loaded.
    config_keys: ClassVar[Mapping[str, ConfigKey]] = SUPERVISED_KEYS

    @classmethod
    def distributed_collective(cls, **trainer_kwargs: Any) -> Collective:
        """``strategy="multi_worker"``: this worker joined to the others of ``TF_CONFIG``
        (:mod:`epochal_tf.distributed`); this process alone otherwise. Checks the strategy
        arguments first, so that a bad one stops the run before its folder exists."""
        gpu_ids = list(trainer_kwargs.get("gpu_ids") or [])
        with warnings.catch_warnings():  # the trainer itself warns about its arguments
            warnings.simplefilter("ignore")
            mixed_precision = MixedPrecision.from_args(
                MixedPrecisionArgs.parse(
                    trainer_kwargs.get("mixed_precision", False),
                    trainer_kwargs.get("mixed_precision_kwargs"),
                    PRECISION_OPTIONS,
                ),
                bool(gpu_ids),
            )
        strategy = check_strategy(trainer_kwargs.get("strategy"), mixed_precision, trainer_kwargs)
        return join_workers(strategy, gpu_ids)

    @staticmethod
    def set_seed(seed: int) -> None:
        """Seed Keras (its seed generators, TensorFlow, numpy, random): weights and dropout."""
        keras.utils.set_random_seed(seed)

    def __init__(
        self,
        network: keras.Model,
        save_path: str | os.PathLike[str] | None,
        losses: dict[str, Callable[..., Any]],
        optimizer_cls: type[keras.optimizers.Optimizer] | str,
        optimizer_params: dict[str, Any] | None = None,
        metrics: dict[str, Callable[..., Any]] | None = None,
        lr_scheduler_cls: Any = None,
        lr_scheduler_params: dict[str, Any] | None = None,
        gpu_ids: list[int] | None = None,
        save_freq: int = 1,
        optim_fn: Callable[..., dict[str, keras.optimizers.Optimizer]] = create_optims_default_tf,
        fold: int = 0,
        callbacks: Iterable[object] | None = None,
        start_epoch: int = 1,
        mixed_precision: bool = False,
        mixed_precision_kwargs: dict[str, Any] | None = None,
        on_nonfinite: str = "raise",
        strategy: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.on_nonfinite = NonFiniteLossError.check_policy(on_nonfinite)
        self.strategy_name = check_strategy(strategy)
        #: The ``tf.distribute`` strategy the step runs under (``None``: one device).
        self.strategy: Any = None
        super().__init__(
            fold,
            callbacks,
            save_path=save_path,
            save_freq=save_freq,
            start_epoch=start_epoch,
            plugin_manager=kwargs.pop("plugin_manager", None),
        )
        if not isinstance(network, keras.Model):
            raise TypeError(
                f"network must be a keras.Model (Keras 3), got {type(network).__name__}; wrap "
                "layers in keras.Sequential or subclass epochal_tf.AbstractTfNetwork"
            )
        self.losses = dict(losses or {})
        self.metrics = check_metrics(metrics or {})
        self.optimizer_cls = optimizer_cls
        self.optimizer_params = dict(optimizer_params or {})
        run_eagerly = bool(kwargs.pop("run_eagerly", False))
        jit_compile = kwargs.pop("jit_compile", None)
        self.closure_kwargs = kwargs
        self._setup(
            network,
            optim_fn,
            lr_scheduler_cls,
            dict(lr_scheduler_params or {}),
            list(gpu_ids or []),
            mixed_precision,
            mixed_precision_kwargs,
        )
        self.steps = CompiledSteps(self, run_eagerly=run_eagerly, jit_compile=jit_compile)

    def _setup(
        self,
        network: keras.Model,
        optim_fn: Callable[..., dict[str, keras.optimizers.Optimizer]],
        lr_scheduler_cls: Any,
        lr_scheduler_params: dict[str, Any],
        gpu_ids: list[int],
        mixed_precision: bool,
        mixed_precision_kwargs: dict[str, Any] | None,
    ) -> None:
        self.mixed_precision = MixedPrecision.from_args(
            MixedPrecisionArgs.parse(
                mixed_precision, mixed_precision_kwargs, PRECISION_OPTIONS, type(self).__name__
            ),
            bool(gpu_ids),
        )
        if self.strategy_name is None:
            self.device = device_for(gpu_ids)
        else:  # the network's variables become the strategy's (mirrored) variables
            check_strategy(self.strategy_name, self.mixed_precision, vars(self))
            self.strategy, self.collective = make_strategy(self.strategy_name, gpu_ids)
            self.device = host_device(self.strategy)
            distribute_variables(network, self.strategy)
        self.input_device = self.output_device = self.device
        self.use_gpu = self.device.startswith("/GPU")
        self.module = network
        self.mixed_precision.apply_to(network)
        scope = self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()
        with tf.device(self.device), scope:  # optimizer variables: the strategy's too
            optimizers = optim_fn(
                network, resolve_optimizer_cls(self.optimizer_cls), **self.optimizer_params
            )
        if not isinstance(optimizers, dict) or not all(
            isinstance(opt, keras.optimizers.Optimizer) for opt in optimizers.values()
        ):
            raise TypeError(
                "optim_fn must return a dict {name: keras.optimizers.Optimizer}, got "
                f"{type(optimizers).__name__}"
            )
        self.optimizers = self.mixed_precision.wrap(optimizers)
        custom = isinstance(network, AbstractTfNetwork) and (
            type(network).closure is not AbstractTfNetwork.closure
        )
        self.closure = type(network).closure if custom else default_closure
        if custom and self.strategy is not None:
            raise ValueError(
                f"strategy={self.strategy_name!r} runs the default training step only, but "
                f"{type(network).__name__} has its own closure (it would have to weight its "
                "loss by each replica's share of the global batch); train it without a strategy"
            )
        if custom and self.on_nonfinite == "skip_batch":
            raise ValueError(
                f"on_nonfinite='skip_batch' needs the default training step, but "
                f"{type(network).__name__} has its own closure, which applies its updates "
                "itself; in your closure, skip the step yourself when the loss is not finite "
                "(e.g. under tf.cond; on_nonfinite='raise' works with closures)"
            )
        if not custom and "default" not in self.optimizers:
            raise ValueError(
                f"the default training step uses optimizers['default'], but optim_fn returned "
                f"{sorted(self.optimizers)}; write a closure for several optimizers"
            )
        if not custom and not self.losses:
            raise ValueError(
                "losses is empty: e.g. losses={'CE': "
                "keras.losses.SparseCategoricalCrossentropy(from_logits=True)}"
            )
        overridden = isinstance(network, AbstractTfNetwork) and (
            type(network).prepare_batch is not AbstractTfNetwork.prepare_batch
        )
        self.prepare_batch = type(network).prepare_batch if overridden else None
        if lr_scheduler_cls is not None:
            self.register_callback(scheduler_callback(lr_scheduler_cls, lr_scheduler_params))
        super()._setup()

    # -- training ------------------------------------------------------------------------

    def _train_single_epoch(self, batchgen: Iterable[dict], epoch: int) -> dict[str, float]:
        return self._train_epoch(batchgen, epoch)

    def _train_epoch(self, batchgen: Iterable[dict], epoch: int) -> dict[str, float]:
        hook, prepare, steps = self._batch_end_hook, self.prepare_batch, self.steps
        device = self.input_device
        steps.reset_sums()
        step = keys = None
        batch_nr = -1
        with tf.device(self.device):
            for batch_nr, batch in enumerate(batchgen):
                if prepare is not None:
                    batch = prepare(batch, device, device)
                if step is None:
                    step, keys = steps.train_step(batch, hook is not None)
                try:
                    outputs = step(*[batch[key] for key in keys])
                except (TypeError, ValueError) as exc:
                    # the batch does not fit the traced signature (other keys, or other shapes
                    # besides the batch dimension): one wider signature, then carry on
                    step, keys = steps.retrace_for(batch, hook is not None, exc)
                    outputs = step(*[batch[key] for key in keys])
                if hook is not None:
                    loss_vals, metric_vals = outputs
                    hook(
                        trainer=self,
                        epoch=epoch,
                        batch_nr=batch_nr,
                        losses=loss_vals,
                        metrics=metric_vals,
                    )
        if batch_nr < 0:
            raise ValueError(f"epoch {epoch} received no batches from the training data")
        return steps.read_sums(epoch)

    def predict(
        self, batchgen: Iterable[dict], batch_size: int | None = None
    ) -> tuple[np.ndarray, list[np.ndarray], dict[str, float]]:
        """Inference (``training=False``), batches merged up to ``batch_size`` samples.

        Returns ``(predictions, [labels], sample-weighted mean losses and metrics)``.
        """
        outputs, labels, sizes, value_sizes = [], [], [], []
        history: dict[str, list[Any]] = {}
        with tf.device(self.device):
            for batch in rebatch(batchgen, batch_size):
                prepared = batch
                if self.prepare_batch is not None:
                    prepared = self.prepare_batch(batch, self.input_device, self.output_device)
                evaluate, keys = self.steps.eval_step(prepared)
                predictions, values = evaluate(*[prepared[key] for key in keys])
                outputs.append(predictions)
                sizes.append(batch_length(batch))
                if "label" not in prepared:
                    continue
                labels.append(np.asarray(batch["label"]))
                value_sizes.append(sizes[-1])
                for name, value in values.items():
                    history.setdefault(name, []).append(value)
        if not outputs:
            raise ValueError("predict received no batches")
        predictions = tf.concat([to_float32(out) for out in outputs], 0).numpy()
        means = {}
        if history:
            weights = np.asarray(value_sizes, dtype=np.float64)
            stacked = tf.stack([tf.stack(values) for values in history.values()]).numpy()
            means = dict(
                zip(
                    history,
                    (stacked.astype(np.float64) @ weights / weights.sum()).tolist(),
                    strict=True,
                )
            )
        return predictions, ([np.concatenate(labels)] if labels else []), means

    # -- checkpoint primitives (epochal.loop.backend): the core does the rest ------------

    checkpoint_suffix: ClassVar[str] = ".tf.npz"
    checkpoint_suffix_aliases: ClassVar[tuple[str, ...]] = (".npz",)
    write_checkpoint = staticmethod(save_checkpoint)
    read_checkpoint = staticmethod(load_checkpoint)

    def network_state(self) -> dict[str, Any]:
        variables = self.module.variables
        return {"model": [v.numpy() for v in variables], "model_paths": [v.path for v in variables]}

    def load_network_state(self, state: Mapping[str, Any]) -> None:
        variables = self.module.variables
        own = [(v.path, tuple(v.shape)) for v in variables]
        check_fits(own, state["model"], state.get("model_paths"))
        for variable, value in zip(variables, state["model"], strict=True):
            variable.assign(value)

    def training_state(self) -> dict[str, Any]:
        optimizers = self.optimizers.items()
        return {
            "optimizers": {name: [v.numpy() for v in opt.variables] for name, opt in optimizers},
            "rng": rng_state(),
        }

    def load_training_state(self, state: Mapping[str, Any]) -> None:
        build_optimizers(self.optimizers, self.module)
        for name, optimizer in self.optimizers.items():
            saved = state.get("optimizers", {}).get(name)
            if saved is None:
                continue
            if not optimizer.built:
                raise ValueError(
                    f"optimizer {name!r} is not built yet, so its state cannot be restored: "
                    "build it in optim_fn (optimizer.build(variables)) before resuming"
                )
            own = [(v.path, tuple(v.shape)) for v in optimizer.variables]
            check_fits(own, saved, what=f"optimizer {name!r}")
            for variable, value in zip(optimizer.variables, saved, strict=True):
                variable.assign(value)
        if state.get("rng"):
            restore_rng_state(state["rng"])
