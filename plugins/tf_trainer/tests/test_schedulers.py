"""The Keras epoch rules (``tf_*``) end to end on the real TfNetworkTrainer: real training.

The LR recorder is a plugin marked ``trylast`` so it sees what the rule set. Nothing here needs
epochal-callbacks.
"""

from __future__ import annotations

import functools
import math
import os
import warnings
from typing import Any

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
keras = pytest.importorskip("keras")
pytest.importorskip("tensorflow")

from epochal import hookimpl  # noqa: E402
from epochal.loop.callbacks import SupervisedTrainerView  # noqa: E402
from epochal.plugins.registry import get_callback  # noqa: E402
from epochal_tf.schedulers import (  # noqa: E402
    CosineDecay,
    ReduceOnPlateau,
    StepDecay,
    WarmUp,
)

BATCH_SIZE = 128  # 1437 training digits: 12 batches an epoch
N_BATCHES = 12


@functools.cache
def _keras_backend() -> Any:
    """The real TfNetworkTrainer on a Dense(10) over 64 features, SGD, cross-entropy ("CE")."""
    from epochal_tf.trainer import TfNetworkTrainer

    def accuracy(predictions, labels):
        hits = keras.ops.argmax(predictions, 1) == keras.ops.cast(labels, "int32")
        return keras.ops.mean(keras.ops.cast(hits, "float32"))

    def build(save_path=None, callbacks=None, lr=0.1):
        keras.utils.set_random_seed(0)
        network = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10)])
        lr = float(lr) if isinstance(lr, (int, float)) else lr  # or a LearningRateSchedule
        return TfNetworkTrainer(
            network,
            save_path,
            {"CE": keras.losses.SparseCategoricalCrossentropy(from_logits=True)},
            keras.optimizers.SGD,
            {"learning_rate": lr},
            metrics={"accuracy": accuracy},
            callbacks=callbacks,
        )

    return build


@pytest.fixture
def keras_trainer():
    """``keras_trainer(save_path=None, callbacks=None, lr=0.1)``; lr may be a schedule."""
    return _keras_backend()


def _rates(trainer: Any) -> dict[str, float]:
    rates = {}
    for name, optimizer in trainer.optimizers.items():
        try:
            rates[name] = float(optimizer.learning_rate)
        except (TypeError, ValueError):  # a schedule object: the rate lives per step
            continue
    return rates


class LRRecorder:
    """Records each optimizer's rate at each epoch begin, after every callback has run."""

    def __init__(self) -> None:
        self.epochs: list[dict[str, float]] = []

    @hookimpl(trylast=True)
    def epochal_at_epoch_begin(self, trainer: Any) -> None:
        self.epochs.append(_rates(trainer))

    def of(self, name: str = "default") -> list[float]:
        """The rate of optimizer ``name`` at each epoch begin."""
        return [rates[name] for rates in self.epochs]


class BatchLRRecorder(LRRecorder):
    """Also records the rates after each training batch (so it adds a batch hook)."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[dict[str, float]] = []

    @hookimpl(trylast=True)
    def epochal_at_batch_end(self, trainer: Any) -> None:
        self.batches.append(_rates(trainer))


@pytest.fixture
def lr_recorder():
    """``lr_recorder(per_batch=False)`` -> a fresh recorder, registered as a callback."""
    return lambda per_batch=False: BatchLRRecorder() if per_batch else LRRecorder()


def _train(trainer_cls, managers, callbacks, num_epochs, **trainer_kwargs):
    train, valid = managers(batch_size=BATCH_SIZE)
    trainer = trainer_cls(callbacks=callbacks, **trainer_kwargs)
    trainer.train(num_epochs, train, valid, val_score_key="CE", val_score_mode="lowest")
    return trainer


def _cosine(epoch, base=0.1, minimum=0.01, total=4):
    return minimum + (base - minimum) * 0.5 * (
        1 + math.cos(math.pi * min(epoch - 1, total) / total)
    )


RULES = {
    "step": (lambda: StepDecay(2, gamma=0.5), [0.1, 0.1, 0.05, 0.05, 0.025]),
    "cosine": (lambda: CosineDecay(4, min_lr=0.01), [0.1, 0.08682, 0.055, 0.02318, 0.01]),
    "warmup": (lambda: WarmUp(2), [0.05, 0.1, 0.1, 0.1, 0.1]),
    "warmup_then_step": (lambda: WarmUp(2, then=StepDecay(2, 0.5)), [0.05, 0.1, 0.1, 0.1, 0.05]),
}


def test_registered_by_the_tf_plugin_under_their_names():
    from epochal.plugins.registry import callbacks

    names = ("tf_step_decay", "tf_cosine_decay", "tf_warmup", "tf_reduce_on_plateau")
    classes = (StepDecay, CosineDecay, WarmUp, ReduceOnPlateau)
    assert [get_callback(name) for name in names] == list(classes)
    assert {callbacks().entries[name].plugin for name in names} == {"tf"}


def test_cosine_hand_values_match_the_formula():
    assert [_cosine(epoch) for epoch in range(1, 6)] == pytest.approx(RULES["cosine"][1], abs=1e-5)


@pytest.mark.parametrize("rule", sorted(RULES))
def test_rule_sets_the_rate_of_each_epoch(rule, keras_trainer, managers, lr_recorder):
    make_rule, expected = RULES[rule]
    recorder = lr_recorder()
    trainer = _train(keras_trainer, managers, [make_rule(), recorder], 5, lr=0.1)
    assert recorder.of() == pytest.approx(expected, rel=1e-4)
    assert trainer._batch_end_hook is None  # epoch rules add no per-batch call


@pytest.mark.parametrize(
    ("cooldown", "expected"), [(0, [1, 1, 1, 0.5, 0.5, 0.25]), (1, [1] * 3 + [0.5] * 3)]
)
def test_reduce_on_plateau_lowers_the_rate_after_patience(
    cooldown, expected, keras_trainer, managers, lr_recorder
):
    # A rate this small cannot move val_CE by min_delta: every epoch after the first stalls.
    rule = ReduceOnPlateau("val_CE", factor=0.5, patience=2, min_delta=1e-3, cooldown=cooldown)
    recorder = lr_recorder()
    _train(keras_trainer, managers, [rule, recorder], 6, lr=1e-6)
    assert recorder.of() == pytest.approx([1e-6 * f for f in expected], rel=1e-4)


def test_reduce_on_plateau_keeps_the_rate_while_improving(keras_trainer, managers, lr_recorder):
    rule, recorder = ReduceOnPlateau("val_accuracy", mode="highest", patience=1), lr_recorder()
    _train(keras_trainer, managers, [rule, recorder], 3, lr=0.5)
    assert recorder.of() == pytest.approx([0.5] * 3) and rule.best > 0.5 and rule.wait == 0


def test_reduce_on_plateau_names_the_metrics_there_are(keras_trainer, managers):
    with pytest.raises(KeyError, match=r"no metric 'val_loss'.*'val_CE'"):
        _train(keras_trainer, managers, [ReduceOnPlateau("val_loss")], 1)


RESUMED = {
    "step": lambda: StepDecay(1, gamma=0.5),
    # with lr 1e-6 val_CE stalls: best after epoch 3, one bad epoch at the checkpoint (4), cut at 5
    "plateau": lambda: WarmUp(
        2, then=ReduceOnPlateau("val_CE", factor=0.5, patience=2, min_delta=1e-3)
    ),
}


@pytest.mark.parametrize("case", sorted(RESUMED))
def test_resume_continues_without_compounding(case, keras_trainer, managers, lr_recorder, tmp_path):
    lr = 1e-6 if case == "plateau" else 0.1
    whole, whole_rates = RESUMED[case](), lr_recorder()
    _train(keras_trainer, managers, [whole, whole_rates], 6, lr=lr)

    first, first_rates = RESUMED[case](), lr_recorder()
    _train(keras_trainer, managers, [first, first_rates], 4, lr=lr, save_path=tmp_path)
    resumed, resumed_rates = RESUMED[case](), lr_recorder()
    train, valid = managers(batch_size=BATCH_SIZE)
    trainer = keras_trainer(callbacks=[resumed, resumed_rates], lr=lr)
    with warnings.catch_warnings():  # the scheduler claims its checkpoint state
        warnings.simplefilter("error")
        trainer.update_state(os.path.join(tmp_path, "checkpoint_last"))
    trainer.train(6, train, valid, val_score_key="CE", val_score_mode="lowest")

    assert first_rates.of() + resumed_rates.of() == pytest.approx(whole_rates.of(), rel=1e-6)
    assert len(set(whole_rates.of())) > 1  # the schedule did change the rate
    assert resumed.state_dict() == whole.state_dict()  # base rate from the checkpoint, not re-read


def test_learning_rate_schedule_conflict_is_refused(keras_trainer, managers):
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=1, decay_rate=0.9)
    with pytest.raises(
        TypeError, match=r"from a schedule \(ExponentialDecay\).*Use one of the two"
    ):
        _train(keras_trainer, managers, [StepDecay(1)], 1, lr=schedule)


def test_learning_rate_schedule_alone_works_per_step(keras_trainer, managers, lr_recorder):
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=1, decay_rate=0.9)
    recorder = lr_recorder(per_batch=True)
    _train(keras_trainer, managers, [recorder], 2, lr=schedule)
    rates = [r["default"] for r in recorder.batches]
    assert rates == pytest.approx([0.1 * 0.9 ** (step + 1) for step in range(2 * N_BATCHES)])


def test_optimizer_selection_all_or_by_name(keras_trainer, managers):
    trainer = _train(keras_trainer, managers, [StepDecay(1, optimizer=None)], 1, lr=0.1)
    assert trainer.callbacks[0].base_lrs == pytest.approx({"default": 0.1})
    assert isinstance(trainer, SupervisedTrainerView)  # what the rules are written against
    with pytest.raises(KeyError, match=r"no optimizer 'encoder'; it has \['default'\]"):
        _train(keras_trainer, managers, [StepDecay(1, optimizer="encoder")], 1)


def test_torch_optimizer_is_refused(managers):
    torch = pytest.importorskip("torch")
    epochal_torch = pytest.importorskip("epochal_torch.trainer")
    trainer = epochal_torch.PyTorchNetworkTrainer(
        torch.nn.Linear(64, 10),
        None,
        {"CE": torch.nn.CrossEntropyLoss()},
        torch.optim.SGD,
        {"lr": 0.1},
        callbacks=[CosineDecay(3)],
    )
    train, valid = managers(batch_size=BATCH_SIZE)
    with pytest.raises(TypeError, match=r"not a Keras 3 optimizer.*TorchLRScheduler"):
        trainer.train(1, train, valid)


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: StepDecay(0), ValueError, r"step_size must be an integer >= 1"),
        (lambda: StepDecay(1, gamma=0), ValueError, r"gamma must be > 0"),
        (lambda: CosineDecay(4, min_lr=-1), ValueError, r"min_lr must be >= 0"),
        (lambda: WarmUp(2, then=0.1), TypeError, r"then must be another epoch rule"),
        (lambda: ReduceOnPlateau("val_CE", factor=1.0), ValueError, r"factor must be between"),
        (lambda: ReduceOnPlateau("val_CE", mode="min"), ValueError, r"'highest' or 'lowest'"),
        (lambda: ReduceOnPlateau("val_CE", patience=-1), ValueError, r"patience must be"),
    ],
)
def test_configuration_errors_say_what_to_do(build, error, message):
    with pytest.raises(error, match=message):
        build()
