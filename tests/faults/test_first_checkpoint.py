"""Issue 13, item 4: ``kill -9`` while a run writes its very first checkpoint is no dead end.

Before, ``epochal resume RUN`` said "start it again with epochal train" and ``epochal train
--run-dir RUN`` said "not empty, use epochal resume": a circle. Now a run folder with
``config.toml`` but no ``checkpoint_last`` resumes from epoch 1 in the same folder (saying so),
``train --run-dir`` accepts a folder that holds no checkpoint at all, and sends a folder with
checkpoints to ``resume``, which takes it. Either way the run ends with the weights of an
uninterrupted run (bitwise, on the CPU).

The kills are real: the ``faultkill`` plugin (``_faultkill_source.py``) SIGKILLs the process
after 1000 bytes of the first ``checkpoint_best`` or ``checkpoint_last`` reached its
temporary file.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from epochal.runs.folder import run_lock
from epochal.testing import epochal_command, epochal_in_process, user_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

pytest.importorskip("torch")

EPOCHS = 2
JOB = ["--seed", "3", "--epochs", str(EPOCHS), "--set", "callbacks.tensorboard=false",
       "--set", "callbacks.learning_curves=false"]  # fmt: skip
PLUGIN = Path(__file__).with_name("_faultkill_source.py")


def start(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """``epochal ARGS`` in the background: the runs of one step go side by side."""
    return subprocess.Popen(
        epochal_command(*args),
        cwd=cwd,
        env=user_env(env, drop=("FAULT_",)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen) -> tuple[int, str, str]:
    """Wait for ``process``: (exit code, stdout, stderr)."""
    try:
        stdout, stderr = process.communicate(timeout=240)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return process.returncode, stdout, stderr


def weights(path: Path) -> dict[str, np.ndarray]:
    from epochal_torch.io import load_checkpoint

    state = load_checkpoint(path)
    assert state["epoch"] == EPOCHS
    out = {f"model/{k}": v.numpy() for k, v in state["model"].items()}
    for name, optimizer in state["optimizers"].items():
        for param, values in optimizer["state"].items():
            for key, value in values.items():
                out[f"optimizers/{name}/{param}/{key}"] = np.asarray(value)
    return out


def kill_in_first_write(stem: str, run: Path, plugin: dict[str, str]) -> subprocess.Popen:
    """Train into ``run``, to die 1000 bytes into the first ``stem`` checkpoint."""
    env = {**plugin, "FAULT_KILL_AT": f"ckpt:1:{stem}:1000"}
    return start("train", *JOB, "--run-dir", run.name, cwd=run.parent, env=env)


def check_killed(process: subprocess.Popen, stem: str, run: Path) -> None:
    """Killed where asked: no checkpoint_last, summary "running", the partial temporary file
    of the first ``stem`` checkpoint."""
    code, _, stderr = finish(process)
    assert code == -9, stderr
    assert "faultkill: SIGKILL after 1000 bytes" in stderr
    assert not (run / "checkpoint_last.pt").exists()
    assert json.loads((run / "summary.json").read_text())["status"] == "running"
    (partial,) = [name for name in os.listdir(run) if name.endswith(".tmp")]
    assert partial.startswith(f".{stem}.pt.") and (run / partial).stat().st_size >= 1000


def check_finished(run: Path, reference: dict[str, np.ndarray]) -> None:
    finished = weights(run / "checkpoint_last.pt")
    assert finished.keys() == reference.keys()
    different = [key for key in reference if not np.array_equal(finished[key], reference[key])]
    assert different == [], f"not bitwise equal to the uninterrupted run: {different}"
    assert not [name for name in os.listdir(run) if name.endswith(".tmp")]
    with open(run / "metrics.csv", newline="") as handle:
        assert [row["epoch"] for row in csv.DictReader(handle)] == ["1", "2"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "done" and summary["epochs_run"] == EPOCHS


def test_a_kill_in_the_first_checkpoint_write_is_no_dead_end(
    tmp_path, fake_distribution, monkeypatch
):
    """Killed in its first checkpoint_last (checkpoint_best of epoch 1 is complete): train
    sends it to resume, which trains it from epoch 1. Killed in its first checkpoint of all
    (checkpoint_best): the folder holds none, and train takes it. Both end as the reference."""
    (tmp_path / "reference").mkdir()
    plugin = fake_distribution(tmp_path, "faultkill", PLUGIN.read_text())
    last, best = tmp_path / "last", tmp_path / "best"
    running = [start("train", *JOB, "--run-dir", "run", cwd=tmp_path / "reference")]
    running += [kill_in_first_write("checkpoint_last", last, plugin)]
    running += [kill_in_first_write("checkpoint_best", best, plugin)]
    monkeypatch.chdir(tmp_path)
    try:
        check_killed(running[1], "checkpoint_last", last)
        check_killed(running[2], "checkpoint_best", best)
        assert (last / "checkpoint_best.pt").exists()
        assert not [name for name in os.listdir(best) if name.startswith("checkpoint_")]

        code, _, stderr = epochal_in_process("train", *JOB, "--run-dir", "last")
        assert code == 2 and "continue it with `epochal resume last`" in stderr, stderr
        with run_lock(str(best)):  # a live run in its first epoch: refused, no restart said
            code, stdout, stderr = epochal_in_process("resume", "best")
        assert code == 2 and "best is in use by epochal process" in stderr, stderr
        assert "from epoch 1" not in stdout

        running += [start("resume", "last", cwd=tmp_path)]  # resume takes what train sent
        running += [start("train", *JOB, "--run-dir", "best", cwd=tmp_path)]  # train takes it
        code, stdout, stderr = finish(running[3])
        assert code == 0, stderr
        lines = stdout.splitlines()
        assert lines[0] == (
            "epochal: last has no checkpoint_last (the run stopped before its first epoch "
            "ended): training it from epoch 1 in the same folder"
        )
        assert [line.split()[1] for line in lines if line.startswith("epoch ")] == ["1/2", "2/2"]
        assert "warning" not in stderr.lower(), stderr
        summary = json.loads((last / "summary.json").read_text())
        assert summary["resumed_at_epoch"] == 1
        assert summary["previous_run"].startswith("ended without a word (pid ")
        code, stdout, stderr = finish(running[4])
        assert code == 0, stderr
        assert stdout.splitlines()[0] == (
            "epochal: best holds a run that saved no checkpoint (it stopped in its first "
            "epoch): training in it from epoch 1"
        )

        code, _, stderr = finish(running[0])
        assert code == 0, stderr
        expected = weights(tmp_path / "reference" / "run" / "checkpoint_last.pt")
        check_finished(last, expected)
        check_finished(best, expected)
    finally:
        for process in running:
            if process.poll() is None:
                process.kill()
                process.communicate()


def test_train_run_dir_sends_nobody_in_a_circle(tmp_path, monkeypatch):
    """What ``train --run-dir`` says of folders it will not take; only a folder ``resume``
    continues is sent there (in this process: refused before any data or model)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine\n")
    (tmp_path / "orphans").mkdir()
    (tmp_path / "orphans" / "checkpoint_last.pt").write_bytes(b"x")
    for folder, message in [
        ("foreign", "is not empty and is not an epochal run folder (no config.toml)"),
        ("orphans", "holds checkpoints but no config.toml; choose a new folder"),
    ]:
        code, _, stderr = epochal_in_process("train", *JOB, "--run-dir", folder)
        assert code == 2 and message in stderr, stderr
        assert "resume" not in stderr  # resume would refuse these: not an epochal run folder
        resume_code, _, resume_err = epochal_in_process("resume", folder)
        assert resume_code == 2 and "has no config.toml" in resume_err
    assert os.listdir(tmp_path / "foreign") == ["notes.txt"]
