"""Training in several processes: what the core needs to know, without any framework.

epochal does not launch or coordinate processes itself; engines do (``torchrun``,
``tf.distribute``). A backend that trains in several processes hands the core a
:class:`Collective`: this process's rank, how many there are, and the few collective
operations the loop needs (global means of epoch metrics, agreeing to stop, broadcasting the
run folder, a barrier). The base class is the one-process case: every operation is the
identity, so the single-process loop pays nothing.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from epochal.errors import DistributedError, LaunchError

__all__ = ["Collective", "LaunchEnv", "collective_op", "launch_env"]

T = TypeVar("T")

#: The stops a rank can pass on to the others by name (the signals the CLI handles).
STOP_REASONS = ("SIGTERM", "SIGINT")

#: torchrun's variables; ``RANK`` and ``WORLD_SIZE`` decide, the rest default sensibly.
LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")


def collective_op(what: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Decorates a :class:`Collective` operation: a failure that the collective recognises
    as a lost peer (:meth:`Collective.peer_failure`) becomes that one-line
    :class:`~epochal.errors.DistributedError`, saying that the rank was ``what``-ing, also
    when it failed in another operation this one is made of."""

    def decorate(function: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(function)
        def wrapped(self: Collective, *args: Any, **kwargs: Any) -> T:
            try:
                return function(self, *args, **kwargs)
            except DistributedError as exc:  # from an inner operation: name this one instead
                cause = exc.__cause__
                if cause is None or isinstance(cause, DistributedError):
                    raise
                error = self.peer_failure(what, cause)
                if error is None:
                    raise
                raise error from cause
            except Exception as exc:
                error = self.peer_failure(what, exc)
                if error is None:
                    raise
                raise error from exc

        return wrapped

    return decorate


class Collective:
    """The processes of one training run, as the core loop sees them (here: just this one).

    Backends subclass it (``epochal_torch.distributed.TorchCollective``) and override the
    operations; each must be called by every rank, in the same order.
    """

    rank = 0
    world_size = 1
    local_rank = 0
    local_world_size = 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes checkpoints, logs, plots and the run folder."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def mean(self, values: Mapping[str, float], weight: float = 1.0) -> dict[str, float]:
        """The mean of ``values`` over all ranks, each rank's weighted by ``weight`` (its
        number of samples): every rank gets the global means."""
        return {key: float(value) for key, value in values.items()}

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is true on any rank (every rank gets the same answer)."""
        return bool(flag)

    def broadcast(self, value: T) -> T:
        """Rank 0's ``value`` (picklable), on every rank."""
        return value

    def peer_failure(self, what: str, exc: BaseException) -> DistributedError | None:
        """The error to raise when ``exc``, met while doing ``what``, means another process
        failed or stopped answering; ``None`` for any other error (raised as it is)."""
        return None

    @collective_op("checking for a stop request")
    def agree_stop(self, reason: str | None) -> str | None:
        """Whether any rank was asked to stop, and why: this rank's ``reason`` if it has one,
        else another rank's signal (``"SIGTERM"``, ``"SIGINT"``), so that every rank stops at
        the same batch and reports the same cause. ``None``: no rank was asked."""
        if not self.distributed:
            return reason
        flags = {name: float(reason == name) for name in STOP_REASONS}
        flags["other"] = float(reason is not None and reason not in STOP_REASONS)
        seen = self.mean(flags)
        if reason is not None:
            return reason
        for name in STOP_REASONS:
            if seen[name] > 0:
                return name
        return "a stop on another rank" if seen["other"] > 0 else None

    def barrier(self) -> None:
        """Wait until every rank got here."""

    def close(self) -> None:
        """Leave the process group, if this object created it."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rank={self.rank}, world_size={self.world_size})"


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


def process_role(environ: Mapping[str, str] | None = None) -> tuple[str, int] | None:
    """Where a launcher put this process, from its variables alone: ``("rank", n)`` under
    torchrun, ``("worker", n)`` under ``TF_CONFIG`` (its chief counts as worker 0), ``None``
    for a process on its own. For what the CLI prints before a trainer exists."""
    environ = os.environ if environ is None else environ
    if environ.get("WORLD_SIZE", "1") not in ("", "1") and environ.get("RANK"):
        return ("rank", int(environ["RANK"])) if environ["RANK"].isdigit() else None
    raw = environ.get("TF_CONFIG")
    if not raw:
        return None
    try:
        config = json.loads(raw)
        cluster, task = config.get("cluster") or {}, config.get("task") or {}
        tasks = sum(len(cluster.get(kind) or ()) for kind in ("chief", "worker"))
        if tasks < 2:
            return None
        index = int(task.get("index", 0))
        if task.get("type") == "chief":
            return ("worker", 0)
        return ("worker", index + (1 if cluster.get("chief") else 0))
    except (ValueError, TypeError, AttributeError):  # malformed: the backend says so
        return None


def is_main_process(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process is the first of its launch (or alone): it talks to the user."""
    role = process_role(environ)
    return role is None or role[1] == 0


def weighted_sums(values: Mapping[str, float], weight: float) -> tuple[list[str], list[Any]]:
    """``values`` as ``(sorted keys, [value * weight ..., weight])``: what a backend sums over
    ranks for :meth:`Collective.mean` (one message for all keys)."""
    keys = sorted(values)
    return keys, [float(values[key]) * weight for key in keys] + [float(weight)]
