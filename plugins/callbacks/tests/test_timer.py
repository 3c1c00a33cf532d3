"""Timer: a data pipeline slower than the step is called out as the bottleneck."""

from __future__ import annotations

import io
import time

import numpy as np

from epochal.data import DataManager
from epochal_callbacks.timer import Timer


def slow_load(index):
    time.sleep(0.004)  # a slow disk
    rng = np.random.default_rng(index)
    return {"data": rng.random(64).astype(np.float32), "label": np.int64(index % 10)}


def test_slow_data_is_reported_as_the_bottleneck(make_trainer):
    stream = io.StringIO()
    timer = Timer(stream=stream)
    trainer = make_trainer(callbacks=[timer])
    train = DataManager(list(range(96)), 16, 0, load_fn=slow_load)
    trainer.train(2, train)
    out = stream.getvalue()
    assert out.count("data loading is the bottleneck") == 2
    assert [entry["epoch"] for entry in timer.history] == [1, 2]
    for entry in timer.history:
        assert 0.9 < entry["data_wait_fraction"] <= 1.0
        assert entry["data_wait_seconds"] >= 96 * 0.004
    assert trainer.state["data_wait_fraction"] == timer.history[-1]["data_wait_fraction"]


def test_data_wait_is_not_timed_unless_asked(managers, make_trainer):
    trainer = make_trainer()
    train, valid = managers()
    trainer.train(1, train, valid)
    assert "data_wait_seconds" not in trainer.state
    assert trainer.state["train_seconds"] > 0 and trainer.state["val_seconds"] > 0
