"""Issue 9, PyTorch: torchrun + DistributedDataParallel on the CPU (gloo), 2 processes.

Real processes throughout: ``torchrun`` (``python -m torch.distributed.run``), ``epochal
train --nproc 2`` (torch's launcher started by the command), and ranks started by hand with
torchrun's variables where the test must kill one of them.
"""

from __future__ import annotations

import csv
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from epochal.testing import epochal_command, kill_peer_when, run_epochal, user_env

torch = pytest.importorskip("torch")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

JOB = Path(__file__).with_name("ddp_job.py")
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
QUIET = ["--seed", "3", "--set", "callbacks.tensorboard=false"]
QUIET += ["--set", "callbacks.learning_curves=false"]
ENV = {"OMP_NUM_THREADS": "1"}


def torchrun(*args: str, cwd: Path, nproc: int = 2) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    return subprocess.run(
        [*command, f"--nproc-per-node={nproc}", *args],
        cwd=cwd,
        env=user_env(ENV),
        capture_output=True,
        text=True,
        timeout=240,
    )


def alone(*args: str, cwd: Path) -> None:
    """``python ARGS`` in one process (no launcher), which must succeed."""
    result = subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=user_env(ENV),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr


def epochal(*args: str, cwd: Path, env: dict[str, str] | None = None):
    return run_epochal(*args, cwd=cwd, env={**ENV, **(env or {})}, timeout=240)


def rows(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def checkpoint(path: Path) -> dict[str, np.ndarray]:
    """Weights and optimizer state of a torch checkpoint, as named arrays."""
    from epochal_torch.io import load_checkpoint

    state = load_checkpoint(path)
    out = {f"model/{k}": v.numpy() for k, v in state["model"].items()}
    for name, optimizer in state["optimizers"].items():
        for param, values in optimizer["state"].items():
            for key, value in values.items():
                out[f"optim/{name}/{param}/{key}"] = np.asarray(value)
    return out


def assert_clean(stderr: str) -> None:
    """No traceback, and none of torch's launcher log lines (``W1126 12:00:00 ...``)."""
    assert "Traceback" not in stderr, stderr
    assert not any(line[:1] in "WEI" and line[1:5].isdigit() for line in stderr.splitlines())


def test_two_processes_train_as_one_with_the_same_global_batch(tmp_path):
    """2 ranks x 32 samples a step == 1 process x 64: the same weights (to float rounding)
    and the same epoch metrics, train and validation, averaged over the ranks."""
    alone(str(JOB), "one.npz", "64", cwd=tmp_path)
    double = torchrun(str(JOB), "two.npz", "32", cwd=tmp_path)
    assert double.returncode == 0, double.stderr
    one, two = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
    assert (int(one["world"]), int(two["world"])) == (1, 2)
    weights = [key for key in one.files if key not in ("world", "history")]
    assert weights
    for key in weights:
        np.testing.assert_allclose(two[key], one[key], rtol=0, atol=1e-5, err_msg=key)
    np.testing.assert_allclose(two["history"], one["history"], rtol=0, atol=1e-5)
    assert one["history"][-1, 3] > 0.8  # it learned: validation accuracy


def test_mixed_precision_under_ddp(tmp_path):
    """bfloat16 autocast on the CPU in 2 processes trains like it does in one."""
    alone(str(JOB), "one.npz", "64", "amp=1", cwd=tmp_path)
    double = torchrun(str(JOB), "two.npz", "32", "amp=1", cwd=tmp_path)
    assert double.returncode == 0, double.stderr
    one, two = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
    assert two["history"][-1, 3] > 0.8
    np.testing.assert_allclose(two["history"], one["history"], rtol=0, atol=2e-2)


def test_cli_trains_in_two_processes_and_resumes_with_any_number(tmp_path):
    """The digits example in 2 processes from the CLI; resumed by 1, then by 2 processes."""
    example = str(EXAMPLES / "digits_torch.toml")
    args = ("train", example, *QUIET, "--nproc", "2", "--epochs", "3", "--run-dir", "run")
    result = epochal(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert_clean(result.stderr)
    out = result.stdout
    assert (
        out.count("digits_torch.toml with the torch backend in 2 processes") == 1
    )  # rank 0 talks, once
    assert out.count("best val_accuracy") == 1 and "--nproc 2" in out
    assert [row["epoch"] for row in rows(tmp_path / "run")] == ["1", "2", "3"]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert (summary["status"], summary["processes"]) == ("done", 2)

    alone = epochal("resume", "run", "--epochs", "4", cwd=tmp_path)  # 1 process
    assert alone.returncode == 0, alone.stderr
    again = epochal("resume", "run", "--epochs", "5", "--nproc", "2", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert [row["epoch"] for row in rows(tmp_path / "run")] == ["1", "2", "3", "4", "5"]
    predicted = epochal("predict", "run", "--data", "digits", "--out", "p.csv", cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr
    accuracy = float(predicted.stdout.split("accuracy")[1].split()[0])
    assert accuracy > 0.9


def test_early_stopping_stops_every_rank_together(tmp_path):
    """Every rank sees the same (averaged) validation score, so all stop at the same epoch;
    one that went on would hang its next all-reduce until the timeout."""
    stop = ["--set", "callbacks.early_stopping={patience=1, min_delta=1.0}"]
    args = ("train", *QUIET, *stop, "--nproc", "2", "--epochs", "50", "--run-dir", "run")
    result = epochal(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [row["epoch"] for row in rows(tmp_path / "run")] == ["1", "2"]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "stopped early"


def test_sigterm_stops_all_ranks_and_the_resumed_run_ends_bitwise(tmp_path):
    args = ["train", *QUIET, "--nproc", "2", "--run-dir"]
    process = subprocess.Popen(
        epochal_command(*args, "stopped", "--epochs", "200"),
        cwd=tmp_path,
        env=user_env(ENV),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if (tmp_path / "stopped" / "metrics.csv").exists() and len(
                rows(tmp_path / "stopped")
            ) >= 2:
                break
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 143, stderr
    assert "continue it with: epochal resume stopped --nproc 2" in stderr
    assert stderr.count("stopped by SIGTERM") == 1
    from epochal_torch.io import load_checkpoint

    interrupted = load_checkpoint(tmp_path / "stopped" / "checkpoint_last.pt")["interrupted"]
    assert interrupted["world_size"] == 2
    epochs = str(interrupted["epoch"] + 1)
    resumed = epochal("resume", "stopped", "--epochs", epochs, "--nproc", "2", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    straight = epochal(*args, "straight", "--epochs", epochs, cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr
    a = checkpoint(tmp_path / "stopped" / "checkpoint_last.pt")
    b = checkpoint(tmp_path / "straight" / "checkpoint_last.pt")
    assert a.keys() == b.keys()
    for key in a:
        assert np.array_equal(a[key], b[key]), key
    assert len(rows(tmp_path / "stopped")) == int(epochs)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_killed_rank_ends_the_other_with_a_clear_error(tmp_path):
    """Ranks started by hand (no torchrun agent to clean up): kill -9 one, and the other
    must say so and exit, not wait for the collective timeout."""
    common = {
        **ENV,
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(_free_port()),
        "WORLD_SIZE": "2",
    }
    ranks = [
        subprocess.Popen(
            epochal_command("train", *QUIET, "--epochs", "500", "--run-dir", "run"),
            cwd=tmp_path,
            env=user_env({**common, "RANK": str(rank), "LOCAL_RANK": str(rank)}),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in (0, 1)
    ]
    try:
        stderr, took = kill_peer_when(tmp_path / "run" / "checkpoint_last.pt", *ranks)
    finally:
        for process in ranks:
            if process.poll() is None:
                process.kill()
            process.communicate()
    assert ranks[0].returncode == 1, stderr
    assert took < 60
    assert "epochal[rank 0]: training failed: rank 0 lost contact with another process" in stderr
    assert "Traceback" not in stderr
    resumed = epochal("resume", "run", "--epochs", "2", cwd=tmp_path)  # what was saved loads
    assert resumed.returncode == 0, resumed.stderr


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (
            ["train", "--epochs", "1"],
            {"RANK": "0", "WORLD_SIZE": "2"},
            "MASTER_ADDR and MASTER_PORT not set",
        ),
        (["train", "--epochs", "1"], {"RANK": "1"}, "WORLD_SIZE is not set although RANK"),
        (
            ["train", "--nproc", "2", "--set", "training.dist_backend='nccl'"],
            {},
            "dist_backend='nccl' needs CUDA",
        ),
        (
            ["train", "--nproc", "2", "--set", "training.dist_backend='mpi'"],
            {},
            "dist_backend must be one of",
        ),
    ],
)
def test_a_bad_launch_exits_2_and_says_how_to_launch(tmp_path, args, env, message):
    result = epochal(*args, "--run-dir", "run", cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert_clean(result.stderr)


def test_the_experiment_api_script_runs_under_torchrun(tmp_path):
    """examples/train_api.py (Experiment.run, then test) unchanged under torchrun: one run
    folder, named by rank 0, and one report."""
    script = str(EXAMPLES / "train_api.py")
    result = torchrun(script, "--epochs", "2", "--save-path", "runs", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("test accuracy") == 1
    (run,) = (tmp_path / "runs" / "api-example").iterdir()
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["status"], summary["processes"], summary["epochs_run"]) == ("done", 2, 2)


def test_kfold_in_two_processes_writes_one_root_and_one_table(tmp_path):
    """No --run-dir: rank 0 names the root folder (a time stamp) and the other rank uses it."""
    args = ("kfold", *QUIET, "--folds", "2", "--epochs", "1", "--nproc", "2")
    result = epochal(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("mean") == 1  # rank 0 prints the table
    (root,) = (tmp_path / "runs").glob("*-kfold/*")
    folds = json.loads((root / "kfold.json").read_text())["folds"]
    assert [fold["fold"] for fold in folds] == [0, 1]
    assert sorted(p.name for p in root.iterdir()) == ["fold_0", "fold_1", "kfold.json"]
    for fold in ("fold_0", "fold_1"):
        summary = json.loads((root / fold / "summary.json").read_text())
        assert summary["processes"] == 2
