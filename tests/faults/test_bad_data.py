"""Bad data at ``epochal train``: a clear error before or at the first batch, never a traceback.

The bad data sets come from a real plugin distribution (the root conftest's
``fake_distribution``) whose ``epochal_register_datasets`` hook registers them; ``epochal
train --set data.dataset=<name>`` runs as a user runs it, in a subprocess.

Covered elsewhere, not repeated here: ``--epochs 0`` and ``--backend jax``
(``tests/test_cli_jobs.py::test_usage_and_config_errors_exit_2_with_one_message``),
``experiment.val_score_mode = "up"``
(``tests/test_experiment.py::test_config_errors_name_the_key``),
a backend whose framework is not installed (``tests/test_cli_jobs.py::
test_a_backend_whose_framework_is_missing_says_what_to_install``), ``trainer.train(0, ...)`` and
an unknown ``val_score_mode`` on the numpy trainer (``tests/test_trainer_loop.py``).
"""

from __future__ import annotations

import json
import subprocess

import pytest

from epochal.testing import run_epochal

torch = pytest.importorskip("torch")

PLUGIN = """
import numpy as np

from epochal import hookimpl
from epochal.data import ArrayDataset
from epochal.data.digits import load_digits


def _digits():
    digits = load_digits()
    data = np.stack([digits[i]["data"] for i in range(len(digits))]).astype(np.float32)
    label = np.asarray([digits[i]["label"] for i in range(len(digits))], dtype=np.int64)
    return data, label


def float_labels():
    data, label = _digits()
    return ArrayDataset(data=data, label=label.astype(np.float32))


def onehot_labels():
    data, label = _digits()
    return ArrayDataset(data=data, label=np.eye(10, dtype=np.float32)[label])


def onehot_int_labels():
    data, label = _digits()
    return ArrayDataset(data=data, label=np.eye(10, dtype=np.int64)[label])


def out_of_range():
    data, label = _digits()
    return ArrayDataset(data=data, label=np.where(label == 9, 12, label))


def empty():
    return ArrayDataset(data=np.zeros((0, 64), np.float32), label=np.zeros(0, np.int64))


@hookimpl
def epochal_register_datasets(register):
    register("floatlabels", float_labels)
    register("onehot", onehot_labels)
    register("onehot_int", onehot_int_labels)
    register("outofrange", out_of_range)
    register("empty", empty)
"""

QUICK = ["--epochs", "1", "--set", "callbacks.tensorboard=false",
         "--set", "callbacks.learning_curves=false"]  # fmt: skip


@pytest.fixture
def train(tmp_path, fake_distribution):
    """``train(*args)`` -> ``epochal train ... --run-dir run`` with the bad data sets."""
    env = fake_distribution(tmp_path, "baddata", PLUGIN)

    def run(*args: str, epochs: bool = True) -> subprocess.CompletedProcess:
        quick = QUICK if epochs else QUICK[2:]
        return run_epochal(
            "train", *quick, *args, "--run-dir", "run", cwd=tmp_path, env=env, timeout=180
        )

    return run


def one_error_line(result: subprocess.CompletedProcess, code: int) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == code, output
    assert "Traceback" not in output
    label = "epochal: error: " if code == 2 else "epochal: training failed: "
    lines = [line for line in result.stderr.splitlines() if line.startswith("epochal: ")]
    assert len(lines) == 1 and lines[0].startswith(label), result.stderr
    return lines[0]


def failed_at_the_first_batch(run_dir) -> None:
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and not summary["epochs_run"], summary
    assert not (run_dir / "checkpoint_last.pt").exists()


# -- found before training: exit 2, no run folder ----------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "data.dataset=empty"], "data.dataset 'empty' is empty"),
        (
            ["--set", "data.batch_size=100000"],
            "data.batch_size = 100000 is larger than the 1437 training samples",
        ),
        (
            ["--set", "data.dataset=onehot"],  # a stratified split needs one class per sample
            "data.val_split = 0.2: 'label' holds arrays of shape (10,) per sample",
        ),
    ],
)
def test_data_problems_found_before_training_exit_2(train, tmp_path, args, message):
    line = one_error_line(train(*args), 2)
    assert message in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("epochs", ["0", "-3"])
def test_num_epochs_below_1_in_the_config_exits_2(train, tmp_path, epochs):
    line = one_error_line(train("--set", f"training.num_epochs={epochs}", epochs=False), 2)
    assert f"training.num_epochs must be at least 1, got {epochs}" in line
    assert not (tmp_path / "run").exists()


# -- found at the first batch (one forward pass, once per run): exit 2, the problem named -----


def test_labels_out_of_range_fail_at_the_first_batch(train, tmp_path):
    line = one_error_line(train("--set", "data.dataset=outofrange"), 2)
    assert "label 12 is out of range for the network's 10 outputs (classes 0 to 9)" in line
    failed_at_the_first_batch(tmp_path / "run")


def test_float_labels_fail_at_the_first_batch(train, tmp_path):
    line = one_error_line(train("--set", "data.dataset=floatlabels"), 2)
    assert "needs integer class labels, but batch['label'] is float32" in line, line
    assert "label.astype(np.int64)" in line
    failed_at_the_first_batch(tmp_path / "run")


def test_integer_onehot_labels_fail_at_the_first_batch(train, tmp_path):
    result = train("--set", "data.dataset=onehot_int", "--set", "data.stratify=false")
    line = one_error_line(result, 2)
    assert "has shape (32, 10), one-hot it seems; use label.argmax(axis=1)" in line, line
    failed_at_the_first_batch(tmp_path / "run")


def test_float_onehot_labels_are_class_probabilities_and_train(train, tmp_path):
    """CrossEntropyLoss takes class-probability rows; accuracy compares their highest entry."""
    result = train("--set", "data.dataset=onehot", "--set", "data.stratify=false")
    assert result.returncode == 0, result.stderr
    assert "val_accuracy" in result.stdout


# -- the Python API ----------------------------------------------------------------------------


def test_torch_trainer_refuses_bad_epochs_and_modes(managers):
    from epochal_torch.models import MLP
    from epochal_torch.trainer import PyTorchNetworkTrainer

    trainer = PyTorchNetworkTrainer(
        MLP(64, [8], 10), None, {"CE": torch.nn.CrossEntropyLoss()}, torch.optim.Adam
    )
    train_data, valid = managers()
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="num_epochs must be an integer >= 1"):
            trainer.train(bad, train_data, valid)
    with pytest.raises(ValueError, match="val_score_mode must be one of"):
        trainer.train(1, train_data, valid, "CE", "up")
    assert trainer.start_epoch == 1  # nothing was trained


def test_experiment_run_refuses_negative_epochs(tmp_path):
    from epochal.runs.experiment import Experiment

    experiment = Experiment.from_config(None, ["callbacks={}"])
    for bad in (0, -1):
        with pytest.raises(ValueError, match=f"num_epochs must be an integer >= 1, got {bad}"):
            experiment.run(run_dir=tmp_path / "run", num_epochs=bad)
    assert not (tmp_path / "run").exists()
