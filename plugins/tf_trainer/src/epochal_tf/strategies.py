"""The ``tf.distribute`` strategy of TfNetworkTrainer and the step under it.

``strategy="mirrored"``: one process, several devices (``gpu_ids``' GPUs, else the logical CPU
devices): the trainer splits each batch of the process over the devices. The core sees one
process (:class:`~epochal.loop.distributed.Collective`). ``strategy="multi_worker"``: one
process per worker (:mod:`epochal_tf.distributed`).

In both, ``batch_size`` is per process and the step runs under ``strategy.run``, each replica's
loss weighted by its share of the global batch (its samples / all replicas' samples), so that
the Keras optimizer, which sums the replicas' gradients in ``apply_gradients``, applies the
gradient of the global batch's mean loss: the single-device step, up to rounding.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from epochal.loop.distributed import Collective
from epochal_tf._tf import keras, tf
from epochal_tf.distributed import gpu_devices, multi_worker_strategy

__all__ = [
    "STRATEGIES",
    "check_strategy",
    "distribute_variables",
    "join_workers",
    "make_strategy",
    "replica_losses",
    "replicated_step",
]

#: The values of the trainer's ``strategy`` argument (``None``: no tf.distribute).
STRATEGIES = ("mirrored", "multi_worker")


def check_strategy(
    strategy: object, mixed_precision: Any = None, trainer_kwargs: Mapping[str, Any] | None = None
) -> str | None:
    """``strategy`` if it is ``None`` or one of :data:`STRATEGIES`, else a ``ValueError``
    naming them. Refuses what would train wrongly under a strategy (see the messages)."""
    if strategy is None:
        return None
    if strategy not in STRATEGIES:
        raise ValueError(
            f"strategy must be one of {STRATEGIES} (or None for one device), got {strategy!r}"
        )
    if mixed_precision is not None and mixed_precision.uses_loss_scaling:
        raise ValueError(
            f"strategy={strategy!r} with float16 mixed precision is not supported: Keras's "
            "LossScaleOptimizer checks the gradients for Inf/NaN on each replica alone, so "
            "replicas disagree on skipping a step and the weights become NaN. Use "
            "mixed_precision_kwargs={'dtype': 'bfloat16'} (no loss scaling needed), or no strategy"
        )
    kwargs = trainer_kwargs or {}
    if kwargs.get("on_nonfinite") == "skip_batch":
        raise ValueError(
            f"on_nonfinite='skip_batch' is not supported with strategy={strategy!r}: every "
            "replica would have to agree on each skipped batch. Use on_nonfinite='raise'"
        )
    return str(strategy)


def _mirrored_strategy(gpu_ids: list[int]) -> Any:
    if gpu_ids:
        gpu_devices(gpu_ids)  # checks the ids
        devices = [f"/GPU:{i}" for i in gpu_ids]
    else:
        devices = [device.name for device in tf.config.list_logical_devices("CPU")]
    if len(devices) == 1:
        warnings.warn(
            f"strategy='mirrored' has one device ({devices[0]}), so it trains as without a "
            "strategy: list several GPUs in gpu_ids",
            UserWarning,
            stacklevel=4,
        )
    return tf.distribute.MirroredStrategy(devices)


def make_strategy(strategy: str, gpu_ids: list[int]) -> tuple[Any, Collective]:
    """The ``tf.distribute`` strategy named ``strategy`` and the core's view of the processes."""
    if strategy == "multi_worker":
        return multi_worker_strategy(gpu_ids)
    return _mirrored_strategy(gpu_ids), Collective()


def join_workers(strategy: str | None, gpu_ids: list[int] | None = None) -> Collective:
    """The processes a trainer with ``strategy`` trains in: all workers of ``TF_CONFIG`` for
    ``"multi_worker"`` (joined here), this one otherwise."""
    if check_strategy(strategy) == "multi_worker":
        return multi_worker_strategy(list(gpu_ids or []))[1]
    return Collective()


def host_device(strategy: Any) -> str:
    """Where the trainer's own variables (the epoch's sums) and ``predict`` run: the
    strategy's first device of this worker."""
    device = tf.DeviceSpec.from_string(strategy.extended.worker_devices[0])
    return f"/{device.device_type}:{device.device_index or 0}"


# -- the network's variables and the training step -----------------------------------------


def distribute_variables(network: keras.Model, strategy: Any) -> None:
    """Re-create the variables of ``network`` (built outside ``strategy.scope()``, as the
    Experiment builds it) as the strategy's mirrored variables, values kept.

    The same ``keras.Variable`` objects stay in the layers; each gets a new backing
    ``tf.Variable`` made under the scope (Keras's own ``_initialize``), so the network object,
    subclassed or not, is the one the caller holds.
    """
    if not network.built:
        raise ValueError(
            f"under a strategy the network must be built before the trainer (its variables are "
            f"made under the strategy's scope): start {type(network).__name__} with "
            "keras.Input(shape) or call network.build(input_shape)"
        )
    with strategy.scope():
        for variable in network.variables:
            variable._initialize(variable.value.read_value())


_MEAN_REDUCTIONS = ("sum_over_batch_size", "mean", "mean_with_sample_weight")


def replica_losses(losses: Mapping[str, Any], num_replicas: int) -> dict[str, Any]:
    """``losses`` for use in a replica: each replica's loss the mean over its own samples.

    A Keras ``Loss`` with a mean reduction, called in a replica, divides its value by the
    number of replicas (``Model.fit`` counts on pieces of equal size); that is undone here, and
    :func:`replicated_step` weights each replica by its exact share of the batch instead.
    """

    def unscaled(loss: Any) -> Callable[[Any, Any], Any]:
        def call(label: Any, output: Any) -> Any:
            return loss(label, output) * num_replicas

        return call

    return {
        name: unscaled(loss)
        if num_replicas > 1
        and isinstance(loss, keras.losses.Loss)
        and loss.reduction in _MEAN_REDUCTIONS
        else loss
        for name, loss in losses.items()
    }


def _split(tensor: Any, size: Any, context: Any, local: int) -> Any:
    """This replica's rows of the host batch ``tensor``: ``np.array_split``'s boundaries
    over the worker's ``local`` replicas (uneven batches allowed, a piece may be empty)."""
    index = context.replica_id_in_sync_group % local
    quotient, remainder = size // local, size % local
    start = index * quotient + tf.minimum(index, remainder)
    return tensor[start : start + quotient + tf.cast(index < remainder, tf.int32)]


def replicated_step(
    strategy: Any,
    replica_step: Callable[..., tuple[dict[str, Any], Any]],
    across_workers: bool,
) -> Callable[..., tuple[dict[str, Any], Any]]:
    """The host batch's step: ``step(*arrays) -> ({name: sum over this worker's samples},
    this worker's sample count)``, both float64 tensors.

    ``replica_step(*pieces, loss_weight) -> ({name: batch mean}, n)`` runs on each replica
    with its piece of the batch and ``loss_weight = n / the global batch`` (the batch of this
    process for ``mirrored``; of all workers, one all-reduce per step, for ``multi_worker``).
    """
    local = len(strategy.extended.worker_devices)

    def replica(size: Any, *pieces: Any) -> tuple[dict[str, Any], Any]:
        count = tf.cast(tf.shape(pieces[0])[0], tf.float32)
        total = tf.cast(size, tf.float32)
        if across_workers:
            context = tf.distribute.get_replica_context()
            total = context.all_reduce(tf.distribute.ReduceOp.SUM, count)
        means, _ = replica_step(*pieces, loss_weight=tf.math.divide_no_nan(count, total))
        count = tf.cast(count, tf.float64)
        # an empty piece (a batch smaller than the replicas) has NaN means: it adds 0
        return {name: tf.math.multiply_no_nan(value, count) for name, value in means.items()}, count

    def step(*arrays: Any) -> tuple[dict[str, Any], Any]:
        size = tf.shape(arrays[0])[0]
        pieces = [
            strategy.experimental_distribute_values_from_function(
                functools.partial(lambda array, context: _split(array, size, context, local), array)
            )
            for array in arrays
        ]
        outputs = strategy.run(replica, args=(size, *pieces))
        sums, counts = outputs
        local_sums = {
            name: tf.add_n(list(strategy.experimental_local_results(value)))
            for name, value in sums.items()
        }
        return local_sums, tf.add_n(list(strategy.experimental_local_results(counts)))

    return step
