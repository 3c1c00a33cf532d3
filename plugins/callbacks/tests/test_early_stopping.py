"""EarlyStopping in real numpy-trainer runs on digits."""

from __future__ import annotations

import pytest

from epochal.errors import MissingMetricError
from epochal.plugins.registry import get_callback
from epochal_callbacks.early_stopping import EarlyStopping


def epochs_run(trainer) -> int:
    return trainer.state["epochs_seen"]


class CountEpochs:
    def at_epoch_begin(self, trainer, **kwargs):
        return {}

    def at_epoch_end(self, trainer, epoch, **kwargs):
        return {"epochs_seen": epoch}


def test_stops_after_patience_epochs_without_improvement(managers, make_trainer):
    # lr=0: val_CE never changes, so epoch 1 is the best and epochs 2..4 are the patience
    stopper = get_callback("early_stopping")(monitor="val_CE", mode="lowest", patience=3)
    trainer = make_trainer(lr=0.0, callbacks=[stopper, CountEpochs()])
    train, valid = managers()
    trainer.train(20, train, valid)
    assert stopper.best_epoch == 1 and stopper.stopped_epoch == 4 and epochs_run(trainer) == 4


def test_keeps_going_while_improving_and_updates_its_best(managers, make_trainer):
    stopper = EarlyStopping(monitor="val_accuracy", mode="highest", patience=2)
    trainer = make_trainer(callbacks=[stopper, CountEpochs()])
    train, valid = managers()
    trainer.train(4, train, valid)
    assert stopper.best is not None and stopper.best > 0.9
    assert stopper.best_epoch >= 2  # the best moved on (delira's never did)


def test_min_delta(managers, make_trainer):
    stopper = EarlyStopping(monitor="val_CE", mode="lowest", patience=2, min_delta=10.0)
    trainer = make_trainer(callbacks=[stopper, CountEpochs()])
    train, valid = managers()
    trainer.train(20, train, valid)
    assert stopper.stopped_epoch == 3  # real improvements, all smaller than min_delta


def test_missing_monitor_names_the_keys_there_are(managers, make_trainer):
    trainer = make_trainer(callbacks=[EarlyStopping(monitor="val_dice", patience=2)])
    train, valid = managers()
    with pytest.raises(MissingMetricError) as info:
        trainer.train(2, train, valid)
    assert str(info.value) == (
        "EarlyStopping: the epoch produced no metric 'val_dice'; it produced "
        "['CE', 'accuracy', 'val_CE', 'val_accuracy']. Validation metrics carry the prefix "
        "'val_' (e.g. 'val_accuracy')."
    )


@pytest.mark.parametrize("interrupt_after", [1, 2])
def test_resume_continues_counting(managers, make_trainer, tmp_path, interrupt_after):
    train, valid = managers()
    straight = EarlyStopping(monitor="val_CE", mode="lowest", patience=3)
    make_trainer(lr=0.0, callbacks=[straight]).train(20, train, valid)

    first = EarlyStopping(monitor="val_CE", mode="lowest", patience=3)
    make_trainer(lr=0.0, save_path=tmp_path, callbacks=[first]).train(interrupt_after, train, valid)
    resumed = EarlyStopping(monitor="val_CE", mode="lowest", patience=3)
    trainer = make_trainer(lr=0.0, save_path=tmp_path, callbacks=[resumed])
    trainer.update_state(str(tmp_path / "checkpoint_last"))
    assert resumed.bad_epochs == interrupt_after - 1 and resumed.best == first.best
    trainer.train(20, train, valid)
    assert resumed.stopped_epoch == straight.stopped_epoch == 4


def test_delira_names_and_bad_arguments():
    delira_style = EarlyStopping(monitor_key="val_CE", mode="min", patience=1)
    assert delira_style.monitor == "val_CE" and delira_style.mode == "lowest"
    with pytest.raises(ValueError, match="patience must be an integer >= 1"):
        EarlyStopping("val_CE", patience=0)
    with pytest.raises(ValueError, match="mode must be 'highest' or 'lowest', got 'best'"):
        EarlyStopping("val_CE", mode="best")
    with pytest.raises(ValueError, match="needs monitor="):
        EarlyStopping()


def test_refuses_a_checkpoint_of_another_monitor():
    stopper = EarlyStopping("val_CE", mode="lowest")
    with pytest.raises(ValueError, match="monitored 'val_accuracy'"):
        stopper.load_state_dict(
            {
                "monitor": "val_accuracy",
                "best": 0.5,
                "best_epoch": 1,
                "bad_epochs": 0,
                "stopped_epoch": None,
            }
        )
