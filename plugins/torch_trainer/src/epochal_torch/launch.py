"""``epochal train --nproc N``: torchrun's launcher, started from the command itself.

The same as ``torchrun --standalone --nproc-per-node N -m epochal train ...`` (one machine, a
free port), with torchrun's own log lines and its launcher traceback replaced by one line
that names the first rank that failed; each rank's own error is printed above it.
"""

from __future__ import annotations

import logging
import os
import sys
import uuid
from collections.abc import Sequence

from epochal.errors import DistributedError

__all__ = ["launch_processes"]


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
