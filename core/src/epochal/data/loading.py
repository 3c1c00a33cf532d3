"""What runs in the augmentation workers, and the augmenters that surface their errors.

Each worker runs its own copy of :class:`EpochDataLoader` and takes batches
``thread_id, thread_id + n, ...`` of the epoch; batchgenerators reads the worker
queues round-robin, so batches arrive in order and each sample comes exactly
once. Augmentation randomness is seeded per *batch*, so an epoch is the same
whatever the number of workers.

A worker that raises sends its exception instead of a batch; the augmenter
raises it in the main process as a :class:`~epochal.errors.DataWorkerError`
chained to the original: one line that says which worker, which batch, the
exception and where it was raised, with the worker's whole traceback as a note
(shown wherever the traceback is). A worker that dies (``kill -9``, the
out-of-memory killer) is reported by number with the signal that killed it or its
exit code, within a fraction of a second, even when it died halfway through
sending a batch; a worker whose main process dies exits at once, instead of
looping forever on its full queue.
"""

from __future__ import annotations

import atexit
import ctypes
import multiprocessing
import os
import pickle
import queue as thread_queue
import random
import signal
import struct
import sys
import threading
import time
import traceback
import weakref
from multiprocessing import Process
from multiprocessing import queues as mp_queues
from multiprocessing.reduction import ForkingPickler
from typing import Any

import numpy as np
from batchgenerators.dataloading import multi_threaded_augmenter as _bg
from batchgenerators.dataloading.data_loader import SlimDataLoaderBase
from batchgenerators.dataloading.multi_threaded_augmenter import MultiThreadedAugmenter
from batchgenerators.dataloading.single_threaded_augmenter import SingleThreadedAugmenter

from epochal.errors import DataWorkerError

__all__ = [
    "EpochDataLoader",
    "EpochMultiThreadedAugmenter",
    "EpochSingleThreadedAugmenter",
    "WorkerFailure",
]

_FAILURE_KEY = "__epochal_worker_failure__"

# Augmenters whose workers are running. At interpreter exit multiprocessing
# kills daemon workers, possibly mid-write of a batch, and batchgenerators'
# cleanup then blocks forever reading the half-written message. Closing the
# live ones first (atexit runs this before multiprocessing's own handler,
# which was registered earlier, at its import) makes exit clean.
_LIVE_AUGMENTERS: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _close_live_augmenters() -> None:
    for augmenter in list(_LIVE_AUGMENTERS):
        augmenter.close()


class WorkerFailure:
    """A worker's exception, made safe to send through a queue."""

    def __init__(self, exc: BaseException, worker: int, batch_nr: int, in_worker: bool) -> None:
        self.worker = worker
        self.batch_nr = batch_nr
        self.in_worker = in_worker
        self.type_name = type(exc).__name__
        self.message = str(exc)
        self.traceback = "".join(traceback.format_exception(exc))
        frames = traceback.extract_tb(exc.__traceback__)
        self.where = (
            f" (in {frames[-1].name}, {os.path.basename(frames[-1].filename)}:{frames[-1].lineno})"
            if frames
            else ""
        )
        try:
            self.pickled: bytes | None = pickle.dumps(exc)
        except Exception:  # noqa: BLE001 - unpicklable exceptions travel as text
            self.pickled = None

    def error(self) -> DataWorkerError:
        where = f"data worker {self.worker}" if self.in_worker else "the data loader"
        text = (
            f"{where} failed on batch {self.batch_nr}: {self.type_name}: {self.message}"
            f"{self.where}. Set n_process_augmentation=0 (data.num_workers = 0) to run the "
            "data pipeline in the main process and debug it there"
        )
        error = DataWorkerError(text)
        # Not in the message (the CLI prints that as its one line): a note, which is shown
        # wherever the traceback is (--debug, an uncaught error, pytest).
        error.add_note(f"--- traceback in the worker ---\n{self.traceback.rstrip()}")
        if self.pickled is not None:
            try:
                error.__cause__ = pickle.loads(self.pickled)
            except Exception:  # noqa: BLE001 - the text above still says what happened
                pass
        return error


class EpochDataLoader(SlimDataLoaderBase):
    """One epoch of batches from ``dataset`` in the order ``indices``.

    Subclass and override :meth:`load_batch` to change how a batch is built;
    pass the subclass as ``DataManager(data_loader_cls=...)``.
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int,
        indices: np.ndarray,
        transforms: Any = None,
        seed: int = 0,
        num_workers: int = 1,
    ) -> None:
        super().__init__(dataset, batch_size, max(1, num_workers))
        self.indices = np.asarray(indices, dtype=np.int64)
        self.transforms = transforms
        self.seed = int(seed)
        self.n_batches = -(-len(self.indices) // batch_size)
        self._next_batch_nr: int | None = None
        self._failed = False
        self._in_worker = False

    def set_thread_id(self, thread_id: int) -> None:
        # batchgenerators calls this only inside a worker process.
        super().set_thread_id(thread_id)
        self._in_worker = True

    def generate_train_batch(self) -> dict[str, Any]:
        if self._next_batch_nr is None:
            self._next_batch_nr = self.thread_id
        batch_nr = self._next_batch_nr
        if self._failed or batch_nr >= self.n_batches:
            raise StopIteration
        self._next_batch_nr += self.number_of_threads_in_multithreaded
        try:
            return self.load_batch(batch_nr)
        except Exception as exc:  # noqa: BLE001 - sent to the main process, raised there
            self._failed = True
            return {_FAILURE_KEY: WorkerFailure(exc, self.thread_id, batch_nr, self._in_worker)}

    def batch_indices(self, batch_nr: int) -> np.ndarray:
        start = batch_nr * self.batch_size
        return self.indices[start : start + self.batch_size]

    def load_batch(self, batch_nr: int) -> dict[str, Any]:
        """Gather batch ``batch_nr`` and apply the transforms with its own seed."""
        batch = self._data.get_batch(self.batch_indices(batch_nr))
        if self.transforms is None:
            return batch
        return self._transform(batch, batch_nr)

    def _transform(self, batch: dict[str, Any], batch_nr: int) -> dict[str, Any]:
        # batchgenerators transforms draw from numpy's *and* Python's global
        # RNGs. Seeding both per batch makes an epoch independent of the worker
        # count (and keeps forked workers from sharing Python's RNG state). In a
        # worker those RNGs are ours; in the main process the user's come back.
        batch_seed = int(np.random.SeedSequence([self.seed, batch_nr]).generate_state(1)[0])
        saved = None if self._in_worker else (np.random.get_state(), random.getstate())
        np.random.seed(batch_seed)
        random.seed(batch_seed)
        try:
            result = self.transforms(**batch)
        finally:
            if saved is not None:
                np.random.set_state(saved[0])
                random.setstate(saved[1])
        if not isinstance(result, dict):
            raise TypeError(
                f"transform {type(self.transforms).__name__} returned {type(result).__name__}; "
                "batchgenerators transforms must return the batch dict"
            )
        return result


def _raise_if_failed(item: Any) -> Any:
    if type(item) is dict and _FAILURE_KEY in item:
        raise item[_FAILURE_KEY].error()
    return item


class EpochSingleThreadedAugmenter(SingleThreadedAugmenter):
    """batchgenerators' in-process augmenter, with epochal's error reporting."""

    def __next__(self) -> dict[str, Any]:
        return _raise_if_failed(super().__next__())

    def close(self) -> None:
        """Nothing to stop: no worker processes (same interface as the multi-process one)."""


_PR_SET_PDEATHSIG = 1


def _exit_with_main_process(main_pid: int, main_thread: bool) -> None:
    """Make this worker die when the process that started it dies.

    Workers are daemons, but only a parent that exits normally stops its daemons; after a
    ``kill -9`` or the out-of-memory killer they would loop forever on their full queues. On
    Linux the kernel kills them with the parent (``PR_SET_PDEATHSIG``; only when the main
    thread started them, as the signal follows the starting *thread*); everywhere, a thread
    that checks the parent twice a second ends the worker once it is gone.
    """
    parent = os.getppid()
    if sys.platform.startswith("linux") and main_thread and parent == main_pid:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # no prctl (a libc without it): the thread remains
            pass
        if os.getppid() != main_pid:  # it died before prctl took effect
            os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="epochal-parent-watch", daemon=True).start()


def _worker(main_pid: int, main_thread: bool, *producer_args: Any) -> None:
    """A batchgenerators worker that does not outlive the main process."""
    # A forked worker inherits the main process's Python signal handlers: with the trainer's
    # SIGTERM handler (stop at the next batch) the SIGTERM of ``Process.terminate`` would only
    # print a message in the worker, and a worker stuck in a long batch would outlive the
    # shutdown. A worker has nothing to save: SIGTERM ends it.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _exit_with_main_process(main_pid, main_thread)
    _bg.producer(*producer_args)


class _WorkerQueue(mp_queues.Queue):
    """A worker's batch queue whose ``get(timeout=...)`` never blocks past its timeout, even
    on half a message.

    A worker killed while its queue's feeder thread writes a batch leaves part of the message
    in the pipe (a batch larger than the pipe's 64 KiB is written in pieces, as it is read).
    ``multiprocessing.Queue.get`` then finds the pipe readable and blocks forever on the
    rest: the main process, and workers forked after this one, hold the pipe's write end, so
    no end of file ever comes, and batchgenerators' check that the workers live never runs
    again. Here a message is read as far as the pipe has it, kept, and finished by later
    calls; meanwhile the caller gets ``Empty`` and goes on checking the workers.
    Same wire format as ``multiprocessing.connection`` (a 4-byte big-endian length, -1 and an
    8-byte length above 2 GiB, then the pickle); the worker side is the standard one.
    """

    def __init__(self, maxsize: int) -> None:
        super().__init__(maxsize, ctx=multiprocessing.get_context())

    def _reset(self, *args: Any, **kwargs: Any) -> None:
        super()._reset(*args, **kwargs)
        self._header = bytearray()  # the length prefix read so far
        self._body: bytearray | None = None  # the message, once its length is known
        self._filled = 0  # bytes of the message read so far

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        if sys.platform == "win32":  # no file descriptor to read in pieces
            return super().get(block, timeout)
        if self._closed:
            raise ValueError(f"Queue {self!r} is closed")
        if not block:
            timeout = 0.0
        elif timeout is not None:
            timeout = max(0.0, timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._rlock.acquire(True, timeout):  # only the main process reads
            raise thread_queue.Empty
        try:
            message = self._read_message(deadline)
        finally:
            self._rlock.release()
        self._sem.release()  # one message taken: the worker may put another
        return ForkingPickler.loads(message)

    def _read_message(self, deadline: float | None) -> bytearray:
        """The next whole message, or ``Empty`` once ``deadline`` passes (what was read so
        far is kept for the next call)."""
        fd = self._reader.fileno()
        while True:
            if self._body is None:
                need = self._header_size() - len(self._header)
                if need == 0:
                    self._body, self._filled = bytearray(self._length()), 0
                    continue
            else:
                need = len(self._body) - self._filled
                if need == 0:
                    message, self._header, self._body = self._body, bytearray(), None
                    return message
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self._reader.poll(remaining):
                raise thread_queue.Empty
            # The pipe is readable: these reads return what it holds, without waiting.
            if self._body is None:
                chunk = os.read(fd, need)
                self._header += chunk
                got = len(chunk)
            else:  # straight into the message's buffer: no copy of a large batch
                got = os.readv(fd, [memoryview(self._body)[self._filled :]])
                self._filled += got
            if got == 0:  # every writer gone: nothing more will come
                if deadline is None:
                    raise EOFError("a data worker's queue was closed in the middle of a message")
                time.sleep(max(0.0, deadline - time.monotonic()))  # do not spin
                raise thread_queue.Empty

    def _header_size(self) -> int:
        if len(self._header) >= 4 and struct.unpack("!i", self._header[:4])[0] == -1:
            return 12  # above 2 GiB: -1, then the length in 8 bytes
        return 4

    def _length(self) -> int:
        if len(self._header) == 12:
            return struct.unpack("!Q", self._header[4:])[0]
        return struct.unpack("!i", self._header)[0]


def _results_loop(errors: list[BaseException], *args: Any) -> None:
    """batchgenerators' result thread, minus its traceback on stderr when a worker dies (it
    raises a RuntimeError, uncaught in its thread; the main thread reports the death anyway,
    and a CLI user would see a traceback despite no ``--debug``). Any other error of the
    thread is kept in ``errors`` for the main thread, which would otherwise wait for batches
    that no thread collects any more."""
    abort_event = args[2]
    try:
        _bg.results_loop(*args)
    except RuntimeError:
        if not abort_event.is_set():
            errors.append(sys.exc_info()[1])
            abort_event.set()
    except BaseException as exc:  # noqa: BLE001 - reported by the main thread
        errors.append(exc)
        abort_event.set()


def _describe_exit(worker: int, code: int) -> str:
    """``data worker 1 was killed by SIGKILL (signal 9)`` or ``... exited with code 3``."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "a signal"
        return f"data worker {worker} was killed by {name} (signal {-code})"
    if code == 0:
        return f"data worker {worker} exited before the epoch ended"
    return f"data worker {worker} exited with code {code}"


def _stopped_error(codes: list[int | None], thread_errors: list[BaseException]) -> DataWorkerError:
    """The one-line error for workers that died (``codes``: their exit codes, ``None`` for
    those alive) or a result thread that failed."""
    deaths = [_describe_exit(worker, code) for worker, code in enumerate(codes) if code is not None]
    if deaths:
        what = ", ".join(deaths)
        if -signal.SIGKILL in codes:
            what += ", which is what the out-of-memory killer and kill -9 do"
    elif thread_errors:
        error = thread_errors[0]
        what = (
            "the thread that collects the data workers' batches failed: "
            f"{type(error).__name__}: {error}"
        )
    else:
        what = "data augmentation stopped before the epoch ended"
    failure = DataWorkerError(
        f"{what}. Set n_process_augmentation=0 (data.num_workers = 0) to run the data "
        "pipeline in the main process and debug it there"
    )
    if not deaths and thread_errors:
        failure.__cause__ = thread_errors[0]
    return failure


class EpochMultiThreadedAugmenter(MultiThreadedAugmenter):
    """batchgenerators' multi-process augmenter for one epoch.

    Raises the worker's own exception (as :class:`DataWorkerError`), reports a
    worker that died with the signal that killed it or its exit code, and shuts
    its workers down as soon as the epoch ends or fails, so no process outlives
    it. No read from a worker can block past a short timeout (see
    :class:`_WorkerQueue`), so neither a death nor the shutdown after it hangs.
    """

    #: Seconds a failed epoch's shutdown waits for a worker to finish the batch it is making
    #: before it is terminated (the error should come out now, not after a slow batch).
    FAILED_SHUTDOWN_S = 1.0

    def _start(self) -> None:
        # batchgenerators' own _start forks inside threadpool_limits(1). Leaving
        # that block rebuilds numpy's and scipy's OpenBLAS thread pools in the
        # main process, whose new threads spin ~100 ms each: every epoch, on
        # every core but one (measured: 0.85x PyTorch's DataLoader at 2 workers,
        # 0.99x without it). So the workers are started here the same way, minus
        # the limit; like DataLoader's workers, they inherit the BLAS settings.
        if self.was_initialized:
            return
        self._finish()
        self.abort_event.clear()
        self.pause_event.clear()
        self._queue_ctr = 0
        self._end_ctr = 0
        self._thread_errors: list[BaseException] = []
        main_pid = os.getpid()
        main_thread = threading.current_thread() is threading.main_thread()
        for worker in range(self.num_processes):
            self._queues.append(_WorkerQueue(self.num_cached_per_queue))
            process = Process(
                target=_worker,
                args=(
                    main_pid,
                    main_thread,
                    self._queues[worker],
                    self.generator,
                    self.transform,
                    worker,
                    self.seeds[worker],
                    self.abort_event,
                    self.pause_event,
                    self.wait_time,
                ),
                daemon=True,
            )
            self._processes.append(process)
            process.start()
        gpu = None
        if self.pin_memory and _bg.torch is not None and _bg.torch.cuda.is_available():
            gpu = _bg.torch.cuda.current_device()
        self.pin_memory_queue = thread_queue.Queue(
            max(3, self.num_cached_per_queue * self.num_processes // 2)
        )
        self.pin_memory_thread = threading.Thread(
            target=_results_loop,
            args=(
                self._thread_errors,
                self._queues,
                self.pin_memory_queue,
                self.abort_event,
                self.pin_memory,
                gpu,
                self.wait_time,
                self._processes,
            ),
            daemon=True,
        )
        self.pin_memory_thread.start()
        self.was_initialized = True
        self._epochal_workers = list(self._processes)
        _LIVE_AUGMENTERS.add(self)

    @property
    def worker_pids(self) -> list[int]:
        """Process ids of the workers last started, in worker order (none before the first
        batch is asked for)."""
        return [worker.pid for worker in getattr(self, "_epochal_workers", [])]

    def close(self) -> None:
        """Stop the workers now (the trainer calls this when an epoch ends or fails)."""
        self._finish()

    def __next__(self) -> dict[str, Any]:
        # batchgenerators' __next__, with its wait for the next batch replaced: that one
        # only watched a flag set by the result thread, and waited forever when that thread
        # was stuck or gone.
        if not self.was_initialized:
            self._start()
        try:
            item = self._next_item()
            while isinstance(item, str) and item == "end":  # each worker ends once
                self._end_ctr += 1
                if self._end_ctr == self.num_processes:
                    self._end_ctr = 0
                    self._queue_ctr = 0
                    raise StopIteration
                item = self._next_item()
            return _raise_if_failed(item)
        except StopIteration:
            self._finish()
            raise
        except (DataWorkerError, KeyboardInterrupt):
            self.abort_event.set()
            self._finish(timeout=self.FAILED_SHUTDOWN_S)
            raise

    def _next_item(self) -> Any:
        """The next item from the result thread; while none comes, check every
        ``wait_time`` that the workers and that thread are still there."""
        while True:
            try:
                return self.pin_memory_queue.get(timeout=self.wait_time)
            except thread_queue.Empty:
                pass
            failure = self._stopped()
            if failure is not None:
                raise failure

    def _stopped(self) -> DataWorkerError | None:
        """The error to raise when a worker died or the result thread stopped, else ``None``."""
        workers = self._epochal_workers
        codes = [worker.exitcode for worker in workers]
        if (
            all(code is None for code in codes)
            and not self.abort_event.is_set()
            and self.pin_memory_thread.is_alive()
        ):
            return None
        # The result thread may have seen a death before the worker was reaped: give it a
        # moment, so that the error can name the worker and its signal.
        deadline = time.monotonic() + 1.0
        while (
            all(code is None for code in codes)
            and not self._thread_errors
            and time.monotonic() < deadline
        ):
            time.sleep(0.01)
            codes = [worker.exitcode for worker in workers]
        return _stopped_error(codes, self._thread_errors)

    def _finish(self, timeout: float = 10, force: bool = False) -> None:
        workers = list(self._processes)
        super()._finish(timeout=timeout, force=force)
        for worker in workers:  # one that was not ended by the SIGTERM of the shutdown
            if worker.is_alive():
                worker.kill()
                worker.join(1.0)
        _LIVE_AUGMENTERS.discard(self)
