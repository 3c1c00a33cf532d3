"""Source text of ``faultmod``: batchgenerators transforms for the worker fault tests
(written into a folder on the subprocess's PYTHONPATH; never imported by pytest).

Each records the worker's process id in ``pids`` (one line a call) and counts its calls
in its own process: workers take batches in turn, so ``at=3`` is a worker's third batch;
only the first worker to get there faults, and only once every worker has recorded itself
(on a busy machine one worker can reach its third batch before the other made its first, and
the test must know both to check that neither outlives the run).
"""

import os
import signal
import time

from batchgenerators.transforms.abstract_transforms import AbstractTransform


class _Recording(AbstractTransform):  # a config may name transforms of this kind only
    def __init__(self, pids, at=3, sleep=0.0, workers=2):
        self.pids, self.at, self.sleep, self.workers = pids, at, sleep, workers
        self.calls = 0

    def __call__(self, **batch):
        self.calls += 1
        with open(self.pids, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        if self.sleep:
            time.sleep(self.sleep)
        if self.calls == self.at and self._first():
            self.fault()
        return batch

    def _first(self):
        """Only the first worker to get here faults; it writes the time to ``<pids>.fault``."""
        deadline = time.monotonic() + 30
        while len(set(open(self.pids).read().split())) < self.workers:
            if time.monotonic() > deadline:
                raise RuntimeError("faultmod: the other workers never took a batch")
            time.sleep(0.01)
        try:
            fd = os.open(self.pids + ".fault", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return False
        os.write(fd, f"{time.time()!r} {os.getpid()}\n".encode())
        os.close(fd)
        return True

    def fault(self):
        pass


class RaiseAtBatch(_Recording):
    def fault(self):
        raise ValueError(f"faultmod gave up on call {self.calls}")


class KillAtBatch(_Recording):
    def fault(self):
        os.kill(os.getpid(), signal.SIGKILL)


class Slow(_Recording):
    """Never faults; each batch takes ``sleep`` seconds (the main process gets killed)."""
