"""TrainerView: the typed view of a trainer that callbacks and plugins are given."""

from __future__ import annotations

import inspect
import typing

import pytest

from epochal import hookimpl
from epochal.loop.callbacks import (
    AbstractCallback,
    SupervisedTrainerView,
    TrainerView,
    select_optimizers,
)
from epochal.plugins import hookspecs

LIFE_CYCLE_HOOKS = [
    name
    for name in hookspecs.__all__
    if name.startswith("epochal_") and not name.startswith("epochal_register_")
]


def test_every_hook_and_callback_method_is_typed_with_the_view():
    assert len(LIFE_CYCLE_HOOKS) == 8
    for name in LIFE_CYCLE_HOOKS:
        assert getattr(hookspecs, name).__annotations__["trainer"] == "TrainerView", name
    methods = [name for name in vars(AbstractCallback) if name.startswith("at_")]
    assert len(methods) == 4
    for name in methods:
        hints = typing.get_type_hints(getattr(AbstractCallback, name))
        assert hints["trainer"] is TrainerView, name


def _members(protocol: type) -> set[str]:
    names = {*vars(protocol), *protocol.__annotations__}
    return {name for name in names if not name.startswith("_")}


def test_a_trainer_has_everything_the_view_names(make_trainer, managers, tmp_path):
    """Checked at run time (isinstance on a runtime_checkable Protocol looks up every member):
    a public name the view promises and the trainer lost fails here, not in a user's callback."""
    seen = []

    class Reads(AbstractCallback):
        def at_epoch_end(self, trainer: TrainerView, **kwargs: object) -> None:
            assert isinstance(trainer, TrainerView)
            seen.append(
                (
                    trainer.fold,
                    trainer.save_path,
                    trainer.start_epoch,
                    trainer.best_epoch,
                    trainer.val_score_key,
                    trainer.val_score_mode,
                    trainer.is_main_process,
                    len(trainer.callbacks),
                )
            )
            if trainer.best_epoch == 2:
                trainer.request_stop("seen enough")

    class Plugin:
        @hookimpl
        def epochal_at_training_begin(self, trainer: TrainerView) -> None:
            trainer.time_data_wait = True

    train, valid = managers()
    trainer = make_trainer(save_path=tmp_path, callbacks=[Reads(), Plugin()])
    assert _members(TrainerView) == {
        *("state", "time_data_wait", "fold", "save_path", "start_epoch", "best_val_score"),
        *("best_epoch", "val_score_key", "val_score_mode", "is_main_process", "callbacks"),
        *("register_callback", "request_stop"),
    }
    trainer.train(3, train, valid, val_score_key="CE", val_score_mode="lowest")
    assert seen[0] == (0, str(tmp_path), 1, 1, "CE", "lowest", True, 2)
    assert "data_wait_seconds" in trainer.state
    assert isinstance(trainer, TrainerView)


def test_the_supervised_view_adds_network_and_optimizers(make_trainer):
    assert _members(SupervisedTrainerView) == {"module", "optimizers"}
    assert TrainerView in SupervisedTrainerView.__mro__
    trainer = make_trainer()  # the numpy example has neither: not a supervised view
    assert not isinstance(trainer, SupervisedTrainerView)
    with pytest.raises(TypeError, match=r"NumpyNetworkTrainer has none"):
        select_optimizers("Test", trainer, None)
    assert inspect.signature(TrainerView.request_stop).parameters["reason"].default == "stop"
