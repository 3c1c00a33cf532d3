"""torchrun + DistributedDataParallel: joining the process group, and the core's collectives.

``torchrun --nproc-per-node N -m epochal train CONFIG`` starts N processes with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` set. The trainer (or the
experiment, before it names the run folder) joins them with :func:`join_processes`: gloo on
the CPU, nccl on CUDA. epochal starts no processes itself.
"""

from __future__ import annotations

import atexit
import datetime
import gc
import os
from collections.abc import Sequence

import torch
import torch.distributed as dist

from epochal.errors import DistributedError, LaunchError
from epochal.loop.distributed import Collective
from epochal_torch.launch import LaunchEnv, launch_env

__all__ = ["DIST_BACKENDS", "TorchCollective", "device_for_rank", "join_processes"]

DIST_BACKENDS = ("auto", "gloo", "nccl")

#: What torch.distributed's failures say (gloo, nccl, the c10d store); a DDP all-reduce that
#: lost a peer raises a plain RuntimeError from the autograd engine.
_FAILURE_WORDS = ("gloo", "nccl", "processgroup", "connection closed", "connection reset", "c10d")


class TorchCollective(Collective):
    """The core's collectives on ``torch.distributed`` (any backend: gloo or nccl): the sum
    is one ``all_reduce``; a lost peer is a ``RuntimeError`` from torch.distributed."""

    resume_advice = (
        "continue with `epochal resume RUN_DIR --nproc N` (or torchrun ... resume RUN_DIR)"
    )

    def __init__(self, env: LaunchEnv | None, device: torch.device, owner: bool) -> None:
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        self.local_rank = env.local_rank if env else 0
        self.local_world_size = env.local_world_size if env else 1
        self.device, self._owner = device, owner

    def all_sum(self, values: Sequence[float]) -> list[float]:
        total = torch.tensor(list(values), dtype=torch.float64, device=self.device)
        dist.all_reduce(total)
        return total.tolist()

    def is_peer_failure(self, exc: BaseException) -> bool:
        """torch.distributed's own errors (``DistError``: a peer gone, the timeout passed),
        and a ``RuntimeError`` in gloo's, nccl's or the store's words (DDP's backward)."""
        if not isinstance(exc, RuntimeError):
            return False
        if isinstance(exc, getattr(dist, "DistError", ())):
            return True
        text = str(exc).lower()
        return any(word in text for word in _FAILURE_WORDS)

    def failure_text(self, exc: BaseException) -> str:
        """gloo's or nccl's words without their source location and advice."""
        return super().failure_text(exc).split(". This is typically")[0]

    def close(self) -> None:
        if self._owner:
            _leave()


def _backend(dist_backend: str, use_cuda: bool) -> str:
    if dist_backend not in DIST_BACKENDS:
        raise ValueError(f"dist_backend must be one of {DIST_BACKENDS}, got {dist_backend!r}")
    if dist_backend == "auto":
        return "nccl" if use_cuda else "gloo"
    if dist_backend == "nccl" and not use_cuda:
        raise ValueError(
            "dist_backend='nccl' needs CUDA: set gpu_ids (one GPU per process), or use 'gloo'"
        )
    return dist_backend


def device_for_rank(gpu_ids: list[int], env: LaunchEnv | None) -> int | None:
    """The GPU of this process: ``gpu_ids[LOCAL_RANK]`` (one id per process on this node),
    ``None`` for the CPU."""
    if not gpu_ids:
        return None
    if env is None:
        return gpu_ids[0]
    if len(gpu_ids) < env.local_world_size:
        raise ValueError(
            f"gpu_ids={gpu_ids} lists {len(gpu_ids)} GPU(s) for the {env.local_world_size} "
            f"processes on this node: list one id per process, e.g. "
            f"gpu_ids={list(range(env.local_world_size))}, or pass gpu_ids=[] for the CPU"
        )
    return gpu_ids[env.local_rank]


def join_processes(
    gpu_ids: list[int] | None = None,
    distributed: bool | None = None,
    dist_backend: str = "auto",
    dist_timeout: float = 600.0,
) -> Collective:
    """This process's place among those torchrun started, joined into the process group
    (created here unless someone did already). One process (no launcher, or
    ``distributed=False``): the single-process :class:`Collective`."""
    if distributed is False:
        return Collective()
    env = launch_env()
    gpu = device_for_rank(list(gpu_ids or []), env)
    device = torch.device("cpu") if gpu is None else torch.device("cuda", gpu)
    if dist.is_available() and dist.is_initialized():
        if dist.get_world_size() == 1:
            return Collective()
        return TorchCollective(env, device, owner=False)
    if env is None:
        if distributed:
            raise LaunchError(
                "distributed=True but this process was not started by a launcher: run "
                "`torchrun --nproc-per-node N -m epochal train CONFIG` (or your script under "
                "torchrun)"
            )
        return Collective()
    if not dist.is_available():
        raise DistributedError("this torch build has no torch.distributed")
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(name)]
    if missing:
        raise LaunchError(
            f"{' and '.join(missing)} not set: start the processes with torchrun, which sets "
            "them, or set them to rank 0's address and a free port"
        )
    if not isinstance(dist_timeout, (int, float)) or dist_timeout <= 0:
        raise ValueError(f"dist_timeout must be a positive number of seconds, got {dist_timeout!r}")
    backend = _backend(dist_backend, device.type == "cuda")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    try:
        dist.init_process_group(
            backend,
            timeout=datetime.timedelta(seconds=dist_timeout),
            rank=env.rank,
            world_size=env.world_size,
            **({"device_id": device} if device.type == "cuda" else {}),
        )
    except (RuntimeError, ValueError) as exc:
        raise DistributedError(
            f"rank {env.rank} of {env.world_size} could not join the others at "
            f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']} ({exc}); check that "
            "every process was started and that the address is reachable"
        ) from exc
    # A trainer used without an Experiment never closes the group; gloo's threads must not
    # meet the interpreter's teardown (an occasional SIGABRT at exit).
    atexit.register(_leave)
    return TorchCollective(env, device, owner=True)


def _leave() -> None:
    if dist.is_available() and dist.is_initialized():
        # A trainer in a reference cycle would free its DDP reducer (holding gloo work) in the
        # interpreter's teardown, which aborts the process: free it while Python is alive.
        gc.collect()
        dist.destroy_process_group()
