"""torch's own checkpoint format: what it holds, pickles refused, exact error wording, a
failed write. Files, resume, the best model, refusals every backend shares:
``test_conformance.py`` (``epochal.testing.conformance``)."""

from __future__ import annotations

import os

import pytest
import torch

from epochal import AbstractCallback
from epochal_torch.io import CheckpointError
from epochal_torch.trainer import PyTorchNetworkTrainer


def test_checkpoint_contents(torch_trainer, tmp_path):
    state = PyTorchNetworkTrainer.load_state(torch_trainer().save_state(str(tmp_path / "c"), 1))
    assert set(state) >= {"model", "optimizers", "scaler", "rng", "callbacks", "best_epoch"}
    assert set(state["rng"]) == {"torch", "cuda", "numpy", "python"}


class Payload:
    """A pickle that would create a file when loaded without weights_only."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "payload-ran"
    crafted = tmp_path / "crafted.pt"
    torch.save({"model": {}, "epoch": Payload(str(marker))}, crafted)
    with pytest.raises(CheckpointError, match="was refused: it holds objects other than tensors"):
        PyTorchNetworkTrainer.load_state(str(crafted))
    assert not marker.exists()  # the payload did not run
    with pytest.raises(ValueError, match=r"weights_only=False\) is refused"):
        PyTorchNetworkTrainer.load_state(str(crafted), weights_only=False)
    assert not marker.exists()


def test_truncated_and_foreign_files(torch_trainer, tmp_path):
    trainer = torch_trainer()
    path = trainer.save_state(str(tmp_path / "good"), epoch=1)
    data = open(path, "rb").read()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or not a torch checkpoint"):
        PyTorchNetworkTrainer.load_state(str(tmp_path / "truncated.pt"))
    (tmp_path / "notes.pt").write_text("these are my notes")
    with pytest.raises(CheckpointError, match=r"'.*notes\.pt' cannot be read"):
        PyTorchNetworkTrainer.load_state(str(tmp_path / "notes.pt"))
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not an epochal checkpoint"):
        PyTorchNetworkTrainer.load_state(str(tmp_path / "foreign.pt"))
    with pytest.raises(CheckpointError, match="does not exist"):
        PyTorchNetworkTrainer.load_state(str(tmp_path / "missing"))


def test_another_architecture_names_the_mismatching_keys(torch_trainer, tmp_path):
    path = torch_trainer().save_state(str(tmp_path / "small"), epoch=1)
    other = torch_trainer(
        torch.nn.Sequential(torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10))
    )
    with pytest.raises(CheckpointError) as info:
        other.update_state(path)
    assert str(info.value) == (
        "the checkpoint does not fit this network (was it written for another architecture?): "
        "missing in the checkpoint: ['2.bias', '2.weight'] | "
        "not in the network: ['3.bias', '3.weight'] | "
        "other shapes: 0.bias (32,) in the checkpoint, (16,) here; "
        "0.weight (32, 64) in the checkpoint, (16, 64) here"
    )


def test_a_failed_write_keeps_the_previous_checkpoint(torch_trainer, tmp_path):
    class Unsaveable(torch.Tensor):  # a tensor (which passes the state check) torch.save fails on
        def __reduce_ex__(self, protocol):
            raise RuntimeError("this tensor cannot be pickled")

    class Unpicklable(AbstractCallback):
        def __init__(self):
            self.broken = False

        def state_dict(self):
            return {"callback": torch.ones(1).as_subclass(Unsaveable) if self.broken else 1}

    callback = Unpicklable()
    trainer = torch_trainer(callbacks=[callback])
    path = trainer.save_state(str(tmp_path / "checkpoint_last"), epoch=1)
    before = open(path, "rb").read()
    callback.broken = True  # torch.save now fails in the middle of writing
    with pytest.raises(Exception, match="cannot be pickled"):
        trainer.save_state(str(tmp_path / "checkpoint_last"), epoch=2)
    assert open(path, "rb").read() == before
    assert sorted(os.listdir(tmp_path)) == ["checkpoint_last.pt"]  # no temporary file left
    assert PyTorchNetworkTrainer.load_state(path)["epoch"] == 1
