"""tf.distribute: ``strategy="mirrored"`` (two logical CPU devices) and ``"multi_worker"``
(two worker processes on loopback ports) train as one device does with the same global batches,
and what is refused is refused clearly.

The training runs live in fresh processes (``distributed_job.py``, or ``epochal`` itself):
TensorFlow's devices and collective ops are fixed at its start. Tolerance: the weights after 3
epochs of Adam (21 steps, a last uneven batch) differ from one device's by about 1e-7 (float32
sums in another order); asserted at 1e-5.
"""

from __future__ import annotations

import csv
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from epochal.errors import LaunchError
from epochal.testing import epochal_command, kill_peer_when, run_epochal, user_env
from epochal_tf.trainer import TfNetworkTrainer

keras = pytest.importorskip("keras")

JOB = str(Path(__file__).with_name("distributed_job.py"))
EXAMPLE = str(Path(__file__).resolve().parents[3] / "examples" / "digits_tf.toml")
TOLERANCE = 1e-5
MULTI_WORKER = "training.strategy='multi_worker'"
QUIET = ("--set", "callbacks.progress_bar=false", "--set", "callbacks.tensorboard=false")


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def _tf_configs(count: int = 2) -> list[str]:
    workers = [f"127.0.0.1:{port}" for port in _free_ports(count)]
    return [
        json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
        for index in range(count)
    ]


def _workers(command: list[str], cwd: Path, **popen: object) -> list[subprocess.Popen]:
    return [
        subprocess.Popen(command, cwd=cwd, env=user_env({"TF_CONFIG": config}), **popen)
        for config in _tf_configs()
    ]


def _finish(processes: list[subprocess.Popen], timeout: float = 180) -> list[str]:
    try:
        return [process.communicate(timeout=timeout)[1] or "" for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.communicate()


# -- bad input (in this process: refused before any strategy exists) -----------------------


def test_an_unknown_strategy_names_the_allowed_ones(tf_trainer):
    with pytest.raises(ValueError, match=r"strategy must be one of \('mirrored', 'multi_worker'\)"):
        tf_trainer(strategy="horovod")
    with pytest.raises(ValueError, match="strategy must be one of"):
        TfNetworkTrainer.distributed_collective(strategy="mirored")


def test_multi_worker_without_tf_config_says_what_to_set(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(LaunchError, match=r"needs TF_CONFIG.*\"cluster\": \{\"worker\""):
        TfNetworkTrainer.distributed_collective(strategy="multi_worker")
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["a:1"]}, "task": {"index": 3}}')
    with pytest.raises(LaunchError, match="TF_CONFIG is not a cluster description"):
        TfNetworkTrainer.distributed_collective(strategy="multi_worker")


def test_float16_loss_scaling_and_skip_batch_are_refused_under_a_strategy(tf_trainer):
    float16 = {"mixed_precision": True, "mixed_precision_kwargs": {"dtype": "float16"}}
    with pytest.raises(ValueError, match=r"float16 mixed precision is not supported.*bfloat16"):
        tf_trainer(strategy="mirrored", **float16)
    with pytest.raises(ValueError, match="float16 mixed precision is not supported"):
        TfNetworkTrainer.distributed_collective(strategy="multi_worker", **float16)
    with pytest.raises(ValueError, match="on_nonfinite='skip_batch' is not supported"):
        tf_trainer(strategy="mirrored", on_nonfinite="skip_batch")


@pytest.mark.slow
def test_an_unknown_strategy_exits_2_from_the_cli(tmp_path):
    result = run_epochal(
        "train", EXAMPLE, "--epochs", "1", "--set", "training.strategy='ring'", cwd=tmp_path
    )
    assert result.returncode == 2, result.stderr
    assert "strategy must be one of ('mirrored', 'multi_worker')" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()  # refused before the run folder was made


# -- the same training as on one device ---------------------------------------------------


@pytest.mark.slow
def test_mirrored_on_two_cpu_devices_matches_one_device(tmp_path):
    out = tmp_path / "mirrored.json"
    done = subprocess.run(
        [sys.executable, JOB, "mirrored", str(out)],
        env=user_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["replicas"] == 2
    assert result["moved_under_scope"]  # the network built outside the scope, now mirrored
    assert result["weights_kept_when_moved"] == 0.0
    assert result["max_weight_difference"] < TOLERANCE
    for single, mirrored in zip(*result["metrics"], strict=True):
        assert mirrored == pytest.approx(single, abs=TOLERANCE)
    assert result["val"][1] == pytest.approx(result["val"][0], abs=TOLERANCE)
    assert result["one_sample_batch_loss"] > 0  # one replica got no sample: no NaN
    assert result["traces"] == 2  # one train step (for every batch size), one eval step


@pytest.mark.slow
def test_two_workers_match_one_device_and_share_the_collectives(tmp_path):
    outs = [tmp_path / f"worker{rank}.json" for rank in (0, 1)]
    workers = [
        subprocess.Popen(
            [sys.executable, JOB, "worker", str(out)],
            env=user_env({"TF_CONFIG": config}),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for out, config in zip(outs, _tf_configs(), strict=True)
    ]
    errors = _finish(workers)
    assert [worker.returncode for worker in workers] == [0, 0], errors
    first, second = (json.loads(out.read_text()) for out in outs)
    assert (first["rank"], second["rank"], first["world_size"]) == (0, 1, 2)
    assert first["same_collective"]  # the trainer uses the strategy the experiment joined
    assert first["max_weight_difference"] < TOLERANCE
    for result in (first, second):
        assert result["mean"] == {"a": pytest.approx(1.75)}  # (1*1 + 2*3) / (1 + 3)
        assert result["any"] == [True, False]
        assert result["broadcast"] == "run folder of rank 0"
        assert result["traces"] == 1
    # the workers' epoch means, weighted by their samples, are the global batch's means
    n0, n1 = first["samples"], second["samples"]
    assert (n0, n1) == (102, 101)
    for a, b, single in zip(
        first["metrics"], second["metrics"], first["single_metrics"], strict=True
    ):
        for key, value in single.items():
            assert (a[key] * n0 + b[key] * n1) / (n0 + n1) == pytest.approx(value, abs=TOLERANCE)


# -- the CLI: two workers, one run folder; a killed worker ---------------------------------


@pytest.mark.slow
def test_two_workers_train_the_digits_example_from_the_cli(tmp_path):
    command = epochal_command("train", EXAMPLE, "--epochs", "3", "--set", MULTI_WORKER, *QUIET)
    workers = _workers(command, tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        outputs = [worker.communicate(timeout=180) for worker in workers]
    finally:
        _finish(workers, timeout=10)
    assert [worker.returncode for worker in workers] == [0, 0], [err for _, err in outputs]
    (out0, _), (out1, _) = outputs
    assert out0.count("best val_accuracy") == 1 and "best val_accuracy" not in out1  # worker 0
    assert "(on every worker, each with its TF_CONFIG)" in out0 and "--nproc" not in out0
    runs = list((tmp_path / "runs" / "digits-tf").iterdir())
    assert len(runs) == 1  # worker 0 named it, worker 1 trained into the same
    run = runs[0]
    for name in ("config.toml", "summary.json", "checkpoint_best.tf.npz", "checkpoint_last.tf.npz"):
        assert (run / name).is_file(), name
    summary = json.loads((run / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["pid"] == workers[0].pid  # worker 0 wrote it
    assert summary["status"] == "done"
    with open(run / "metrics.csv") as file:
        rows = list(csv.DictReader(file))
    assert [row["epoch"] for row in rows] == ["1", "2", "3"]
    assert float(rows[-1]["val_accuracy"]) > 0.8
    assert 'strategy = "multi_worker"' in (run / "config.toml").read_text()
    # predicting needs no workers: the trainer is built for one process
    predicted = run_epochal("predict", str(run), "--data", "digits", "--out", "p.csv", cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr


@pytest.mark.slow
def test_a_killed_worker_ends_the_other_with_a_clear_error(tmp_path):
    command = epochal_command(
        "train", EXAMPLE, "--epochs", "500", "--run-dir", "run", "--set", MULTI_WORKER, *QUIET
    )
    workers = _workers(command, tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        stderr, took = kill_peer_when(tmp_path / "run" / "checkpoint_last.tf.npz", *workers)
    finally:
        _finish(workers, timeout=10)
    stderr = stderr.decode()
    assert workers[0].returncode == 1, stderr
    assert took < 60
    assert "epochal[worker 0]: training failed: worker 0 lost contact with another" in stderr
    assert "Traceback" not in stderr
