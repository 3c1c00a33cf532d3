"""Soak: a long run of a tiny model leaks no memory, file handles or worker processes.

What is run: the default job (an MLP 64-128-10 on scikit-learn's digits, torch backend)
through the Python API (``Experiment.from_config``) for 300 epochs (``--quick``: 30), with a
checkpoint every epoch (``experiment.checkpoint_freq = 1``: ``checkpoint_epoch_<n>``,
``checkpoint_last`` and ``checkpoint_best``), every callback on -- ``progress_bar`` (lines,
to /dev/null), ``csv_logger``, ``tensorboard``, ``learning_curves`` (``curves.png`` every
epoch), ``early_stopping`` (patience larger than the run, so that it never stops it) and
``timer`` (to /dev/null) -- and 2 batchgenerators worker processes for the training data.

What is measured: a probe callback, registered with the run, reads at the end of every epoch
this process's resident memory (``VmRSS`` in ``/proc/self/status``), its open file
descriptors (``/proc/self/fd``) and its live child processes (``/proc/self/task/*/children``).
A table shows epochs 1, 20, a third, two thirds and the last; then the growth from epoch 20
(the warm-up -- imports, first allocations, the allocator's pools -- is over by then) to the
last epoch, and the child processes still alive once the run has returned (after up to 10 s
for them to exit).

Target: RSS growth epoch 20 -> last <= 50 MB; no open file descriptors more at the last
epoch than at epoch 20; no child process left after the run. Why: a run of days must not
grow until it is killed, run out of descriptors, or leave orphaned workers behind. Threads:
``OMP_NUM_THREADS``/``torch.set_num_threads`` 1 (``--threads``), the model is far too small
to gain from more. Exits 0 either way ("TARGET MET" / "TARGET MISSED"); a failing run is an
error (exit 2).
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import sys
import tempfile
import time
from typing import Any

RSS_TARGET_MB = 50.0
BASELINE_EPOCH = 20


def rss_mb() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd")) - 1  # the listing's own descriptor


def children() -> list[int]:
    pids: list[int] = []
    for path in glob.glob(f"/proc/{os.getpid()}/task/*/children"):
        with open(path) as handle:
            pids += [int(pid) for pid in handle.read().split()]
    return pids


class Probe:
    """A callback that records (rss MB, open fds, live children) at the end of each epoch."""

    def __init__(self) -> None:
        self.rows: dict[int, tuple[float, int, int]] = {}

    def at_epoch_end(self, trainer: Any, **kwargs: Any) -> None:
        epoch = kwargs.get("epoch") or (max(self.rows, default=0) + 1)
        self.rows[int(epoch)] = (rss_mb(), open_fds(), len(children()))

    def __getattr__(self, name: str) -> Any:  # the other hooks: nothing to do
        if name.startswith("at_"):
            return lambda *args, **kwargs: None
        raise AttributeError(name)


def run(epochs: int, workers: int, folder: str) -> Probe:
    import torch

    from epochal.job.config import load_config
    from epochal.runs.experiment import Experiment

    config = load_config(
        None,
        [
            f"training.num_epochs={epochs}",
            "experiment.checkpoint_freq=1",
            f"experiment.save_path={folder!r}".replace("'", '"'),
            f"data.num_workers={workers}",
            "callbacks.progress_bar={lines = true}",
            f"callbacks.early_stopping={{patience = {epochs + 1}}}",
            "callbacks.timer={}",
        ],
    )
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    probe = Probe()
    experiment = Experiment.from_config(config)
    with (
        open(os.devnull, "w") as sink,
        contextlib.redirect_stdout(sink),
        contextlib.redirect_stderr(sink),  # the timer's lines
    ):
        experiment.run(run_dir=os.path.join(folder, "run"), callbacks=[probe])
    return probe


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30 epochs (a smoke run)")
    parser.add_argument("--epochs", type=int, default=None, help="default 300; quick: 30")
    parser.add_argument("--workers", type=int, default=2, help="data worker processes")
    parser.add_argument("--threads", type=int, default=1, help="OMP/MKL threads")
    args = parser.parse_args(argv)
    epochs = args.epochs or (30 if args.quick else 300)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = str(args.threads)

    started = time.perf_counter()
    fds_before = open_fds()
    with tempfile.TemporaryDirectory(prefix="epochal-soak-") as folder:
        try:
            probe = run(epochs, args.workers, folder)
        except Exception as exc:  # noqa: BLE001 - a failing run is the bench's error
            print(f"soak: the run failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            sys.exit(2)
        deadline = time.monotonic() + 10
        while children() and time.monotonic() < deadline:
            time.sleep(0.1)
        left = children()
        fds_after = open_fds()
    wall = time.perf_counter() - started

    if len(probe.rows) != epochs:
        print(f"soak: the probe saw {len(probe.rows)} of {epochs} epochs", file=sys.stderr)
        sys.exit(2)
    baseline = min(BASELINE_EPOCH, epochs)
    shown = sorted({1, baseline, epochs // 3, 2 * epochs // 3, epochs} - {0})
    print(f"soak: {epochs} epochs, checkpoint every epoch, all callbacks, {args.workers} workers")
    print(f"{'epoch':>6}  {'RSS MB':>8}  {'open fds':>8}  {'children':>8}")
    for epoch in shown:
        rss, fds, kids = probe.rows[epoch]
        print(f"{epoch:>6}  {rss:>8.1f}  {fds:>8}  {kids:>8}")
    rss_growth = probe.rows[epochs][0] - probe.rows[baseline][0]
    fd_growth = probe.rows[epochs][1] - probe.rows[baseline][1]
    peak = max(row[0] for row in probe.rows.values())
    print(
        f"RSS growth epoch {baseline} -> {epochs}: {rss_growth:+.1f} MB "
        f"(target <= {RSS_TARGET_MB:.0f} MB; peak {peak:.1f} MB)"
    )
    print(f"open fd growth epoch {baseline} -> {epochs}: {fd_growth:+d} (target <= 0)")
    print(f"open fds before the run {fds_before}, after it {fds_after}")
    print(f"child processes after the run: {len(left)} (target 0) {left or ''}".rstrip())
    print(f"wall time: {wall:.1f} s")
    met = rss_growth <= RSS_TARGET_MB and fd_growth <= 0 and not left
    print("TARGET MET" if met else "TARGET MISSED")


if __name__ == "__main__":
    main()
