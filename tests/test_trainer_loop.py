"""The core loop, driven by the numpy example backend (a separately installed plugin)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from epochal import AbstractCallback, hookimpl
from epochal.errors import PluginError
from epochal.loop.trainer import AbstractNetworkTrainer
from epochal.plugins.registry import get_trainer


class Patience(AbstractCallback):
    """Stop after ``patience`` epochs without a new best (a test-local early stopper)."""

    def __init__(self, patience):
        self.patience = patience
        self.bad_epochs = 0
        self.stopped_at = None

    def at_epoch_end(self, trainer, epoch, is_best, **kwargs):
        self.bad_epochs = 0 if is_best else self.bad_epochs + 1
        if self.bad_epochs >= self.patience:
            self.stopped_at = epoch
            return {"stop_training": True}
        return {}

    def state_dict(self):
        return {"bad_epochs": self.bad_epochs}

    def load_state_dict(self, state):
        self.bad_epochs = state["bad_epochs"]


def _same(left, right):
    return all(np.array_equal(left[key], right[key]) for key in left)


def test_numpy_trainer_from_the_registry_learns_digits(managers):
    from epochal_numpy.network import SoftmaxRegression

    trainer_cls = get_trainer("numpy")
    trainer = trainer_cls(SoftmaxRegression(64, 10, seed=0), lr=1.0)
    train, valid = managers(workers=2)
    network = trainer.train(4, train, valid, val_score_key="accuracy")
    assert network is trainer.module
    assert trainer.best_val_score > 0.9
    _, labels, metrics = trainer.predict(valid.get_batchgen())
    assert metrics["accuracy"] == pytest.approx(trainer.best_val_score)
    assert labels[0].shape == (valid.n_samples,)


def test_callback_stops_training_early_at_the_right_epoch(managers, make_trainer):
    # lr=0: the score never improves after epoch 1, so patience 2 stops after epoch 3
    stopper = Patience(patience=2)
    trainer = make_trainer(lr=0.0, callbacks=[stopper])
    train, valid = managers()
    trainer.train(10, train, valid, val_score_key="CE", val_score_mode="lowest")
    assert stopper.stopped_at == 3 and trainer.best_epoch == 1


def test_train_returns_the_best_network(managers, make_trainer, tmp_path):
    class Snapshot(AbstractCallback):
        def __init__(self):
            self.weights = {}

        def at_epoch_end(self, trainer, epoch, **kwargs):
            self.weights[epoch] = trainer.module.state_dict()

    snapshot = Snapshot()
    # lr so large that validation gets worse after a while: the best epoch is not the last
    trainer = make_trainer(lr=25.0, callbacks=[snapshot], save_path=tmp_path)
    train, valid = managers()
    network = trainer.train(6, train, valid, val_score_key="val_CE", val_score_mode="lowest")
    assert trainer.best_epoch is not None and trainer.best_epoch < 6  # not simply the last
    assert _same(network.state_dict(), snapshot.weights[trainer.best_epoch])
    best = trainer.load_state(str(tmp_path / "checkpoint_best"))
    assert best["epoch"] == trainer.best_epoch and _same(best["weights"], network.state_dict())


def test_missing_val_score_key_warns_once_and_returns_last(managers, make_trainer):
    trainer = make_trainer()
    train, valid = managers()
    with pytest.warns(
        UserWarning,
        match=r"'dice' is not among the validation metrics \['val_CE', 'val_accuracy'\]",
    ) as record:
        network = trainer.train(3, train, valid, val_score_key="dice")
    assert len([w for w in record if "dice" in str(w.message)]) == 1
    assert trainer.best_epoch is None and network is trainer.module


@pytest.mark.parametrize("key", ["accuracy", "val_accuracy"])
def test_val_score_key_as_given_then_prefixed(managers, make_trainer, key):
    trainer = make_trainer()
    train, valid = managers()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trainer.train(2, train, valid, val_score_key=key)
    assert trainer.best_epoch in (1, 2) and trainer.best_val_score > 0.8


def test_is_better_val_scores():
    better = AbstractNetworkTrainer._is_better_val_scores
    assert better(None, -5.0, "highest")  # a negative first score is still a best score
    assert better(-5.0, -4.0, "highest") and not better(-4.0, -5.0, "highest")
    assert better(0.5, 0.4, "lowest") and not better(0.4, 0.4, "lowest")
    assert not better(0.5, math.nan, "lowest")
    with pytest.raises(ValueError, match=r"must be one of \('highest', 'lowest'\), got 'max'"):
        better(None, 1.0, "max")


def test_bad_arguments_fail_before_any_training(managers, make_trainer):
    trainer = make_trainer()
    before = trainer.module.state_dict()
    train, valid = managers()
    with pytest.raises(ValueError, match="num_epochs must be an integer >= 1, got 0"):
        trainer.train(0, train, valid)
    with pytest.raises(ValueError, match="val_score_mode must be one of"):
        trainer.train(2, train, valid, val_score_key="accuracy", val_score_mode="best")
    assert _same(before, trainer.module.state_dict())
    with pytest.raises(ValueError, match="save_freq must be a positive integer"):
        make_trainer(save_freq=0)


def test_checkpoint_files(managers, make_trainer, tmp_path):
    trainer = make_trainer(save_path=tmp_path, save_freq=2)
    train, valid = managers()
    trainer.train(5, train, valid, val_score_key="accuracy")
    names = sorted(path.name for path in tmp_path.iterdir())
    assert names == [
        "checkpoint_best.npz",
        "checkpoint_epoch_2.npz",
        "checkpoint_epoch_4.npz",
        "checkpoint_last.npz",
    ]
    last = trainer.load_state(str(tmp_path / "checkpoint_last"))
    assert last["epoch"] == 5 and last["best_val_score"] == trainer.best_val_score


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_equals_uninterrupted_run(managers, make_trainer, tmp_path, workers):
    train, valid = managers(workers=workers)
    straight = make_trainer(callbacks=[Patience(patience=100)])
    straight.train(6, train, valid, val_score_key="accuracy")

    first = make_trainer(save_path=tmp_path, callbacks=[Patience(patience=100)])
    first.train(3, train, valid, val_score_key="accuracy")
    patience = Patience(patience=100)
    resumed = make_trainer(
        save_path=tmp_path, seed=99, callbacks=[patience]
    )  # other init: weights must come from disk
    resumed.update_state(str(tmp_path / "checkpoint_last"))
    assert resumed.start_epoch == 4
    assert resumed.best_val_score == first.best_val_score and resumed.best_epoch == first.best_epoch
    assert patience.bad_epochs == first.callbacks[0].bad_epochs
    resumed.train(6, train, valid, val_score_key="accuracy")
    assert _same(resumed.module.state_dict(), straight.module.state_dict())  # bitwise
    assert resumed.best_val_score == straight.best_val_score


def test_finished_run_warns_and_trains_nothing(managers, make_trainer):
    trainer = make_trainer(start_epoch=4)
    train, valid = managers()
    before = trainer.module.state_dict()
    with pytest.warns(UserWarning, match="already complete"):
        trainer.train(3, train, valid)
    assert _same(before, trainer.module.state_dict())


def test_register_callback_refuses_other_objects(make_trainer):
    trainer = make_trainer()

    class HalfCallback:
        def at_epoch_begin(self, trainer):
            return {}

    with pytest.raises(AssertionError, match=r"HalfCallback.*has no at_epoch_end method"):
        trainer.register_callback(HalfCallback())
    with pytest.raises(AssertionError, match="no at_epoch_begin and no at_epoch_end"):
        trainer.register_callback(42)

    class Misspelt:
        @hookimpl
        def epochal_at_epoch_ends(self, trainer):
            pass

    with pytest.raises(PluginError, match="unknown hook 'epochal_at_epoch_ends'; did you mean"):
        trainer.register_callback(Misspelt())
    assert trainer.callbacks == []


def test_delira_style_callbacks_without_kwargs(managers, make_trainer):
    class DeliraCallback:
        def __init__(self):
            self.seen = []

        def at_epoch_begin(self, trainer, curr_epoch):
            return {}

        def at_epoch_end(self, trainer, val_metrics, curr_epoch):
            self.seen.append((curr_epoch, sorted(val_metrics)))
            return None

    callback = DeliraCallback()
    trainer = make_trainer()
    trainer.register_callback(callback)
    train, valid = managers()
    trainer.train(2, train, valid)
    assert callback.seen == [(1, ["val_CE", "val_accuracy"]), (2, ["val_CE", "val_accuracy"])]


def test_callback_results_go_to_state_not_attributes(managers, make_trainer):
    class Meddler(AbstractCallback):
        def at_epoch_end(self, trainer, **kwargs):
            return {"module": None, "lr": 0.0, "note": "hello"}

    trainer = make_trainer(callbacks=[Meddler()])
    train, valid = managers()
    trainer.train(1, train, valid)
    assert trainer.module is not None and trainer.lr == 1.0
    assert trainer.state["note"] == "hello"


def test_callback_returning_a_non_dict_is_named(managers, make_trainer):
    class Listy(AbstractCallback):
        def at_epoch_end(self, trainer, **kwargs):
            return ["stop"]

    trainer = make_trainer(callbacks=[Listy()])
    train, valid = managers()
    with pytest.raises(TypeError, match=r"Listy\.at_epoch_end returned list"):
        trainer.train(1, train, valid)


def test_abstract_methods_raise_not_implemented():
    trainer = AbstractNetworkTrainer()
    for call in (
        lambda: trainer._train_single_epoch([], 1),
        lambda: trainer.predict([]),
        lambda: trainer.save_state("x"),
        lambda: AbstractNetworkTrainer.load_state("x"),
    ):
        with pytest.raises(NotImplementedError):
            call()


def test_workers_stop_when_the_backend_fails_mid_epoch(managers, make_trainer):
    import glob
    import os

    class FailingOnBatch3:
        @hookimpl
        def epochal_at_batch_end(self, batch_nr):
            if batch_nr == 3:
                raise RuntimeError("backend blew up")

    trainer = make_trainer(callbacks=[FailingOnBatch3()])
    train, valid = managers(workers=2)
    # Keep the traceback alive, as a notebook or a logger does: the frames still hold the
    # batch generator, so only an explicit close stops its workers.
    with pytest.raises(RuntimeError, match="backend blew up") as failure:
        trainer.train(2, train, valid)
    assert failure.traceback
    children = []
    for path in glob.glob(f"/proc/{os.getpid()}/task/*/children"):
        with open(path) as handle:
            children += handle.read().split()
    assert children == []  # closed at once, not left to the garbage collector


def test_callback_state_follows_the_callback_not_its_position(managers, make_trainer, tmp_path):
    class Extra(AbstractCallback):
        pass

    train, valid = managers()
    first = make_trainer(lr=0.0, save_path=tmp_path, callbacks=[Patience(100), Patience(100)])
    first.train(2, train, valid, val_score_key="CE", val_score_mode="lowest")
    assert sorted(first.load_state(str(tmp_path / "checkpoint_last"))["callbacks"]) == [
        "Patience",
        "Patience-2",
    ]
    second = Patience(100)
    resumed = make_trainer(save_path=tmp_path, callbacks=[Extra(), Patience(100), second])
    resumed.update_state(str(tmp_path / "checkpoint_last"))
    assert second.bad_epochs == 1  # a new callback in front moved nothing


def test_state_nobody_claims_is_reported(managers, make_trainer, tmp_path):
    train, valid = managers()
    make_trainer(save_path=tmp_path, callbacks=[Patience(100)]).train(1, train, valid)
    with pytest.warns(UserWarning, match=r"state for \['Patience'\], which no registered callback"):
        make_trainer().update_state(str(tmp_path / "checkpoint_last"))


def test_callbacks_run_in_registration_order(managers, make_trainer):
    calls = []

    class First(AbstractCallback):
        def at_epoch_end(self, trainer, **kwargs):
            calls.append("first")
            return {"set_by_first": True}

    class Second(AbstractCallback):
        def at_epoch_end(self, trainer, **kwargs):
            calls.append(("second", trainer.state.get("set_by_first")))

        def at_batch_end(self, trainer, batch_nr, **kwargs):
            calls.append(("batch", batch_nr)) if batch_nr == 0 else None

    class Third(AbstractCallback):
        def at_epoch_end(self, trainer, **kwargs):
            calls.append("third")

        def at_batch_end(self, trainer, batch_nr, **kwargs):
            calls.append(("batch-third", batch_nr)) if batch_nr == 0 else None

    trainer = make_trainer(callbacks=[First(), Second(), Third()])
    train, valid = managers()
    trainer.train(1, train, valid, val_score_key="accuracy", val_score_mode="highest")
    assert calls == [("batch", 0), ("batch-third", 0), "first", ("second", True), "third"]
    assert (trainer.val_score_key, trainer.val_score_mode) == ("accuracy", "highest")


def test_a_callback_without_state_yet_still_claims_its_checkpoint_state(
    managers, make_trainer, tmp_path
):
    class LazyState(AbstractCallback):
        def __init__(self):
            self.value = None

        def at_epoch_end(self, trainer, epoch, **kwargs):
            self.value = epoch

        def state_dict(self):
            return None if self.value is None else {"value": self.value}

        def load_state_dict(self, state):
            self.value = state["value"]

    train, valid = managers()
    make_trainer(save_path=tmp_path, callbacks=[LazyState()]).train(2, train, valid)
    lazy = LazyState()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_trainer(callbacks=[lazy]).update_state(str(tmp_path / "checkpoint_last"))
    assert lazy.value == 2
