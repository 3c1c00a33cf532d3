"""Checkpoints written once in the core (epochal.runs.checkpoints and the trainer's save_state,
load_state, update_state and best weights), driven by a tiny backend defined here that
provides only the checkpoint primitives of epochal.loop.backend: a JSON file format and its
state. Real files, real training loop."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pytest

from epochal.data import DataManager
from epochal.data.datasets import ArrayDataset
from epochal.errors import CheckpointError, ConfigError
from epochal.loop.backend import CheckpointPrimitives
from epochal.loop.trainer import AbstractNetworkTrainer
from epochal.runs import checkpoints
from epochal.runs.files import atomic_write, open_run_file


class Counter:
    """The network: one number, which each epoch adds 1 to in place (so the weights name the
    epoch, and a state that shares memory with the network changes with it)."""

    def __init__(self) -> None:
        self.w = [0.0]


class CountingTrainer(AbstractNetworkTrainer):
    """A backend of the primitives only. ``scores[i]`` is what validation after epoch
    ``i + 1`` reports, so the test picks the best epoch."""

    checkpoint_suffix: ClassVar[str] = ".json"

    def __init__(self, scores=(), save_path=None, save_freq=1, callbacks=None) -> None:
        super().__init__(0, callbacks, save_path=save_path, save_freq=save_freq)
        self.module = Counter()
        self.steps = 0  # the "optimizer state"
        self.scores = list(scores)
        self._setup()

    def train_epoch(self, batches, epoch):
        for _ in batches:
            self.steps += 1
        self.module.w[0] += 1.0
        return {"loss": 1.0}

    def predict(self, batchgen, batch_size=None):
        for _ in batchgen:
            pass
        return np.zeros(1), [], {"score": self.scores[int(self.module.w[0]) - 1]}

    @staticmethod
    def write_checkpoint(path: str, state: dict[str, Any]) -> str:
        with atomic_write(path, "w") as handle:
            json.dump(state, handle)
        return path

    @staticmethod
    def read_checkpoint(path: str) -> dict[str, Any]:
        try:
            with open_run_file(path, "r") as handle:
                state = json.load(handle)
        except FileNotFoundError:
            raise CheckpointError(f"checkpoint {path!r} does not exist") from None
        checkpoints.check_core_state(path, state)
        return state

    def network_state(self) -> dict[str, Any]:
        return {"weights": {"w": self.module.w}}  # shares memory, as torch's state_dict

    def load_network_state(self, state: Mapping[str, Any]) -> None:
        self.module.w[:] = state["weights"]["w"]

    def training_state(self) -> dict[str, Any]:
        return {"steps": self.steps}

    def load_training_state(self, state: Mapping[str, Any]) -> None:
        self.steps = state.get("steps", self.steps)


def data() -> DataManager:
    return DataManager(ArrayDataset(data=np.zeros((4, 1)), label=np.zeros(4)), 2, 0)


def read(path) -> dict[str, Any]:
    with open(path) as handle:
        return json.load(handle)


def test_the_contract_is_a_typed_protocol():
    trainer = CountingTrainer()
    assert isinstance(trainer, CheckpointPrimitives)
    assert not isinstance(object(), CheckpointPrimitives)


def test_schedule_files_and_the_best_weights_from_checkpoint_best(tmp_path):
    # best epochs: 1, then 3; epoch 4 is worse
    trainer = CountingTrainer(scores=[0.5, 0.1, 0.9, 0.2], save_path=tmp_path, save_freq=2)
    network = trainer.train(4, data(), data(), val_score_key="score")
    assert sorted(os.listdir(tmp_path)) == [
        "checkpoint_best.json",
        "checkpoint_epoch_2.json",
        "checkpoint_epoch_4.json",
        "checkpoint_last.json",
    ]
    assert network is trainer.module and trainer.best_epoch == 3
    assert network.w == [3.0]  # the best epoch's weights, read back from checkpoint_best
    best, last = read(tmp_path / "checkpoint_best.json"), read(tmp_path / "checkpoint_last.json")
    assert best["epoch"] == 3 and best["weights"] == {"w": [3.0]} and best["steps"] == 6
    assert last["epoch"] == 4 and last["best_epoch"] == 3 and last["weights"] == {"w": [4.0]}
    assert checkpoints.stems_after_epoch(4, False, 2) == ["checkpoint_epoch_4", "checkpoint_last"]
    assert checkpoints.stems_after_epoch(3, True, 2) == ["checkpoint_best", "checkpoint_last"]


def test_without_a_run_folder_the_best_weights_are_a_copy_in_memory(tmp_path):
    trainer = CountingTrainer(scores=[0.1, 0.9, 0.3])
    network = trainer.train(3, data(), data(), val_score_key="score")
    # a copy: epoch 3 trained on after the best epoch 2, and the copy kept epoch 2's value
    assert trainer.best_epoch == 2 and network.w == [2.0]
    assert os.listdir(tmp_path) == []
    # no best epoch (no validation): the last epoch's network, nothing restored
    assert CountingTrainer().train(2, data()).w == [2.0]


def test_save_state_suffix_weights_only_and_load_state_without_suffix(tmp_path):
    trainer = CountingTrainer()
    trainer.module.w[0], trainer.steps = 7.0, 11
    assert trainer.save_state(str(tmp_path / "a"), epoch=3) == str(tmp_path / "a.json")
    assert trainer.save_state(str(tmp_path / "b.json"), 3, weights_only=True) == str(
        tmp_path / "b.json"
    )  # no second suffix
    assert sorted(os.listdir(tmp_path)) == ["a.json", "b.json"]  # no temporary file left
    full = CountingTrainer.load_state(str(tmp_path / "a"))  # on the class, suffix left off
    assert full["steps"] == 11 and full["weights"] == {"w": [7.0]} and full["epoch"] == 3
    assert "steps" not in trainer.load_state(str(tmp_path / "b.json"))
    assert checkpoints.to_write("x.pth", ".pt", (".pth",)) == "x.pth"
    assert checkpoints.to_read(str(tmp_path / "a.json"), ".json") == str(tmp_path / "a.json")


def test_update_state_loads_network_training_state_and_the_core_part(tmp_path):
    first = CountingTrainer(scores=[0.5, 0.7], save_path=tmp_path)
    first.train(2, data(), data(), val_score_key="score")
    resumed = CountingTrainer(scores=[0.5, 0.7, 0.1], save_path=tmp_path)
    assert resumed.update_state(str(tmp_path / "checkpoint_last")) is resumed
    assert (resumed.module.w, resumed.steps) == ([2.0], 4)
    assert (resumed.start_epoch, resumed.best_epoch, resumed.best_val_score) == (3, 2, 0.7)
    assert resumed.loaded_weights_epoch == 2
    assert resumed.train(3, data(), data(), val_score_key="score").w == [2.0]  # best: epoch 2
    assert read(tmp_path / "checkpoint_last.json")["epoch"] == 3


def test_a_bad_core_part_is_refused_naming_the_file_and_key(tmp_path):
    trainer = CountingTrainer()
    path = trainer.save_state(str(tmp_path / "checkpoint_last"), epoch=1)
    state = read(path)
    state["epoch"] = -5
    with open(path, "w") as handle:
        json.dump(state, handle)
    with pytest.raises(CheckpointError, match=r"checkpoint_last.json: 'epoch' must be an integer"):
        CountingTrainer().update_state(str(tmp_path / "checkpoint_last"))


def _kill_between_best_and_last(tmp_path, scores, epochs):
    """A run whose checkpoint_best was written for epoch ``epochs + 1`` but whose
    checkpoint_last is of epoch ``epochs`` (killed between the two writes)."""
    trainer = CountingTrainer(scores=scores, save_path=tmp_path)
    trainer.train(epochs + 1, data(), data(), val_score_key="score")
    os.replace(tmp_path / f"checkpoint_epoch_{epochs}.json", tmp_path / "checkpoint_last.json")
    resumed = CountingTrainer(scores=scores, save_path=tmp_path)
    resumed.update_state(str(tmp_path / "checkpoint_last"))
    return resumed


def test_reconcile_best_after_a_kill_between_best_and_last(tmp_path):
    # epoch 2 was best when checkpoint_last (epoch 2) was written; epoch 3's best file is newer
    resumed = _kill_between_best_and_last(tmp_path, [0.1, 0.5, 0.9], 2)
    assert read(tmp_path / "checkpoint_best.json")["epoch"] == 3
    checkpoints.reconcile_best(resumed, tmp_path)
    assert read(tmp_path / "checkpoint_best.json")["epoch"] == 2  # from checkpoint_last

    # epoch 1 best, checkpoint_last of epoch 2: put back from checkpoint_epoch_1
    (run := tmp_path / "other").mkdir()
    resumed = _kill_between_best_and_last(run, [0.5, 0.1, 0.9], 2)
    checkpoints.reconcile_best(resumed, run)
    assert read(run / "checkpoint_best.json")["weights"] == {"w": [1.0]}

    # ... and when checkpoint_epoch_1 is gone too, checkpoint_best is removed with a warning
    (run := tmp_path / "third").mkdir()
    resumed = _kill_between_best_and_last(run, [0.5, 0.1, 0.9], 2)
    os.remove(run / "checkpoint_epoch_1.json")
    with pytest.warns(UserWarning, match="held epoch 3, not the best epoch 1"):
        checkpoints.reconcile_best(resumed, run)
    assert not (run / "checkpoint_best.json").exists()


def test_lookup_for_resume_and_predict(tmp_path):
    assert checkpoints.for_resume(tmp_path) is None and checkpoints.for_predict(tmp_path) is None
    trainer = CountingTrainer(save_path=tmp_path)
    trainer.train(1, data())  # no validation: no checkpoint_best
    (tmp_path / ".checkpoint_best.json.0000-1-x.tmp").write_text("{")  # a killed write's
    assert checkpoints.for_resume(tmp_path) == str(tmp_path / "checkpoint_last")
    assert checkpoints.for_predict(tmp_path, "best") == str(tmp_path / "checkpoint_last")
    assert checkpoints.for_predict(tmp_path, "epoch_1") == str(tmp_path / "checkpoint_epoch_1")
    os.mkfifo(tmp_path / "checkpoint_best.json")  # would block a reader forever
    with pytest.raises(ConfigError, match=r"checkpoint_best\.json"):
        checkpoints.for_predict(tmp_path, "best")
    assert checkpoints.is_checkpoint_name("checkpoint_last.pt")
    assert not checkpoints.is_checkpoint_name("config.toml")


def test_the_numpy_example_backend_keeps_its_file_format(tmp_path):
    from epochal_numpy.network import SoftmaxRegression
    from epochal_numpy.trainer import NumpyNetworkTrainer

    trainer = NumpyNetworkTrainer(SoftmaxRegression(3, 2, seed=1), save_path=tmp_path)
    path = trainer.save_state(str(tmp_path / "checkpoint_last"), epoch=2)
    with np.load(path, allow_pickle=False) as archive:  # the format written before the change
        assert sorted(archive.files) == ["bias", "meta", "weight"]
        meta = json.loads(str(archive["meta"]))
    assert meta["epoch"] == 2 and "weights" not in meta
    assert isinstance(trainer, CheckpointPrimitives)
