"""tf.distribute's processes for TfNetworkTrainer: ``strategy="multi_worker"``.

One process per worker, each started with ``TF_CONFIG`` (the cluster's ``host:port`` list and
this task's index). :class:`TfCollective` gives the core the worker's rank (its index), the
number of workers and the sum over them, so the core loop shards the data, averages the epoch
metrics over workers and lets worker 0 alone write the run folder, as under torchrun. The
strategies and the step under them: :mod:`epochal_tf.strategies`.

TensorFlow allows one ``MultiWorkerMirroredStrategy`` per process, made before any eager op
("Collective ops must be configured at program startup"), and the Experiment asks for the
processes (:meth:`TfNetworkTrainer.distributed_collective`) before it builds the network and
the trainer. That one strategy is therefore kept here, per process, like torch's global
process group: the trainer built afterwards trains under the same object.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from epochal.errors import DistributedError, LaunchError
from epochal.loop.distributed import Collective
from epochal_tf._tf import tf

__all__ = ["TfCollective", "gpu_devices", "multi_worker_strategy"]

_TF_CONFIG_EXAMPLE = (
    'TF_CONFIG=\'{"cluster": {"worker": ["host0:12345", "host1:12345"]}, '
    '"task": {"type": "worker", "index": 0}}\''
)

#: This process's MultiWorkerMirroredStrategy and its collective (TensorFlow: one a process).
_multi_worker: tuple[Any, TfCollective] | None = None


# -- the workers ---------------------------------------------------------------------------


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


def gpu_devices(gpu_ids: list[int]) -> list[Any]:
    """The GPUs ``gpu_ids`` names, checked against those TensorFlow sees."""
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
            tf.config.set_visible_devices(gpu_devices(list(gpu_ids or [])), "GPU")
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


# -- the core's collectives on MultiWorkerMirroredStrategy ---------------------------------

#: What a collective raises when a peer died or hangs (the coordination service's heartbeat,
#: a closed connection, the collective aborted on every worker).
PEER_FAILURES = (
    tf.errors.UnavailableError,
    tf.errors.DeadlineExceededError,
    tf.errors.CancelledError,
    tf.errors.AbortedError,
)

#: The line of a collective's error that says why it failed.
_CAUSE = re.compile(
    r"Collective ops is aborted by:[^\n]*"
    r"|[^\n]*(?:connection reset|socket closed|heartbeat|unavailable|deadline)[^\n]*",
    re.IGNORECASE,
)


class TfCollective(Collective):
    """The core's collectives on ``MultiWorkerMirroredStrategy``: the sum is an all-reduction
    to which each worker contributes one value (its first replica; the others zeros).

    The reduction is a ``tf.function``: TensorFlow's eager reduce runs each one in a thread
    pool that a failed collective leaves to the interpreter's exit, which then prints a
    traceback under the one-line error.
    """

    process_name = "worker"
    resume_advice = (
        "continue with `epochal resume RUN_DIR` in every worker, with the same TF_CONFIG"
    )

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

    def all_sum(self, values: Sequence[float]) -> list[float]:
        return self._all_sum(tf.constant(list(values), dtype=tf.float64)).numpy().tolist()

    def is_peer_failure(self, exc: BaseException) -> bool:
        """A collective's ``OpError`` that says a worker is gone (not the model's or the
        data's fault): one of :data:`PEER_FAILURES`, or in the collective's words."""
        if isinstance(exc, PEER_FAILURES):
            return True
        text = str(exc).lower()
        return isinstance(exc, tf.errors.OpError) and ("collective" in text or "coordinat" in text)

    def failure_text(self, exc: BaseException) -> str:
        """A graph's error has its cause below the op's stack: that line, without op names."""
        found = _CAUSE.search(getattr(exc, "message", None) or str(exc))
        text = found.group(0) if found else super().failure_text(exc)
        return re.sub(r"\{\{[^}]*\}\}\s*|\s*\[Op:[^\]]*\]", "", text).strip()
