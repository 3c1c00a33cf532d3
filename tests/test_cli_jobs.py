"""``epochal train | resume | predict | kfold`` as a user runs them: real subprocesses."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from epochal.testing import run_epochal

pytest.importorskip("torch")

#: Small and fast: 2 epochs, no TensorBoard or PNG (the API tests cover those files).
QUICK = ["--epochs", "2", "--set", "callbacks.tensorboard=false",
         "--set", "callbacks.learning_curves=false"]  # fmt: skip


epochal = run_epochal  # `epochal ARGS` as a user runs it


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_default_job_learns_digits(tmp_path):
    """The README's main command, unchanged: `epochal train` reaches >= 0.95 accuracy."""
    result = epochal("train", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("epochal: training the default job (MLP on digits)")
    assert [line.split()[1] for line in lines if line.startswith("epoch ")] == [
        f"{epoch}/15" for epoch in range(1, 16)
    ]
    best = next(line for line in lines if line.startswith("best val_accuracy"))
    assert float(best.split()[2]) >= 0.95, best
    run_dir = next(line for line in lines if line.startswith("run folder: ")).split(": ")[1]
    assert run_dir.startswith(os.path.join("runs", "digits-mlp"))
    assert any(line.strip().startswith(f"epochal predict {run_dir}") for line in lines)
    files = os.listdir(tmp_path / run_dir)
    assert {"config.toml", "summary.json", "metrics.csv", "curves.png", "tensorboard"} <= set(files)
    assert "Traceback" not in result.stderr


def test_train_resume_predict(tmp_path):
    trained = epochal("train", *QUICK, "--run-dir", "run", "--seed", "3", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    assert "run folder: run" in trained.stdout
    assert "epochal resume run --epochs 4" in trained.stdout
    assert [row["epoch"] for row in _rows(tmp_path / "run" / "metrics.csv")] == ["1", "2"]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "done" and summary["epochs_run"] == 2

    again = epochal("train", *QUICK, "--run-dir", "run", cwd=tmp_path)
    assert again.returncode == 2 and "epochal resume run" in again.stderr  # not overwritten

    resumed = epochal("resume", "run", "--epochs", "4", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "epoch 3/4" in resumed.stdout and "epoch 1/4" not in resumed.stdout
    assert [row["epoch"] for row in _rows(tmp_path / "run" / "metrics.csv")] == list("1234")
    assert "warning" not in resumed.stderr.lower(), resumed.stderr

    predicted = epochal("predict", "run", "--data", "digits", "--out", "p.csv", cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr
    assert "wrote 1797 predictions to p.csv" in predicted.stdout
    rows = _rows(tmp_path / "p.csv")
    assert len(rows) == 1797 and list(rows[0])[:3] == ["prediction", "label", "output_0"]
    accuracy = np.mean([row["prediction"] == row["label"] for row in rows])
    reported = float(predicted.stdout.split("accuracy")[1].split()[0])
    assert accuracy == pytest.approx(reported, abs=1e-4) and accuracy > 0.8

    from epochal.data.digits import load_digits

    digits = load_digits()
    inputs = np.stack([digits[i]["data"] for i in range(10)])
    np.save(tmp_path / "x.npy", inputs)
    as_npy = epochal("predict", "run", "--data", "x.npy", "--out", "y.npy", cwd=tmp_path)
    assert as_npy.returncode == 0, as_npy.stderr
    outputs = np.load(tmp_path / "y.npy")
    assert outputs.shape == (10, 10)
    first = [float(rows[i]["output_3"]) for i in range(10)]
    np.testing.assert_allclose(outputs[:, 3], first, rtol=1e-4, atol=1e-4)  # same model


def test_kfold_prints_a_table_with_mean_and_std(tmp_path):
    result = epochal("kfold", "--folds", "3", *QUICK, "--set", "callbacks.csv_logger=false",
                     "--run-dir", "k", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    table = [line.split() for line in result.stdout.splitlines()]
    header = next(row for row in table if row and row[0] == "fold")
    assert header[-2:] == ["CE", "accuracy"]
    assert [row[0] for row in table if row and row[0] in "012"] == ["0", "1", "2"]
    mean = next(row for row in table if row and row[0] == "mean")
    std = next(row for row in table if row and row[0] == "std")
    saved = json.loads((tmp_path / "k" / "kfold.json").read_text())
    assert float(mean[-1]) == pytest.approx(saved["mean"]["accuracy"], abs=1e-4)
    assert float(std[-1]) == pytest.approx(saved["std"]["accuracy"], abs=1e-4)


def test_example_configs_and_script_run(tmp_path):
    root = Path(__file__).resolve().parents[1] / "examples"
    for config in sorted(root.glob("*.toml")):
        if config.name == "digits_tf.toml":
            pytest.importorskip("epochal_tf.trainer")
        result = epochal("train", str(config), *QUICK, "--run-dir", config.stem, cwd=tmp_path)
        assert result.returncode == 0, f"{config.name}: {result.stderr}"
        assert "best val_accuracy" in result.stdout, config.name
    script = subprocess.run(
        [sys.executable, str(root / "train_api.py"), "--epochs", "2", "--save-path", "api"],
        cwd=tmp_path, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert script.returncode == 0, script.stderr
    assert "best val_accuracy" in script.stdout


BAD_TOML = "[training\nnum_epochs = 3\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "missing.toml"], "config file 'missing.toml' does not exist"),
        (["train", "bad.toml"], "bad.toml is not valid TOML"),
        (["train", "--set", "data.datset=digits"], "unknown key data.datset"),
        (["train", "--set", "data.batch_size=x"], "data.batch_size must be an integer"),
        (["train", "--set", "training.losses.CE=ce"], "training.losses.CE: unknown loss 'ce'"),
        (["train", "--set", "model.width=3"], "model.width: MLP has no parameter 'width'"),
        (["train", "--set", "nokey"], "expected KEY=VALUE"),
        (["train", "--backend", "jax"], "unknown backend 'jax'"),
        (["train", "--epochs", "0"], "Invalid value for '--epochs'"),
        (["resume", "nowhere"], "run folder 'nowhere' does not exist"),
        (["predict", "nowhere", "--data", "digits", "--out", "p.txt"], "must end in .npy or .csv"),
        (["predict", "nowhere", "--data", "digits", "--out", "p.csv"], "does not exist"),
        (["kfold", "--folds", "1"], "Invalid value for '--folds'"),
    ],
)
def test_usage_and_config_errors_exit_2_with_one_message(tmp_path, args, message):
    (tmp_path / "bad.toml").write_text(BAD_TOML)
    result = epochal(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()


def test_debug_shows_the_traceback(tmp_path):
    result = epochal("train", "--set", "data.dataset=digitz", "--debug", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" in result.stderr and "Did you mean 'digits'?" in result.stderr


def test_a_failing_training_exits_1_and_keeps_the_summary(tmp_path):
    (tmp_path / "broken_model.py").write_text(
        "import torch\n\n"
        "class Net(torch.nn.Linear):\n"
        "    def __init__(self):\n"
        "        super().__init__(64, 10)\n"
        "        self.calls = 0\n\n"
        "    def forward(self, x):\n"
        "        self.calls += 1\n"
        "        if self.calls > 60:\n"
        "            raise RuntimeError('the model broke in epoch 2')\n"
        "        return super().forward(x)\n"
    )
    result = epochal(
        "train", "--run-dir", "run", "--set", "experiment.model=broken_model:Net",
        "--set", "model={}", *QUICK, cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)},
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "epochal: training failed: RuntimeError: the model broke in epoch 2" in result.stderr
    assert "Traceback" not in result.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed" and "broke" in summary["error"]
    assert summary["epochs_run"] == 1 and (tmp_path / "run" / "checkpoint_last.pt").exists()


def test_print_config_round_trips(tmp_path):
    printed = epochal("train", "--print-config", "--set", "model.hidden=[16]", cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr
    (tmp_path / "job.toml").write_text(printed.stdout)
    result = epochal("train", "job.toml", "--print-config", cwd=tmp_path)
    assert result.stdout == printed.stdout
    assert "hidden = [\n    16,\n]" in printed.stdout


def test_tf_backend_trains_resumes_and_predicts(tmp_path):
    pytest.importorskip("epochal_tf.trainer")
    trained = epochal("train", "--backend", "tf", *QUICK, "--run-dir", "run", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    assert "with the tf backend" in trained.stdout
    assert "checkpoint_last.tf.npz" in os.listdir(tmp_path / "run")
    assert "oneDNN" not in trained.stderr and "cuda" not in trained.stderr.lower()  # quiet TF
    resumed = epochal("resume", "run", "--epochs", "3", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "epoch 3/3" in resumed.stdout and "epoch 2/3" not in resumed.stdout
    assert [row["epoch"] for row in _rows(tmp_path / "run" / "metrics.csv")] == list("123")
    predicted = epochal("predict", "run", "--data", "digits", "--out", "p.npy", cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr
    assert np.load(tmp_path / "p.npy").shape == (1797, 10)


def _without(*plugins: str) -> dict[str, str]:
    return {"EPOCHAL_DISABLE_PLUGINS": ",".join(plugins)}


def test_default_backend_is_tf_when_only_tf_is_installed(tmp_path):
    printed = epochal("train", "--print-config", cwd=tmp_path, env=_without("torch"))
    assert printed.returncode == 0, printed.stderr
    assert 'backend = "tf"' in printed.stdout
    none = epochal("train", cwd=tmp_path, env=_without("torch", "tf", "numpy"))
    assert none.returncode == 2
    # installed but turned off: the message names them (the core names no backend itself)
    assert "no backend is installed: pip install an epochal backend" in none.stderr
    assert "installed but not loaded: epochal-numpy-example, epochal-tf, epochal-torch" in (
        none.stderr
    )


def test_a_backend_whose_framework_is_missing_says_what_to_install(tmp_path, fake_distribution):
    env = fake_distribution(
        tmp_path,
        "fakefw",
        """
        from epochal import hookimpl

        @hookimpl
        def epochal_register_trainers(register):
            register("tf", "a_framework_that_is_not_installed.trainer:Trainer")
        """,
    )
    env.update(_without("tf"))
    result = epochal("train", "--backend", "tf", cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stderr
    assert "the backend 'tf' is installed but its framework cannot be imported" in result.stderr
    assert "pip install epochal-tf" in result.stderr and "Traceback" not in result.stderr
