"""``epochal_setup`` fires once per trainer, whether or not its backend calls delira's
``_setup``; ``set_seed`` and ``batch_end_hook`` are public and have defaults."""

from __future__ import annotations

import numpy as np

from epochal import hookimpl
from epochal.data import DataManager
from epochal.data.datasets import ArrayDataset
from epochal.loop.trainer import AbstractNetworkTrainer


class CountingBackend(AbstractNetworkTrainer):
    """A loop-only backend: one weight that moves towards the mean label."""

    def __init__(self, calls_setup: bool, **kwargs):
        super().__init__(**kwargs)
        self.module = {"w": 0.0}
        if calls_setup:
            self._setup()

    def train_epoch(self, batches, epoch):
        hook, seen = self.batch_end_hook, 0
        for batch_nr, batch in enumerate(batches):
            self.module["w"] += 0.5 * (float(np.mean(batch["label"])) - self.module["w"])
            seen += 1
            if hook is not None:
                hook(trainer=self, epoch=epoch, batch_nr=batch_nr, losses={}, metrics={})
        return {"batches": float(seen)}


class Recorder:
    def __init__(self):
        self.setups, self.batches = 0, 0

    @hookimpl
    def epochal_setup(self, trainer):
        self.setups += 1

    @hookimpl
    def epochal_at_batch_end(self, trainer, epoch, batch_nr, losses, metrics):
        self.batches += 1


def _data():
    return DataManager(ArrayDataset(data=np.zeros((8, 2)), label=np.ones(8)), 4, 0)


def test_setup_fires_once_whether_or_not_the_backend_calls_it(register_epochal_plugin):
    recorder = Recorder()
    register_epochal_plugin(recorder)
    for calls_setup in (True, False):
        recorder.setups = recorder.batches = 0
        trainer = CountingBackend(calls_setup)
        assert recorder.setups == (1 if calls_setup else 0)
        network = trainer.train(2, _data())
        assert recorder.setups == 1  # the loop fired it for the backend that did not
        assert recorder.batches == 4  # 2 epochs x 2 batches, through the public name
        assert network is trainer.module and network["w"] > 0.9


def test_the_defaults_cost_nothing():
    trainer = CountingBackend(False)
    assert trainer.batch_end_hook is None  # no plugin implements it: never dispatched
    assert AbstractNetworkTrainer.set_seed(3) is None  # a backend without generators
