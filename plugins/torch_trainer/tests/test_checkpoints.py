"""Checkpoints: files, atomic writes, weights_only, bitwise resume, the best model."""

from __future__ import annotations

import os

import pytest
import torch

from epochal import AbstractCallback
from epochal_torch.io import CheckpointError
from epochal_torch.trainer import PyTorchNetworkTrainer


def same_tensors(left: dict, right: dict) -> bool:
    return left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)


def test_checkpoint_files_and_contents(torch_trainer, managers, tmp_path):
    trainer = torch_trainer(save_path=tmp_path, save_freq=2)
    train, valid = managers()
    trainer.train(4, train, valid, val_score_key="accuracy")
    assert sorted(os.listdir(tmp_path)) == [
        "checkpoint_best.pt",
        "checkpoint_epoch_2.pt",
        "checkpoint_epoch_4.pt",
        "checkpoint_last.pt",
    ]  # and no temporary file left behind
    state = PyTorchNetworkTrainer.load_state(str(tmp_path / "checkpoint_last"))
    assert state["epoch"] == 4 and state["best_val_score"] == trainer.best_val_score
    assert set(state) >= {"model", "optimizers", "scaler", "rng", "callbacks", "best_epoch"}
    assert set(state["rng"]) == {"torch", "cuda", "numpy", "python"}


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_is_bitwise_equal_to_an_uninterrupted_run(
    torch_trainer, managers, make_mlp, tmp_path, workers
):
    def fresh(save_path):
        torch.manual_seed(1)  # the same initial weights for both runs
        return torch_trainer(make_mlp(dropout=0.3), save_path=save_path, seed=1)

    train, valid = managers(workers=workers)
    straight = fresh(tmp_path / "straight")  # dropout: the RNG state matters too
    straight.train(4, train, valid, val_score_key="accuracy")

    fresh(tmp_path / "resumed").train(2, train, valid, val_score_key="accuracy")
    torch.manual_seed(12345)  # a new process would not share the first run's RNG state
    resumed = torch_trainer(make_mlp(dropout=0.3), save_path=tmp_path / "resumed", seed=99)
    resumed.update_state(str(tmp_path / "resumed" / "checkpoint_last"))
    assert resumed.start_epoch == 3
    resumed.train(4, train, valid, val_score_key="accuracy")

    last = {
        run: PyTorchNetworkTrainer.load_state(str(tmp_path / run / "checkpoint_last"))
        for run in ("straight", "resumed")
    }
    assert same_tensors(last["resumed"]["model"], last["straight"]["model"])  # bit for bit
    resumed_adam = last["resumed"]["optimizers"]["default"]["state"]
    for key, value in last["straight"]["optimizers"]["default"]["state"].items():
        assert same_tensors(resumed_adam[key], value)
    assert (resumed.best_epoch, resumed.best_val_score) == (
        straight.best_epoch,
        straight.best_val_score,
    )
    assert same_tensors(resumed.module.state_dict(), straight.module.state_dict())  # the best


def test_train_returns_the_best_epochs_weights(torch_trainer, managers, tmp_path):
    class Snapshot(AbstractCallback):
        def __init__(self):
            self.weights = {}

        def at_epoch_end(self, trainer, epoch, **kwargs):
            self.weights[epoch] = {k: v.clone() for k, v in trainer.module.state_dict().items()}

    for save_path in (tmp_path, None):  # from checkpoint_best.pt, or from the copy in memory
        snapshot = Snapshot()
        # a learning rate so high that the validation loss jumps around: the best is not last
        trainer = torch_trainer(
            save_path=save_path,
            optimizer_cls=torch.optim.SGD,
            optimizer_params={"lr": 3.0},
            callbacks=[snapshot],
        )
        train, valid = managers()
        network = trainer.train(6, train, valid, val_score_key="CE", val_score_mode="lowest")
        assert trainer.best_epoch is not None and trainer.best_epoch != 6, trainer.best_epoch
        assert same_tensors(network.state_dict(), snapshot.weights[trainer.best_epoch])


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
