"""TorchLRScheduler (``torch_lr_scheduler``) end to end on a tiny torch backend: real training.

The backend here is a TEST BACKEND (the least a backend must do: an ``optimizers`` dict, one
epoch, ``predict``, the checkpoint primitives) on a linear model over digits, so that a
test can give it two optimizers; the LR recorder is a plugin marked ``trylast`` so it sees
what the scheduler set. Nothing here needs epochal-callbacks.
"""

from __future__ import annotations

import functools
import os
import warnings
from typing import Any

import pytest
import torch

from epochal import hookimpl
from epochal.loop.callbacks import SupervisedTrainerView
from epochal.loop.trainer import AbstractNetworkTrainer
from epochal.plugins.registry import get_callback
from epochal.runs.files import atomic_write
from epochal_torch.schedulers import TorchLRScheduler

BATCH_SIZE = 128  # 1437 training digits: 12 batches an epoch
N_BATCHES = 12


def _xy(batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    data, labels = batch["data"], batch["label"]
    return torch.from_numpy(data.reshape(len(data), -1)), torch.from_numpy(labels.reshape(-1))


@functools.cache
def _linear_backend() -> type:
    class TorchTestTrainer(AbstractNetworkTrainer):
        """TEST BACKEND: Linear(64, 10), SGD per optimizer, cross-entropy ("CE")."""

        def __init__(self, save_path=None, callbacks=None, lr=0.1, split_optimizers=False):
            super().__init__(0, callbacks, save_path=save_path)
            torch.manual_seed(0)
            self.module = torch.nn.Linear(64, 10)
            sgd, module = torch.optim.SGD, self.module
            self.optimizers = (
                {"weight": sgd([module.weight], lr=lr), "bias": sgd([module.bias], lr=2 * lr)}
                if split_optimizers
                else {"default": sgd(module.parameters(), lr=lr)}
            )
            self._setup()

        def _train_single_epoch(self, batchgen, epoch):
            loss_sum, correct, seen = torch.zeros(()), torch.zeros(()), 0
            for batch_nr, batch in enumerate(batchgen):
                data, labels = _xy(batch)
                logits = self.module(data)
                loss = torch.nn.functional.cross_entropy(logits, labels)
                for optimizer in self.optimizers.values():
                    optimizer.zero_grad()
                loss.backward()
                for optimizer in self.optimizers.values():
                    optimizer.step()
                loss = loss.detach()
                loss_sum += loss * len(labels)
                correct += (logits.argmax(1) == labels).sum()
                seen += len(labels)
                if self._batch_end_hook is not None:
                    self._batch_end_hook(
                        trainer=self,
                        epoch=epoch,
                        batch_nr=batch_nr,
                        losses={"CE": loss},
                        metrics={},
                    )
            return {"CE": float(loss_sum) / seen, "accuracy": float(correct) / seen}

        @torch.no_grad()
        def predict(self, batchgen, batch_size=None):
            outputs, labels_all = [], []
            for batch in batchgen:
                data, labels = _xy(batch)
                outputs.append(self.module(data))
                labels_all.append(labels)
            logits, labels = torch.cat(outputs), torch.cat(labels_all)
            metrics = {
                "CE": float(torch.nn.functional.cross_entropy(logits, labels)),
                "accuracy": float((logits.argmax(1) == labels).float().mean()),
            }
            return logits.softmax(1).numpy(), [labels.numpy()], metrics

        checkpoint_suffix = ".pt"

        @staticmethod
        def write_checkpoint(path, state):
            with atomic_write(path) as handle:
                torch.save(state, handle)
            return path

        @staticmethod
        def read_checkpoint(path):
            return torch.load(path, weights_only=True)

        def network_state(self):
            return {"model": self.module.state_dict()}

        def load_network_state(self, state):
            self.module.load_state_dict(state["model"])

        def training_state(self):
            return {"optimizers": {name: o.state_dict() for name, o in self.optimizers.items()}}

        def load_training_state(self, state):
            for name, optimizer in self.optimizers.items():
                optimizer.load_state_dict(state["optimizers"][name])

    return TorchTestTrainer


@pytest.fixture
def linear_trainer():
    """``linear_trainer(save_path=None, callbacks=None, lr=0.1, split_optimizers=False)``."""
    return _linear_backend()


def _rates(trainer: Any) -> dict[str, float]:
    return {name: float(opt.param_groups[0]["lr"]) for name, opt in trainer.optimizers.items()}


class LRRecorder:
    """Records each optimizer's rate at each epoch begin, after every callback has run.

    A plugin marked ``trylast`` rather than a callback: it must see what the scheduler set.
    """

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


def _train(trainer_cls, managers, scheduler, recorder, num_epochs, **trainer_kwargs):
    train, valid = managers(batch_size=BATCH_SIZE)
    assert train.n_batches == N_BATCHES
    trainer = trainer_cls(callbacks=[scheduler, recorder], **trainer_kwargs)
    trainer.train(num_epochs, train, valid, val_score_key="CE", val_score_mode="lowest")
    return trainer


def test_registered_by_the_torch_plugin_under_its_name():
    from epochal.plugins.registry import callbacks

    assert get_callback("torch_lr_scheduler") is TorchLRScheduler
    assert callbacks().entries["torch_lr_scheduler"].plugin == "torch"


def test_the_lr_scheduler_cls_argument_uses_this_package(torch_trainer):
    """delira's ``lr_scheduler_cls`` becomes this package's callback; the trainer is the typed
    view callbacks are written against (its network and optimizers included)."""
    trainer = torch_trainer(lr_scheduler_cls="StepLR", lr_scheduler_params={"step_size": 2})
    assert [type(callback) for callback in trainer.callbacks] == [TorchLRScheduler]
    assert isinstance(trainer, SupervisedTrainerView)


def test_step_lr_changes_the_rate_at_the_right_epochs(linear_trainer, managers, lr_recorder):
    scheduler, recorder = TorchLRScheduler("StepLR", step_size=2, gamma=0.1), lr_recorder()
    trainer = _train(linear_trainer, managers, scheduler, recorder, 5, lr=0.1)
    assert recorder.of() == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001])
    assert scheduler.schedulers["default"].last_epoch == 5
    assert trainer._batch_end_hook is None  # epoch-wise scheduling adds no per-batch call


@pytest.mark.parametrize("how", ["name", "class", "path"])
def test_scheduler_given_by_name_class_or_path(how, linear_trainer, managers, lr_recorder):
    given = {
        "name": "ExponentialLR",
        "class": torch.optim.lr_scheduler.ExponentialLR,
        "path": "torch.optim.lr_scheduler:ExponentialLR",
    }[how]
    recorder = lr_recorder()
    _train(linear_trainer, managers, TorchLRScheduler(given, gamma=0.5), recorder, 3, lr=0.1)
    assert recorder.of() == pytest.approx([0.1, 0.05, 0.025])


def test_per_batch_scheduler_steps_once_per_batch(linear_trainer, managers, lr_recorder):
    scheduler = TorchLRScheduler("LambdaLR", step_on="batch", lr_lambda=lambda step: 1 / (1 + step))
    recorder = lr_recorder(per_batch=True)
    _train(linear_trainer, managers, scheduler, recorder, 2, lr=0.1)
    assert scheduler.schedulers["default"].last_epoch == 2 * N_BATCHES
    assert recorder.of() == pytest.approx([0.1, 0.1 / (1 + N_BATCHES)])
    per_batch = [rates["default"] for rates in recorder.batches]
    assert per_batch == pytest.approx([0.1 / (2 + i) for i in range(2 * N_BATCHES)])


def test_one_cycle_runs_its_whole_cycle_per_batch(linear_trainer, managers, lr_recorder):
    epochs = 2
    scheduler = TorchLRScheduler(
        "OneCycleLR", step_on="batch", max_lr=1.0, epochs=epochs, steps_per_epoch=N_BATCHES
    )
    recorder = lr_recorder(per_batch=True)
    _train(linear_trainer, managers, scheduler, recorder, epochs, lr=0.1)
    rates = [r["default"] for r in recorder.batches]
    assert len(rates) == epochs * N_BATCHES and max(rates) == pytest.approx(1.0, rel=0.05)
    assert rates[-1] < rates[0] < max(rates)  # up, then annealed below the start


@pytest.mark.parametrize(("mode", "monitor"), [("min", "val_CE"), ("highest", "val_accuracy")])
def test_reduce_on_plateau_lowers_the_rate_after_patience(
    mode, monitor, linear_trainer, managers, lr_recorder
):
    # A rate this small cannot move the validation scores by the 1e-4 threshold: a sure stall.
    scheduler = TorchLRScheduler(
        "ReduceLROnPlateau", monitor=monitor, mode=mode, factor=0.5, patience=2
    )
    recorder = lr_recorder()
    _train(linear_trainer, managers, scheduler, recorder, 6, lr=1e-7)
    # epoch 1 sets the best; epochs 2-4 are bad, the third (> patience) reduces.
    assert recorder.of() == pytest.approx([1e-7] * 4 + [5e-8] * 2)
    assert scheduler.schedulers["default"].mode == {"min": "min", "highest": "max"}[mode]


def test_reduce_on_plateau_names_the_metrics_there_are(linear_trainer, managers, lr_recorder):
    scheduler = TorchLRScheduler("ReduceLROnPlateau", monitor="val_loss")
    with pytest.raises(KeyError, match=r"no metric 'val_loss'.*'val_CE'"):
        _train(linear_trainer, managers, scheduler, lr_recorder(), 1)


RESUMED = {
    "step_lr": lambda: TorchLRScheduler("StepLR", step_size=1, gamma=0.5),
    "lambda_per_batch": lambda: TorchLRScheduler(
        "LambdaLR", step_on="batch", lr_lambda=lambda step: 0.9**step
    ),
    "plateau": lambda: TorchLRScheduler(
        "ReduceLROnPlateau", monitor="val_CE", factor=0.5, patience=2
    ),
}


def _without_functions(state):
    return {key: value for key, value in state.items() if key != "lr_lambdas"}


@pytest.mark.parametrize("case", sorted(RESUMED))
def test_resume_continues_the_schedule(case, linear_trainer, managers, lr_recorder, tmp_path):
    lr = 1e-7 if case == "plateau" else 0.1
    whole, whole_rates = RESUMED[case](), lr_recorder()
    whole_trainer = _train(linear_trainer, managers, whole, whole_rates, 5, lr=lr)

    first, first_rates = RESUMED[case](), lr_recorder()
    _train(linear_trainer, managers, first, first_rates, 2, lr=lr, save_path=tmp_path)
    resumed, resumed_rates = RESUMED[case](), lr_recorder()
    train, valid = managers(batch_size=BATCH_SIZE)
    trainer = linear_trainer(callbacks=[resumed, resumed_rates], lr=lr)
    with warnings.catch_warnings():  # the scheduler claims its checkpoint state
        warnings.simplefilter("error")
        trainer.update_state(os.path.join(tmp_path, "checkpoint_last"))
    trainer.train(5, train, valid, val_score_key="CE", val_score_mode="lowest")

    assert first_rates.of() + resumed_rates.of() == whole_rates.of()
    assert len(set(whole_rates.of())) > 1  # the schedule did change the rate
    assert _without_functions(resumed.schedulers["default"].state_dict()) == _without_functions(
        whole.schedulers["default"].state_dict()
    )
    final_lr = trainer.optimizers["default"].param_groups[0]["lr"]
    assert final_lr == whole_trainer.optimizers["default"].param_groups[0]["lr"]


def test_one_scheduler_per_optimizer(linear_trainer, managers, lr_recorder):
    scheduler = TorchLRScheduler("StepLR", optimizer=None, step_size=1, gamma=0.5)
    recorder = lr_recorder()
    _train(linear_trainer, managers, scheduler, recorder, 3, lr=0.1, split_optimizers=True)
    assert sorted(scheduler.schedulers) == ["bias", "weight"]
    assert recorder.of("weight") == pytest.approx([0.1, 0.05, 0.025])
    assert recorder.of("bias") == pytest.approx([0.2, 0.1, 0.05])


def test_one_named_optimizer_of_several(linear_trainer, managers, lr_recorder):
    scheduler, recorder = TorchLRScheduler("StepLR", optimizer="bias", step_size=1), lr_recorder()
    _train(linear_trainer, managers, scheduler, recorder, 2, lr=0.1, split_optimizers=True)
    assert recorder.of("weight") == pytest.approx([0.1, 0.1])
    assert recorder.of("bias") == pytest.approx([0.2, 0.02])


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"scheduler_cls": "StepLr"},
            ValueError,
            r"unknown torch scheduler 'StepLr': did you mean ",
        ),
        ({"scheduler_cls": "SequentialLR"}, ValueError, r"factory"),
        ({"scheduler_cls": 42}, TypeError, r"step\(\) method"),
        ({"scheduler_cls": "StepLR", "step_on": "iteration"}, ValueError, r"step_on must be"),
        ({"scheduler_cls": "ReduceLROnPlateau"}, ValueError, r"needs monitor=<metric>"),
        (
            {"scheduler_cls": "ReduceLROnPlateau", "monitor": "val_CE", "step_on": "batch"},
            ValueError,
            r"use step_on='epoch'",
        ),
        ({"scheduler_cls": "StepLR", "monitor": "val_CE"}, ValueError, r"StepLR takes no metric"),
    ],
)
def test_configuration_errors_say_what_to_do(kwargs, error, message):
    with pytest.raises(error, match=message):
        TorchLRScheduler(**kwargs)


def test_a_factory_builds_wrapping_schedulers(linear_trainer, managers, lr_recorder):
    def warmup_then_step(optimizer):
        lr_scheduler = torch.optim.lr_scheduler
        warmup = lr_scheduler.LinearLR(optimizer, start_factor=0.5, total_iters=1)
        decay = lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
        return lr_scheduler.SequentialLR(optimizer, [warmup, decay], milestones=[1])

    recorder = lr_recorder()
    _train(linear_trainer, managers, TorchLRScheduler(warmup_then_step), recorder, 3, lr=0.1)
    assert recorder.of() == pytest.approx([0.05, 0.1, 0.05])


def test_trainer_without_optimizers_is_named(make_trainer, managers):
    train, valid = managers(batch_size=BATCH_SIZE)
    trainer = make_trainer(callbacks=[TorchLRScheduler("StepLR", step_size=1)])
    with pytest.raises(TypeError, match=r"NumpyNetworkTrainer has none.*exposes its optimizers"):
        trainer.train(1, train, valid)


def test_missing_optimizer_lists_those_there_are(linear_trainer, managers, lr_recorder):
    scheduler = TorchLRScheduler("StepLR", optimizer="generator", step_size=1)
    with pytest.raises(KeyError, match=r"no optimizer 'generator'; it has \['bias', 'weight'\]"):
        _train(linear_trainer, managers, scheduler, lr_recorder(), 1, split_optimizers=True)


def test_checkpoint_from_other_optimizers_is_refused(linear_trainer, managers, tmp_path):
    train, valid = managers(batch_size=BATCH_SIZE)
    trainer = linear_trainer(
        callbacks=[TorchLRScheduler("StepLR", optimizer=None, step_size=1)],
        save_path=tmp_path,
        split_optimizers=True,
    )
    trainer.train(1, train, valid)
    other = TorchLRScheduler("StepLR", optimizer="weight", step_size=1)
    resumed = linear_trainer(callbacks=[other], split_optimizers=True)
    resumed.update_state(os.path.join(tmp_path, "checkpoint_last"))
    with pytest.raises(ValueError, match=r"\['bias', 'weight'\], this run schedules \['weight'\]"):
        resumed.train(2, train, valid)
