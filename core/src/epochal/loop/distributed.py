"""Training in several processes: what the core needs to know, without any framework.

epochal does not launch or coordinate processes itself; the frameworks' launchers and
engines do. A backend that trains in several processes hands the core a
:class:`Collective`: this process's rank, how many there are, and two primitives, a sum over
the processes and telling a lost peer from any other error. The few collective operations the
loop needs (global means of epoch metrics, agreeing to stop, broadcasting the run folder, a
barrier) are written here once on that sum. The base class is the one-process case: every
operation is the identity, so the single-process loop pays nothing.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import pickle
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from epochal.errors import DistributedError

__all__ = ["Collective", "collective_op", "is_main_process", "process_role"]

T = TypeVar("T")

#: The stops a rank can pass on to the others by name (the signals the CLI handles).
STOP_REASONS = ("SIGTERM", "SIGINT")


def collective_op(what: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Decorates a :class:`Collective` operation: inside it, a failure that the collective
    recognises as a lost peer becomes the one-line :class:`~epochal.errors.DistributedError`
    saying that the rank was ``what``-ing (:meth:`Collective.lost_peer`)."""

    def decorate(function: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(function)
        def wrapped(self: Collective, *args: Any, **kwargs: Any) -> T:
            with self.lost_peer(what):
                return function(self, *args, **kwargs)

        return wrapped

    return decorate


class Collective:
    """The processes of one training run, as the core loop sees them (here: just this one).

    A backend subclasses it (next to its code that joins the processes) and implements two
    primitives: :meth:`all_sum` (a sum over the processes) and :meth:`is_peer_failure` (whether
    an exception means another process is gone). Every operation the loop uses (:meth:`mean`,
    :meth:`any`, :meth:`broadcast`, :meth:`barrier`, :meth:`agree_stop`) is written here once
    on :meth:`all_sum`, and a lost peer met in any of them is the one error that names the
    rank and what it was doing. Each operation must be called by every rank, in the same
    order. In one process every operation is the identity: the single-process loop pays
    nothing.
    """

    rank = 0
    world_size = 1
    local_rank = 0
    local_world_size = 1
    #: What the messages call one process of the run (``"worker"`` under ``TF_CONFIG``).
    process_name = "rank"
    #: How to continue after a lost peer, for the message (the backend's launch command).
    resume_advice = "continue with `epochal resume RUN_DIR`"

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes checkpoints, logs, plots and the run folder."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    # -- the backend's primitives --------------------------------------------------------

    def all_sum(self, values: Sequence[float]) -> list[float]:
        """The element-wise sum of ``values`` over all ranks, in float64, on every rank (each
        rank passes as many values). The one reduction the operations below are made of."""
        return [float(value) for value in values]

    def is_peer_failure(self, exc: BaseException) -> bool:
        """Whether ``exc`` (raised by :meth:`all_sum`, or by the framework while training)
        means another process failed or stopped answering, not this process's own error."""
        return False

    def failure_text(self, exc: BaseException) -> str:
        """The line of a peer failure ``exc`` that says why, for the message: its first line,
        without a leading ``[source:line]``. A backend may pick the line better."""
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        text = re.sub(r"^\[[^\]]*\]\s*", "", lines[0]) if lines else ""
        return text or type(exc).__name__

    # -- a lost peer ---------------------------------------------------------------------

    def peer_failure(self, what: str, exc: BaseException) -> DistributedError | None:
        """The error to raise when ``exc``, met while doing ``what``, means another process
        failed or stopped answering; ``None`` for any other error (raised as it is).
        ``{process}`` in ``what`` reads as :attr:`process_name`."""
        if isinstance(exc, DistributedError) or not self.is_peer_failure(exc):
            return None
        name = self.process_name
        what = what.replace("{process}", name)  # "waiting for the other {process}s"
        return DistributedError(
            f"{name} {self.rank} lost contact with another process of this run ({what}: "
            f"{self.failure_text(exc)[:160]}). Look at the other {name}s' output for the first "
            f"error. Checkpoints written so far are kept: {self.resume_advice}"
        )

    @contextlib.contextmanager
    def lost_peer(self, what: str) -> Iterator[None]:
        """Inside, an exception that means a lost peer (:meth:`is_peer_failure`) becomes the
        one-line :class:`~epochal.errors.DistributedError` naming this rank and ``what`` it
        was doing. An error already turned into one inside keeps its (narrower) ``what``."""
        try:
            yield
        except Exception as exc:
            error = self.peer_failure(what, exc)
            if error is None:
                raise
            raise error from exc

    # -- the operations, on all_sum --------------------------------------------------------

    @collective_op("averaging the epoch's metrics")
    def mean(self, values: Mapping[str, float], weight: float = 1.0) -> dict[str, float]:
        """The mean of ``values`` over all ranks, each rank's weighted by ``weight`` (its
        number of samples): every rank gets the global means (one :meth:`all_sum`)."""
        if not self.distributed:
            return {key: float(value) for key, value in values.items()}
        keys, sums = weighted_sums(values, weight)
        total = self.all_sum(sums)
        return {key: total[i] / total[-1] for i, key in enumerate(keys)}

    def any(self, flag: bool, what: str = "comparing a flag with the other {process}s") -> bool:
        """Whether ``flag`` is true on any rank (every rank gets the same answer); ``what``
        the ranks are agreeing on names a lost peer."""
        if not self.distributed:
            return bool(flag)
        with self.lost_peer(what):
            return self.all_sum([float(bool(flag))])[0] > 0

    def broadcast(self, value: T, what: str = "sharing the run folder") -> T:
        """Rank 0's ``value`` (picklable and small: a path, a name), on every rank: its
        pickled bytes summed with the other ranks' zeros. ``what`` names a lost peer."""
        if not self.distributed:
            return value
        with self.lost_peer(what):
            payload = pickle.dumps(value) if self.is_main else b""
            size = int(self.all_sum([float(len(payload))])[0])
            summed = self.all_sum([float(byte) for byte in payload] + [0.0] * (size - len(payload)))
        return pickle.loads(bytes(int(byte) for byte in summed))

    @collective_op("waiting for the other {process}s")
    def barrier(self) -> None:
        """Wait until every rank got here."""
        if self.distributed:
            self.all_sum([0.0])

    @collective_op("checking for a stop request")
    def agree_stop(self, reason: str | None) -> str | None:
        """Whether any rank was asked to stop, and why: this rank's ``reason`` if it has one,
        else another rank's signal (``"SIGTERM"``, ``"SIGINT"``), so that every rank stops at
        the same batch and reports the same cause. ``None``: no rank was asked."""
        if not self.distributed:
            return reason
        flags = [float(reason == name) for name in STOP_REASONS]
        flags.append(float(reason is not None and reason not in STOP_REASONS))
        seen = self.all_sum(flags)
        if reason is not None:
            return reason
        for name, count in zip(STOP_REASONS, seen, strict=False):
            if count > 0:
                return name
        return "a stop on another rank" if seen[-1] > 0 else None

    def close(self) -> None:
        """Leave the process group, if this object created it."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rank={self.rank}, world_size={self.world_size})"


def process_role(environ: Mapping[str, str] | None = None) -> tuple[str, int] | None:
    """Where a launcher put this process, from its variables alone: ``("rank", n)`` where
    ``RANK`` and ``WORLD_SIZE`` are set, ``("worker", n)`` under ``TF_CONFIG`` (its chief
    counts as worker 0), ``None`` for a process on its own. For what the CLI prints before a
    trainer exists."""
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


def weighted_sums(values: Mapping[str, float], weight: float) -> tuple[list[str], list[float]]:
    """``values`` as ``(sorted keys, [value * weight ..., weight])``: what
    :meth:`Collective.mean` sums over ranks (one message for all keys)."""
    keys = sorted(values)
    return keys, [float(values[key]) * weight for key in keys] + [float(weight)]
