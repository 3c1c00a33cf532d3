"""Issue 8, item 1: ``kill -9`` of ``epochal train`` at five moments, then ``epochal resume``:
the run ends with the weights of an uninterrupted run of the same seed (bitwise, on the CPU,
for torch and for tf) and ``metrics.csv`` has exactly one row per epoch.

The process kills itself at the chosen moment: the ``faultkill`` plugin (its source is
``_faultkill_source.py``), installed as a real distribution on PYTHONPATH, reads
``FAULT_KILL_AT``. TF on the CPU is bitwise exact too (measured: every weight and optimizer
variable equal, max difference 0.0), so both backends are compared with ``np.array_equal``.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from epochal.testing import epochal_command, run_epochal, user_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

EPOCHS = 4
JOB = [
    "--seed",
    "3",
    "--set",
    "callbacks.tensorboard=false",
    "--set",
    "callbacks.learning_curves=false",
]
PLUGIN = Path(__file__).with_name("_faultkill_source.py")
SUFFIX = {"torch": ".pt", "tf": ".tf.npz"}


def epochal(*args: str, cwd: Path, env: dict[str, str] | None = None):
    return run_epochal(*args, cwd=cwd, timeout=180, env=env)


def load(backend: str, path: Path) -> dict:
    if backend == "torch":
        from epochal_torch.io import load_checkpoint
    else:
        from epochal_tf.io import load_checkpoint
    return load_checkpoint(path)


def arrays(backend: str, state: dict) -> dict[str, np.ndarray]:
    """Weights and optimizer state as named numpy arrays."""
    if backend == "torch":
        out = {f"model/{k}": v.numpy() for k, v in state["model"].items()}
        for name, optimizer in state["optimizers"].items():
            for param, values in optimizer["state"].items():
                for key, value in values.items():
                    out[f"optimizers/{name}/{param}/{key}"] = np.asarray(value)
        return out
    out = {f"model/{i}": v for i, v in enumerate(state["model"])}
    for name, values in state["optimizers"].items():
        out.update({f"optimizers/{name}/{i}": v for i, v in enumerate(values)})
    return out


def epochs_in(run: Path) -> list[str]:
    with open(run / "metrics.csv", newline="") as handle:
        return [row["epoch"] for row in csv.DictReader(handle)]


def start_reference(backend: str, cwd: Path) -> subprocess.Popen:
    """The uninterrupted run, in the background while the test kills and resumes."""
    args = ["train", *JOB, "--backend", backend, "--epochs", str(EPOCHS), "--run-dir", "run"]
    return subprocess.Popen(
        epochal_command(*args),
        cwd=cwd,
        env=user_env(drop=("FAULT_",)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def reference_weights(process: subprocess.Popen, backend: str, cwd: Path) -> dict:
    _, stderr = process.communicate(timeout=180)
    assert process.returncode == 0, stderr
    state = load(backend, cwd / "run" / f"checkpoint_last{SUFFIX[backend]}")
    assert state["epoch"] == EPOCHS
    return arrays(backend, state)


def temp_files(run: Path) -> list[str]:
    return sorted(name for name in os.listdir(run) if name.endswith(".tmp"))


def kill_at(moment: str, command: list[str], cwd: Path, plugin: dict) -> None:
    killed = epochal(*command, cwd=cwd, env={**plugin, "FAULT_KILL_AT": moment})
    assert killed.returncode == -9, f"{moment}: {killed.stderr}"  # SIGKILL, where asked
    assert "faultkill: SIGKILL" in killed.stderr, moment


def check_finished(run: Path, backend: str, reference: dict, resumed, from_epoch: int) -> None:
    assert resumed.returncode == 0, resumed.stderr
    assert f"epoch {from_epoch}/{EPOCHS}" in resumed.stdout
    assert f"epoch {from_epoch - 1}/{EPOCHS}" not in resumed.stdout
    assert "warning" not in resumed.stderr.lower(), resumed.stderr
    state = load(backend, run / f"checkpoint_last{SUFFIX[backend]}")
    assert state["epoch"] == EPOCHS
    weights = arrays(backend, state)
    assert weights.keys() == reference.keys()
    different = [key for key in reference if not np.array_equal(weights[key], reference[key])]
    assert different == [], f"not bitwise equal to the uninterrupted run: {different}"
    assert epochs_in(run) == [str(epoch) for epoch in range(1, EPOCHS + 1)]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "done" and summary["epochs_run"] == EPOCHS
    assert temp_files(run) == []  # the partial checkpoint of the killed writer is gone
    umask = os.umask(0o022)
    os.umask(umask)
    for name in (f"checkpoint_last{SUFFIX[backend]}", "metrics.csv", "summary.json"):
        mode = (run / name).stat().st_mode & 0o777
        assert mode == 0o666 & ~umask, f"{name} has mode {oct(mode)}, not mkstemp's 0o600"


def test_torch_resume_after_kill_9_at_five_moments(tmp_path, fake_distribution):
    """One run killed five times, each resume killed at the next moment, then finished: every
    kill leaves a run that resumes, and the end is the uninterrupted run, bitwise."""
    pytest.importorskip("torch")
    (tmp_path / "reference").mkdir()
    reference = start_reference("torch", tmp_path / "reference")
    plugin = fake_distribution(tmp_path, "faultkill", PLUGIN.read_text())
    run, last = tmp_path / "run", tmp_path / "run" / "checkpoint_last.pt"
    train = ["train", *JOB, "--epochs", str(EPOCHS), "--run-dir", "run"]
    resume = ["resume", "run", "--epochs", str(EPOCHS)]
    try:
        kill_at("batch:2:10", train, tmp_path, plugin)  # mid-epoch
        assert load("torch", last)["epoch"] == 1 and temp_files(run) == []
        assert epochs_in(run) == ["1"]

        kill_at("val:2", resume, tmp_path, plugin)  # mid-validation
        assert load("torch", last)["epoch"] == 1 and temp_files(run) == []

        kill_at("ckpt:2:checkpoint_last:1000", resume, tmp_path, plugin)
        assert load("torch", last)["epoch"] == 1  # the previous checkpoint is intact
        (partial,) = temp_files(run)  # killed mid-write: 1000 bytes of the new one
        assert partial.startswith(".checkpoint_last.pt.") and (run / partial).stat().st_size
        assert epochs_in(run) == ["1", "2"]  # metrics.csv is written before the checkpoints

        kill_at("epoch_end:2", resume, tmp_path, plugin)  # before the checkpoints
        # the resume removed the dead writer's partial file before it trained
        assert load("torch", last)["epoch"] == 1 and temp_files(run) == []
        assert epochs_in(run) == ["1", "2"]  # the row of epoch 2 replaced, not repeated

        kill_at("epoch_begin:3", resume, tmp_path, plugin)
        assert load("torch", last)["epoch"] == 2 and temp_files(run) == []

        resumed = epochal(*resume, cwd=tmp_path)
        weights = reference_weights(reference, "torch", tmp_path / "reference")
        check_finished(run, "torch", weights, resumed, from_epoch=3)
    finally:
        if reference.poll() is None:
            reference.kill()
            reference.communicate()


def test_tf_resume_after_kill_9_mid_checkpoint_write(tmp_path, fake_distribution):
    pytest.importorskip("tensorflow")
    (tmp_path / "reference").mkdir()
    reference = start_reference("tf", tmp_path / "reference")
    plugin = fake_distribution(tmp_path, "faultkill", PLUGIN.read_text())
    run, last = tmp_path / "run", tmp_path / "run" / "checkpoint_last.tf.npz"
    try:
        train = ["train", *JOB, "--backend", "tf", "--epochs", str(EPOCHS), "--run-dir", "run"]
        kill_at("ckpt:2:checkpoint_last:1000", train, tmp_path, plugin)
        assert load("tf", last)["epoch"] == 1
        (partial,) = temp_files(run)
        assert partial.startswith(".checkpoint_last.tf.npz.")

        resumed = epochal("resume", "run", "--epochs", str(EPOCHS), cwd=tmp_path)
        weights = reference_weights(reference, "tf", tmp_path / "reference")
        check_finished(run, "tf", weights, resumed, from_epoch=2)
    finally:
        if reference.poll() is None:
            reference.kill()
            reference.communicate()
