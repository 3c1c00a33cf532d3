"""tf.distribute for TfNetworkTrainer: the strategies, the core's collectives, the replica step.

``strategy="mirrored"``: one process, several devices (``gpu_ids``' GPUs, else the logical CPU
devices): the trainer splits each batch of the process over the devices. The core sees one
process (:class:`~epochal.loop.distributed.Collective`).

``strategy="multi_worker"``: one process per worker, each started with ``TF_CONFIG`` (the
cluster's ``host:port`` list and this task's index). :class:`TfCollective` gives the core the
worker's rank (its index) and the number of workers, so the core loop shards the data, averages
the epoch metrics over workers and lets worker 0 alone write the run folder, as under torchrun.

In both, ``batch_size`` is per process and the step runs under ``strategy.run``, each replica's
loss weighted by its share of the global batch (its samples / all replicas' samples), so that
the Keras optimizer, which sums the replicas' gradients in ``apply_gradients``, applies the
gradient of the global batch's mean loss: the single-device step, up to rounding.

TensorFlow allows one ``MultiWorkerMirroredStrategy`` per process, made before any eager op
("Collective ops must be configured at program startup"), and the Experiment asks for the
processes (:meth:`TfNetworkTrainer.distributed_collective`) before it builds the network and
the trainer. That one strategy is therefore kept here, per process, like torch's global
process group: the trainer built afterwards trains under the same object.
"""

from __future__ import annotations

import functools
import json
import os
import pickle
import re
import warnings
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import numpy as np

from epochal.errors import DistributedError, LaunchError
from epochal.loop.distributed import Collective, collective_op, weighted_sums
from epochal_tf._tf import keras, tf

__all__ = [
    "STRATEGIES",
    "TfCollective",
    "check_strategy",
    "distribute_variables",
    "join_workers",
    "make_strategy",
    "replica_losses",
    "replicated_step",
]

#: The values of the trainer's ``strategy`` argument (``None``: no tf.distribute).
STRATEGIES = ("mirrored", "multi_worker")
T = TypeVar("T")

_TF_CONFIG_EXAMPLE = (
    'TF_CONFIG=\'{"cluster": {"worker": ["host0:12345", "host1:12345"]}, '
    '"task": {"type": "worker", "index": 0}}\''
)
_LOST = (
    "Look at the other workers' output for the first error. Checkpoints written so far are "
    "kept: continue with `epochal resume RUN_DIR` in every worker, with the same TF_CONFIG"
)

#: This process's MultiWorkerMirroredStrategy and its collective (TensorFlow: one a process).
_multi_worker: tuple[Any, TfCollective] | None = None


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


# -- the strategies ------------------------------------------------------------------------


def _cluster(environ: Mapping[str, str]) -> tuple[int, int]:
    """``(rank, number of workers)`` from ``TF_CONFIG`` (a chief, if any, is rank 0)."""
    raw = environ.get("TF_CONFIG")
    if not raw:
        raise LaunchError(
            "strategy='multi_worker' needs TF_CONFIG, the cluster and this worker's place in "
            f"it; start each worker with e.g. {_TF_CONFIG_EXAMPLE} (index 0, 1, ... on each "
            "worker), or use strategy='mirrored' for several devices in one process"
        )
    try:
        config = json.loads(raw)
        cluster, task = config["cluster"], config["task"]
        chiefs, workers = list(cluster.get("chief", [])), list(cluster.get("worker", []))
        task_type, index = task["type"], int(task["index"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise LaunchError(
            f"TF_CONFIG is not a cluster description ({type(exc).__name__}: {exc}); it must be "
            f"JSON like {_TF_CONFIG_EXAMPLE}"
        ) from None
    tasks = {"chief": chiefs, "worker": workers}
    if task_type not in tasks or not 0 <= index < len(tasks[task_type]) or len(chiefs) > 1:
        raise LaunchError(
            f"TF_CONFIG: task {task_type!r} {index} is not in the cluster {cluster}; "
            "strategy='multi_worker' takes 'worker' tasks (and at most one 'chief'), each "
            "task's index counting from 0"
        )
    rank = index if task_type == "chief" else len(chiefs) + index
    return rank, len(chiefs) + len(workers)


def _gpu_devices(gpu_ids: list[int]) -> list[Any]:
    gpus = tf.config.list_physical_devices("GPU")
    bad = [i for i in gpu_ids if isinstance(i, bool) or not isinstance(i, int)]
    if bad or not all(0 <= i < len(gpus) for i in gpu_ids):
        available = f"ids 0..{len(gpus) - 1}" if gpus else "none"
        raise ValueError(
            f"gpu_ids={gpu_ids} but TensorFlow sees these GPUs: {available}; "
            "pass gpu_ids=[] to train on the CPU"
        )
    return [gpus[i] for i in gpu_ids]


def multi_worker_strategy(gpu_ids: list[int] | None = None) -> tuple[Any, TfCollective]:
    """This process's ``MultiWorkerMirroredStrategy`` (made on the first call, which waits
    until every worker in ``TF_CONFIG`` started) and its :class:`TfCollective`.

    ``gpu_ids``: this worker's GPUs (``[]``: the CPU). Must run before any other TensorFlow
    op of the process: the Experiment calls it first.
    """
    global _multi_worker
    if _multi_worker is not None:
        return _multi_worker
    rank, world_size = _cluster(os.environ)
    try:
        if tf.config.list_physical_devices("GPU"):
            tf.config.set_visible_devices(_gpu_devices(list(gpu_ids or [])), "GPU")
        options = tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.RING
        )
        strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    except RuntimeError as exc:
        if "startup" not in str(exc) and "initialized" not in str(exc):
            raise
        raise DistributedError(
            "strategy='multi_worker' must be set up before TensorFlow runs anything in this "
            "process (TensorFlow's rule for collective ops): call "
            "TfNetworkTrainer.distributed_collective(strategy='multi_worker') first, then "
            f"build the network and the trainer ({exc})"
        ) from exc
    _multi_worker = (strategy, TfCollective(strategy, rank, world_size))
    return _multi_worker


def _mirrored_strategy(gpu_ids: list[int]) -> Any:
    if gpu_ids:
        _gpu_devices(gpu_ids)  # checks the ids
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


# -- the core's collectives on MultiWorkerMirroredStrategy ---------------------------------

#: What a collective raises when a peer died or hangs (the coordination service's heartbeat,
#: a closed connection, the collective aborted on every worker).
PEER_FAILURES = (
    tf.errors.UnavailableError,
    tf.errors.DeadlineExceededError,
    tf.errors.CancelledError,
    tf.errors.AbortedError,
)


def is_peer_failure(exc: BaseException) -> bool:
    """Whether ``exc`` means another worker is gone (not the model's or the data's fault)."""
    if isinstance(exc, PEER_FAILURES):
        return True
    text = str(exc).lower()
    return isinstance(exc, tf.errors.OpError) and ("collective" in text or "coordinat" in text)


#: The line of a collective's error that says why it failed.
_CAUSE = re.compile(
    r"Collective ops is aborted by:[^\n]*"
    r"|[^\n]*(?:connection reset|socket closed|heartbeat|unavailable|deadline)[^\n]*",
    re.IGNORECASE,
)


def lost_peer(rank: int, where: str, exc: BaseException) -> DistributedError:
    """The one-line error of a worker whose collective failed under it."""
    message = getattr(exc, "message", None) or str(exc)
    found = _CAUSE.search(message)  # a graph's error: the cause is below the op's stack
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    text = found.group(0) if found else (lines[0] if lines else type(exc).__name__)
    text = re.sub(r"\{\{[^}]*\}\}\s*|\s*\[Op:[^\]]*\]", "", text).strip()  # op names
    return DistributedError(
        f"worker {rank} lost contact with another process of this run ({where}: "
        f"{text[:160]}). " + _LOST
    )


class TfCollective(Collective):
    """The core's collectives as all-reductions of ``MultiWorkerMirroredStrategy``: each
    worker contributes one value (its first replica; the others zeros), summed on all.

    The reduction is a ``tf.function``: TensorFlow's eager reduce runs each one in a thread
    pool that a failed collective leaves to the interpreter's exit, which then prints a
    traceback under the one-line error.
    """

    def __init__(self, strategy: Any, rank: int, world_size: int) -> None:
        self.strategy, self.rank, self.world_size = strategy, rank, world_size
        local = len(strategy.extended.worker_devices)

        def replica(values: Any) -> Any:
            context = tf.distribute.get_replica_context()
            first = context.replica_id_in_sync_group % local == 0
            mine = tf.where(first, values, tf.zeros_like(values))
            return context.all_reduce(tf.distribute.ReduceOp.SUM, mine)

        def all_sum(values: Any) -> Any:
            summed = strategy.run(replica, args=(values,))
            return strategy.experimental_local_results(summed)[0]

        self._all_sum = tf.function(all_sum, reduce_retracing=True)

    def peer_failure(self, what: str, exc: BaseException) -> DistributedError | None:
        """A collective's ``OpError`` that says a worker is gone (:func:`is_peer_failure`)."""
        if isinstance(exc, tf.errors.OpError) and is_peer_failure(exc):
            return lost_peer(self.rank, what, exc)
        return None

    def _sum(self, values: np.ndarray) -> np.ndarray:
        return self._all_sum(tf.constant(values)).numpy()

    @collective_op("averaging the epoch's metrics")
    def mean(self, values: Mapping[str, float], weight: float = 1.0) -> dict[str, float]:
        keys, sums = weighted_sums(values, weight)
        total = self._sum(np.asarray(sums, dtype=np.float64))
        return {key: float(total[i] / total[-1]) for i, key in enumerate(keys)}

    @collective_op("checking for a stop request")
    def any(self, flag: bool) -> bool:
        return bool(self._sum(np.asarray([int(bool(flag))], dtype=np.int64))[0] > 0)

    @collective_op("sharing the run folder")
    def broadcast(self, value: T) -> T:
        payload = pickle.dumps(value) if self.is_main else b""
        size = int(self._sum(np.asarray([len(payload)], dtype=np.int64))[0])
        buffer = np.zeros(size, dtype=np.int32)
        buffer[: len(payload)] = np.frombuffer(payload, dtype=np.uint8)
        received = self._sum(buffer).astype(np.uint8).tobytes()
        return pickle.loads(received)

    @collective_op("waiting for the other workers")
    def barrier(self) -> None:
        self._sum(np.zeros(1, dtype=np.int64))


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
