"""torchrun's side of a launch: where it put this process (its variables), and
``epochal train --nproc N``, its launcher started from the command itself.

``--nproc N`` is the same as ``torchrun --standalone --nproc-per-node N -m epochal train ...``
(one machine, a free port), with torchrun's own log lines and its launcher traceback replaced
by one line that names the first rank that failed; each rank's own error is printed above it.
"""

from __future__ import annotations

import logging
import os
import sys
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from epochal.errors import DistributedError, LaunchError

__all__ = ["LaunchEnv", "launch_env", "launch_processes"]


@dataclass(frozen=True)
class LaunchEnv:
    """Where a launcher (``torchrun``, SLURM through torchrun) put this process."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int


def _int_variable(environ: Mapping[str, str], name: str, default: int | None) -> int:
    raw = environ.get(name)
    if raw is None or raw == "":
        if default is None:
            raise LaunchError(
                f"{name} is not set although RANK or WORLD_SIZE is: start the processes with "
                "`torchrun --nproc-per-node N -m epochal train CONFIG`, which sets RANK, "
                "WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT"
            )
        return default
    try:
        return int(raw)
    except ValueError:
        raise LaunchError(f"{name}={raw!r} is not an integer") from None


def launch_env(environ: Mapping[str, str] | None = None) -> LaunchEnv | None:
    """The launch environment torchrun sets, or ``None`` for a single process (neither
    ``RANK`` nor ``WORLD_SIZE`` set, or ``WORLD_SIZE=1``). Inconsistent values are a
    :class:`~epochal.errors.LaunchError` that names the variable."""
    environ = os.environ if environ is None else environ
    if not any(environ.get(name) for name in ("RANK", "WORLD_SIZE")):
        return None
    world_size = _int_variable(environ, "WORLD_SIZE", None)
    rank = _int_variable(environ, "RANK", None)
    if world_size < 1 or not 0 <= rank < world_size:
        raise LaunchError(
            f"RANK={rank} and WORLD_SIZE={world_size} do not fit: need 0 <= RANK < WORLD_SIZE"
        )
    if world_size == 1:
        return None
    local_rank = _int_variable(environ, "LOCAL_RANK", rank)
    local_world_size = _int_variable(environ, "LOCAL_WORLD_SIZE", world_size)
    if not 0 <= local_rank < local_world_size:
        raise LaunchError(
            f"LOCAL_RANK={local_rank} and LOCAL_WORLD_SIZE={local_world_size} do not fit"
        )
    return LaunchEnv(rank, world_size, local_rank, local_world_size)


def launch_processes(nproc: int, argv: Sequence[str]) -> int:
    """Run ``python -m epochal *argv`` in ``nproc`` processes under torch's elastic launcher;
    returns the exit code to leave with (the first failed rank's, else 0)."""
    import torch.distributed.elastic.agent.server.api  # noqa: F401 - its logger, quieted below
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    for name in list(logging.root.manager.loggerDict):  # each sets its own level at import
        if name.startswith("torch.distributed.elastic") or name.startswith(
            "torch.distributed.launcher"
        ):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    # torchrun's default, without its warning: the cores shared among the processes.
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=str(uuid.uuid4()),
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",
        max_restarts=0,
        monitor_interval=0.1,
    )
    try:
        elastic_launch(config, sys.executable)("-m", "epochal", *argv)
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        code = failure.exitcode if failure.exitcode > 0 else 128 - failure.exitcode
        how = (
            f"exit code {failure.exitcode}"
            if failure.exitcode > 0
            else f"signal {-failure.exitcode}"
        )
        print(
            f"epochal: rank {rank} of {nproc} ended first ({how}); the others were stopped",
            file=sys.stderr,
        )
        return code
    except SignalException as exc:  # the agent stopped the ranks (they wrote checkpoint_last)
        return 128 + int(exc.sigval)
    except Exception as exc:
        raise DistributedError(
            f"torch's launcher could not start {nproc} processes: {exc}"
        ) from exc
    return 0
