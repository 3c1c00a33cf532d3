"""Issue 8, item 5: a data worker that raises or is killed, and a main process killed while
its workers run: a clear error within 10 s, never a hang, and no worker left running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from epochal.testing import epochal_command, run_epochal, user_env

pytest.importorskip("torch")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

QUICK = [
    "--set",
    "callbacks.tensorboard=false",
    "--set",
    "callbacks.learning_curves=false",
    "--set",
    "data.num_workers=2",
]
SOURCE = Path(__file__).with_name("_faultmod_source.py")


def _env(tmp_path: Path) -> dict[str, str]:
    mods = tmp_path / "mods"
    mods.mkdir()
    (mods / "faultmod.py").write_text(SOURCE.read_text())
    return user_env({"PYTHONPATH": str(mods)})


def _args(transform: str, pids: Path, **params: object) -> list[str]:
    table = ", ".join(
        [f'name="faultmod:{transform}"', f'pids="{pids}"']
        + [f"{key}={value}" for key, value in params.items()]
    )
    return ["train", *QUICK, "--set", f"data.transforms=[{{{table}}}]", "--run-dir", "run"]


def _state(pid: int) -> str | None:
    """The process's state letter (``R``, ``S``, ``Z``...), ``None`` when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            return next(line.split()[1] for line in status if line.startswith("State:"))
    except (FileNotFoundError, ProcessLookupError, StopIteration):
        return None


def _running(pids: set[int], within: float) -> dict[int, str]:
    """Those of ``pids`` still running (not gone, not a zombie) after up to ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        running = {pid: state for pid in pids if (state := _state(pid)) not in (None, "Z")}
        if not running or time.monotonic() > deadline:
            return running
        time.sleep(0.05)


def _worker_pids(pids: Path) -> set[int]:
    return {int(line) for line in pids.read_text().split()} if pids.exists() else set()


def _kill_leftovers(pids: set[int]) -> None:
    for pid in _running(pids, 0):  # a failing test must not leave orphans behind either
        os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize(
    ("transform", "debug"),
    [("RaiseAtBatch", False), ("RaiseAtBatch", True), ("KillAtBatch", False)],
)
def test_a_failing_worker_fails_the_run_quickly_and_leaves_no_worker(tmp_path, transform, debug):
    pids = tmp_path / "pids"
    args = _args(transform, pids, at=3) + (["--debug"] if debug else [])
    result = run_epochal(*args, cwd=tmp_path, env=_env(tmp_path), timeout=60)
    ended = time.time()
    workers = _worker_pids(pids)
    try:
        assert result.returncode == 1, result.stderr
        fault_time, fault_pid = (pids.parent / "pids.fault").read_text().split()
        assert ended - float(fault_time) < 10, "the fault took too long to end the run"
        assert len(workers) == 2 and int(fault_pid) in workers
        assert _running(workers, 1.0) == {}
        lines = result.stderr.splitlines()
        if transform == "RaiseAtBatch":
            failure = next(line for line in lines if line.startswith("epochal: training failed"))
            assert "data worker" in failure and "failed on batch" in failure
            assert "ValueError: faultmod gave up on call 3 (in fault, faultmod.py:" in failure
        else:
            failure = next(line for line in lines if line.startswith("epochal: training failed"))
            assert "worker" in failure and "(exit code -9) died" in failure
        if debug:  # the worker's own traceback rides along as a note of the error
            assert "Traceback" in result.stderr
            assert "--- traceback in the worker ---" in result.stderr
            assert 'faultmod.py", line' in result.stderr
        else:
            assert "Traceback" not in result.stderr, result.stderr
            assert "(run again with --debug for the traceback)" in lines
    finally:
        _kill_leftovers(workers)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_9_of_the_main_process_leaves_no_worker_running(tmp_path):
    """Daemon workers are only stopped by a parent that exits normally; after ``kill -9`` they
    used to loop forever on their full queues."""
    pids = tmp_path / "pids"
    process = subprocess.Popen(
        epochal_command(*_args("Slow", pids, sleep=0.05), "--epochs", "50"),
        cwd=tmp_path,
        env=_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    workers: set[int] = set()
    try:
        deadline = time.monotonic() + 60
        while len(workers) < 2 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
            workers = _worker_pids(pids)
        assert len(workers) == 2, process.stderr.read().decode() if process.poll() else workers
        assert _running(workers, 0).keys() == workers  # they are at work
        process.send_signal(signal.SIGKILL)
        assert process.wait(10) == -signal.SIGKILL
        assert _running(workers, 3.0) == {}, "workers outlived their main process"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()
        _kill_leftovers(workers | _worker_pids(pids))
