"""SIGTERM and Ctrl-C stop at a batch boundary and resume exactly; a run folder has one owner;
a plugin that breaks on import does not stop training. Real ``epochal`` processes."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from epochal.testing import epochal_command, run_epochal, user_env

torch = pytest.importorskip("torch")

QUICK = ["--set", "callbacks.tensorboard=false", "--set", "callbacks.learning_curves=false"]

#: A plugin that sends this process a signal at one batch: SIGNAL_AT="SIGTERM:<epoch>:<batch>".
SIGNAL_PLUGIN = """
import os, signal
from epochal import hookimpl

@hookimpl
def epochal_at_batch_end(trainer, epoch, batch_nr, losses, metrics):
    spec = os.environ.get("SIGNAL_AT")
    if spec and not os.environ.get("SIGNAL_SENT"):
        name, at_epoch, at_batch = spec.split(":")
        if (epoch, batch_nr) == (int(at_epoch), int(at_batch)):
            os.environ["SIGNAL_SENT"] = "1"
            os.kill(os.getpid(), getattr(signal, name))
"""


epochal = run_epochal  # `epochal ARGS` as a user runs it


def start(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        epochal_command(*args),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=user_env(env),
    )


def epochs_in(run: Path) -> list[int]:
    with open(run / "metrics.csv", newline="") as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


def weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoint_last.pt", weights_only=True)["model"]


def wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "code"), [("SIGTERM", 143), ("SIGINT", 130)])
def test_a_signal_stops_at_a_batch_boundary_and_resume_is_exact(
    tmp_path, fake_distribution, name, code
):
    plugin = fake_distribution(tmp_path, "sigplug", SIGNAL_PLUGIN)
    whole = epochal(
        "train", "--run-dir", "whole", "--epochs", "3", *QUICK, cwd=tmp_path, env=plugin
    )
    assert whole.returncode == 0, whole.stderr

    stopped = epochal(
        "train",
        "--run-dir",
        "run",
        "--epochs",
        "3",
        *QUICK,
        cwd=tmp_path,
        env={**plugin, "SIGNAL_AT": f"{name}:2:10"},
    )
    assert stopped.returncode == code, stopped.stdout + stopped.stderr
    assert f"stopped by {name} in epoch 2, after batch 11" in stopped.stderr
    assert "continue it with: epochal resume run" in stopped.stderr
    assert "Traceback" not in stopped.stderr
    state = torch.load(tmp_path / "run" / "checkpoint_last.pt", weights_only=True)
    assert state["epoch"] == 1 and state["interrupted"] == {
        "epoch": 2,
        "batches_done": 11,
        "world_size": 1,
    }
    assert epochs_in(tmp_path / "run") == [1]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == f"stopped by {name}"
    assert summary["stopped_at"] == {"epoch": 2, "batches_done": 11}

    resumed = epochal("resume", "run", "--epochs", "3", cwd=tmp_path, env=plugin)
    assert resumed.returncode == 0, resumed.stderr
    assert "epoch 2/3" in resumed.stdout and "epoch 1/3" not in resumed.stdout
    assert epochs_in(tmp_path / "run") == [1, 2, 3]
    expected, got = weights(tmp_path / "whole"), weights(tmp_path / "run")
    assert all(torch.equal(expected[key], got[key]) for key in expected)  # bitwise


@pytest.mark.slow
def test_sigterm_from_outside_and_a_second_run_in_the_same_folder(tmp_path):
    process = start("train", "--run-dir", "run", "--epochs", "500", *QUICK, cwd=tmp_path)
    try:
        wait_for(lambda: (tmp_path / "run" / "metrics.csv").exists())
        held = epochal("resume", "run", "--epochs", "2", cwd=tmp_path)
        assert held.returncode == 2, held.stderr
        assert f"run is in use by epochal process {process.pid}" in held.stderr
        again = epochal("train", "--run-dir", "run", cwd=tmp_path)
        assert again.returncode == 2 and "is not empty" in again.stderr
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert time.monotonic() - sent < 10
    assert process.returncode == 143, stderr
    assert "stopped by SIGTERM" in stderr and "epochal resume run" in stderr
    state = torch.load(tmp_path / "run" / "checkpoint_last.pt", weights_only=True)
    done = epochs_in(tmp_path / "run")[-1]
    assert (
        state["epoch"] == done and (state["interrupted"] or {}).get("epoch", done + 1) == done + 1
    )


@pytest.mark.slow
def test_a_killed_run_does_not_leave_its_folder_locked(tmp_path):
    process = start("train", "--run-dir", "run", "--epochs", "500", *QUICK, cwd=tmp_path)
    try:
        # checkpoint_last, not metrics.csv: an epoch's row is written before its checkpoint,
        # so a kill right after the first row left no checkpoint to resume from
        wait_for(lambda: (tmp_path / "run" / "checkpoint_last.pt").exists())
    finally:
        process.kill()  # SIGKILL: no clean-up of any kind
        process.communicate(timeout=30)
    # what resume continues from (metrics.csv may hold one epoch more, trained again)
    done = torch.load(tmp_path / "run" / "checkpoint_last.pt", weights_only=True)["epoch"]
    resumed = epochal("resume", "run", "--epochs", str(done + 1), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"epoch {done + 1}/{done + 1}" in resumed.stdout, resumed.stdout
    assert epochs_in(tmp_path / "run") == list(range(1, done + 2))


def test_a_plugin_that_breaks_on_import_does_not_stop_training(tmp_path, fake_distribution):
    env = fake_distribution(tmp_path, "brokenplug", "raise RuntimeError('bad plugin import')\n")
    result = epochal("train", "--run-dir", "run", "--epochs", "1", *QUICK, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "brokenplug" in result.stderr and "bad plugin import" in result.stderr
    assert "best val_accuracy" in result.stdout
    listed = epochal("plugins", cwd=tmp_path, env=env, timeout=60)
    assert listed.returncode == 0
    assert "Broken plugins" in listed.stdout and "bad plugin import" in listed.stdout
