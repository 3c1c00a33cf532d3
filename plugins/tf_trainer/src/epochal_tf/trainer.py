"""TfNetworkTrainer: delira's TensorFlow trainer on epochal's loop, on TF2 / Keras 3.

The core (:class:`~epochal.loop.supervised.SupervisedTrainer`) does all but the framework's
primitives. The training step is compiled once with ``tf.function`` (:mod:`epochal_tf.steps`),
the batch dimension left open; losses and metrics are summed in the graph, read once an epoch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np

from epochal.loop.distributed import Collective
from epochal.loop.supervised import SupervisedTrainer, component_table
from epochal_tf import optim, strategies
from epochal_tf._tf import keras, tf
from epochal_tf.devices import CONFIG_KEYS, device_for
from epochal_tf.io import check_fits, load_checkpoint, restore_rng_state, rng_state, save_checkpoint
from epochal_tf.metrics import check_metrics
from epochal_tf.networks import AbstractTfNetwork, default_closure, to_float32
from epochal_tf.steps import CompiledSteps

__all__ = ["TfNetworkTrainer", "TfOptions"]


@dataclass(frozen=True)
class TfOptions:
    """TfNetworkTrainer's own parameters (see its docstring): a ``tf.distribute`` strategy."""

    strategy: str | None = None


class TfNetworkTrainer(SupervisedTrainer):
    """Trains a ``keras.Model`` (delira's ``TfNetworkTrainer`` API, name for name, on TF2).

    Args:
        network: an :class:`AbstractTfNetwork` (its ``closure`` is the training step) or any
            ``keras.Model`` (the default step: ``data`` -> network -> every loss on ``label``,
            summed, gradients applied by ``optimizers["default"]``).
        losses: ``{name: loss(y_true, y_pred)}``, Keras losses or functions.
        optimizer_cls, optimizer_params: a Keras optimizer class (or name) and its arguments.
        metrics: ``{name: fn(predictions, label) -> scalar}`` (delira's order; Keras's own
            metric functions are called ``(y_true, y_pred)``).
        lr_scheduler_cls, lr_scheduler_params: an epoch rule of :mod:`epochal_tf.schedulers`
            (``StepDecay``, ``CosineDecay``, ``WarmUp``, ``ReduceOnPlateau``; class or name such
            as ``"tf_step_decay"``) and its arguments.
        save_path, gpu_ids (``[i]``: GPU ``i``), save_freq, optim_fn, fold, callbacks,
            start_epoch: as in :class:`~epochal.loop.supervised.SupervisedTrainer`.
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

    The training step is :meth:`~epochal.loop.supervised.SupervisedTrainer.train_step`, which
    the compiled step runs: a subclass overrides it to change what a batch does.
    """

    options_type: ClassVar[type] = TfOptions
    default_optim_fn = staticmethod(optim.create_optims_default_tf)
    network_base: ClassVar[type] = AbstractTfNetwork
    default_closure = staticmethod(default_closure)
    mixed_precision_options: ClassVar[Mapping[str, float]] = optim.PRECISION_OPTIONS
    config_keys: ClassVar[Mapping[str, Any]] = CONFIG_KEYS  # checked when a job is validated
    backend_kwargs_names: ClassVar[frozenset[str]] = frozenset({"run_eagerly", "jit_compile"})
    losses_example: ClassVar[str] = (
        "{'CE': keras.losses.SparseCategoricalCrossentropy(from_logits=True)}"
    )

    #: What configs may name for this backend (:mod:`epochal.job.components`): the torch backend's
    #: names with Keras meanings, so that one config serves both.
    components: ClassVar[dict[str, dict[str, str]]] = component_table(
        models={"epochal_tf.models": "mlp=MLP cnn=SmallCNN"},
        losses={
            "epochal_tf.metrics": "cross_entropy=CrossEntropy",
            "keras.losses": "bce_with_logits=BinaryCrossentropy mse=MeanSquaredError"
            " l1=MeanAbsoluteError smooth_l1=Huber",
        },
        metrics={"epochal_tf.metrics": "accuracy"},
        optimizers={
            "keras.optimizers": "Adam AdamW SGD RMSprop Adagrad Adadelta Adamax Nadam Lion"
        },
    )
    #: Modules whose loss and metric functions a config may name by path (:mod:`epochal.job.trust`).
    function_modules: ClassVar[tuple[str, ...]] = tuple(
        f"keras.{src}{kind}" for src in ("", "src.") for kind in ("losses", "metrics", "ops")
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

    @classmethod
    def distributed_collective(cls, **trainer_kwargs: Any) -> Collective:
        """``strategy="multi_worker"``: this worker joined to the others of ``TF_CONFIG``
        (:mod:`epochal_tf.distributed`); this process alone otherwise. Checks the strategy
        arguments first, so that a bad one stops the run before its folder exists."""
        gpu_ids = list(trainer_kwargs.get("gpu_ids") or [])
        precision = optim.MixedPrecision.from_args(cls.precision_of(trainer_kwargs), bool(gpu_ids))
        name = cls.options_of(trainer_kwargs).strategy
        strategy = strategies.check_strategy(name, precision, trainer_kwargs)
        return strategies.join_workers(strategy, gpu_ids)

    @staticmethod
    def set_seed(seed: int) -> None:
        """Seed Keras (its seed generators, TensorFlow, numpy, random): weights and dropout."""
        keras.utils.set_random_seed(seed)

    # -- training primitives (epochal.loop.backend.TrainingPrimitives) ---------------------

    def check_arguments(self, network: keras.Model) -> None:
        if not isinstance(network, keras.Model):
            raise TypeError(
                f"network must be a keras.Model (Keras 3), got {type(network).__name__}; wrap "
                "layers in keras.Sequential or subclass epochal_tf.AbstractTfNetwork"
            )
        self.metrics = check_metrics(self.metrics)

    def place_network(self, network: keras.Model, gpu_ids: list[int]) -> keras.Model:
        """One device, or a strategy's (whose mirrored variables the network's become); the
        mixed-precision policy on the network's layers."""
        self.strategy_name = strategies.check_strategy(self.options.strategy)
        #: The ``tf.distribute`` strategy the step runs under (``None``: one device).
        self.strategy: Any = None
        self.mixed_precision = optim.MixedPrecision.from_args(self.precision, bool(gpu_ids))
        if self.strategy_name is None:
            self.device = device_for(gpu_ids)
        else:
            strategies.check_strategy(self.strategy_name, self.mixed_precision, vars(self))
            self.strategy, self.collective = strategies.make_strategy(self.strategy_name, gpu_ids)
            self.device = strategies.host_device(self.strategy)
            strategies.distribute_variables(network, self.strategy)
        self.input_device = self.output_device = self.device
        self.use_gpu = self.device.startswith("/GPU")
        self.mixed_precision.apply_to(network)
        return network

    def create_optimizers(self, optim_fn: Callable[..., dict[str, Any]]) -> dict[str, Any]:
        scope = self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()
        with tf.device(self.device), scope:  # optimizer variables: the strategy's too
            optimizer_cls = optim.resolve_optimizer_cls(self.optimizer_cls)
            return optim_fn(self.module, optimizer_cls, **self.optimizer_params)

    def wrap_optimizers(self, optimizers: dict[str, Any]) -> dict[str, Any]:
        return self.mixed_precision.wrap(optimizers)  # float16: LossScaleOptimizer

    def prepare_training(self) -> None:
        """The compiled steps (:mod:`epochal_tf.steps`)."""
        if self.strategy is not None and not self.uses_default_step:
            raise ValueError(
                f"strategy={self.strategy_name!r} runs the default training step only, but "
                f"{type(self.module).__name__} has its own closure or {type(self).__name__} its "
                "own train_step (which would have to weight its loss by each replica's share "
                "of the global batch); train it without a strategy"
            )
        self.steps = CompiledSteps(
            self,
            run_eagerly=bool(self.backend_kwargs.get("run_eagerly", False)),
            jit_compile=self.backend_kwargs.get("jit_compile"),
        )

    scheduler_callback = staticmethod(optim.scheduler_callback)

    def train_epoch(self, batches: Iterable[dict], epoch: int) -> dict[str, float]:
        """Each batch through the compiled step; the sums read once at the epoch's end."""
        with tf.device(self.device):
            return self.steps.run_epoch(batches, epoch, self.network_prepare_batch)

    def evaluating(self) -> contextlib.AbstractContextManager[Any]:
        return tf.device(self.device)

    def eval_step(self, batch: Mapping[str, Any]) -> tuple[Any, dict[str, Any] | None]:
        """Inference (``training=False``) in the compiled evaluation step."""
        prepare = self.network_prepare_batch
        prepared = batch if prepare is None else prepare(batch, self.device, self.device)
        evaluate, keys = self.steps.eval_step(prepared)
        predictions, values = evaluate(*[prepared[key] for key in keys])
        return predictions, (values if "label" in prepared else None)

    def stack_values(self, values: list[list[Any]]) -> np.ndarray:
        return tf.stack([tf.stack(batch_values) for batch_values in values]).numpy()

    def stack_batches(self, outputs: list[Any]) -> np.ndarray:
        return tf.concat([to_float32(output) for output in outputs], 0).numpy()

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
        optim.build_optimizers(self.optimizers, self.module)
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
