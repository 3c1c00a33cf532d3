"""``epochal train`` when the loss becomes NaN: exit code 1, one line that names epoch, batch and
loss key, and the last good epoch's checkpoint left in place and loadable.

The default job (MLP on digits, torch) learns at lr 0.05 in epoch 1; a StepLR scheduler with
gamma 1e9 then makes epoch 2's lr 5e7, and SGD's loss is NaN a few batches into epoch 2
(deterministic: seed 0, one thread).
"""

from __future__ import annotations

import pytest

from epochal.testing import run_epochal

torch = pytest.importorskip("torch")

DIVERGING = [
    "--epochs",
    "3",
    "--set",
    "training.optimizer_cls=SGD",
    "--set",
    "training.optimizer_params.lr=0.05",
    "--set",
    "training.lr_scheduler_cls=StepLR",
    "--set",
    "training.lr_scheduler_params.step_size=1",
    "--set",
    "training.lr_scheduler_params.gamma=1e9",
]


def train(tmp_path, *args):
    return run_epochal(
        "train", "--run-dir", "R", *DIVERGING, *args, cwd=tmp_path, env={"OMP_NUM_THREADS": "1"}
    )


def failure_lines(result):
    return [line for line in result.stderr.splitlines() if line.startswith("epochal: ")]


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    result = train(tmp_path)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = failure_lines(result)
    assert line.startswith("epochal: training failed: non-finite loss in epoch 2, batch "), line
    assert "(counting from 1): loss 'CE' is nan" in line and "learning rate" in line
    state = torch.load(tmp_path / "R" / "checkpoint_last.pt", weights_only=True)
    assert state["epoch"] == 1
    assert all(torch.isfinite(value).all() for value in state["model"].values())
    assert not (tmp_path / "R" / "checkpoint_epoch_2.pt").exists()


def test_skip_batch_cannot_save_a_run_whose_weights_diverged(tmp_path):
    # Skipping stops the NaN updates, but the few finite-loss steps at lr 5e7 have already
    # made the weights non-finite: in epoch 3 every loss is NaN, and skip_batch says so.
    result = train(tmp_path, "--set", "training.on_nonfinite=skip_batch")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = failure_lines(result)
    assert "epoch 3: the loss was non-finite in all 45 batches" in line, line
    header, *rows = (tmp_path / "R" / "metrics.csv").read_text().splitlines()
    counts = [int(row.split(",")[header.split(",").index("nonfinite_batches")]) for row in rows]
    assert counts[0] == 0 and counts[1] > 0 and len(counts) == 2
    assert torch.load(tmp_path / "R" / "checkpoint_last.pt", weights_only=True)["epoch"] == 2
