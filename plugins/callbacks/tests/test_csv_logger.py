"""CSVLogger: one row per epoch, the same rows after a crash and a resume."""

from __future__ import annotations

import csv

import pytest

from epochal_callbacks.csv_logger import CSVLogger


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


class Recorder:
    def __init__(self):
        self.metrics = {}

    def at_epoch_begin(self, trainer, **kwargs):
        return {}

    def at_epoch_end(self, trainer, epoch, metrics_train, metrics_val, **kwargs):
        self.metrics[epoch] = {**metrics_train, **metrics_val}
        return {}


def test_one_row_per_epoch_with_every_metric(managers, make_trainer, tmp_path):
    recorder = Recorder()
    trainer = make_trainer(save_path=tmp_path, callbacks=[CSVLogger(), recorder])
    train, valid = managers()
    trainer.train(3, train, valid)
    rows = read_rows(tmp_path / "metrics.csv")
    assert list(rows[0]) == ["epoch", "CE", "accuracy", "val_CE", "val_accuracy", "lr", "seconds"]
    assert [row["epoch"] for row in rows] == ["1", "2", "3"]
    for row in rows:
        expected = recorder.metrics[int(row["epoch"])]
        assert {key: float(row[key]) for key in expected} == expected  # repr round-trips
        assert float(row["lr"]) == 1.0 and float(row["seconds"]) > 0


def without_seconds(rows):
    return [{key: value for key, value in row.items() if key != "seconds"} for row in rows]


def test_crash_and_resume_gives_the_same_rows(managers, make_trainer, tmp_path):
    train, valid = managers(workers=2)
    straight_dir, crashed_dir = tmp_path / "straight", tmp_path / "crashed"
    make_trainer(save_path=straight_dir, callbacks=[CSVLogger()]).train(6, train, valid)

    # A run that wrote its CSV row for epoch 4 and then died before the checkpoint of epoch 4
    # landed is resumed from the checkpoint of epoch 3: epoch 4 runs again.
    make_trainer(save_path=crashed_dir, callbacks=[CSVLogger()]).train(4, train, valid)
    resumed = make_trainer(save_path=crashed_dir, seed=7, callbacks=[CSVLogger()])
    resumed.update_state(str(crashed_dir / "checkpoint_epoch_3"))
    resumed.train(6, train, valid)

    rows = read_rows(crashed_dir / "metrics.csv")
    assert [row["epoch"] for row in rows] == ["1", "2", "3", "4", "5", "6"]
    assert without_seconds(rows) == without_seconds(read_rows(straight_dir / "metrics.csv"))


def test_a_metric_that_appears_later_adds_a_column(managers, make_trainer, tmp_path):
    train, valid = managers()
    make_trainer(save_path=tmp_path, callbacks=[CSVLogger()]).train(1, train)  # no validation
    resumed = make_trainer(save_path=tmp_path, callbacks=[CSVLogger()])
    resumed.update_state(str(tmp_path / "checkpoint_last"))
    resumed.train(2, train, valid)
    rows = read_rows(tmp_path / "metrics.csv")
    assert list(rows[0]) == ["epoch", "CE", "accuracy", "lr", "val_CE", "val_accuracy", "seconds"]
    assert rows[0]["val_CE"] == "" and float(rows[1]["val_CE"]) > 0
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no temp files


def test_needs_a_folder(managers, make_trainer):
    trainer = make_trainer(callbacks=[CSVLogger()])
    train, valid = managers()
    with pytest.raises(
        ValueError,
        match="CSVLogger needs a folder: give it a path, or give the trainer a save_path",
    ):
        trainer.train(1, train, valid)
