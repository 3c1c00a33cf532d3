"""A stop requested mid-epoch (``trainer.request_stop``, what SIGTERM/Ctrl-C do) writes
``checkpoint_last``, and resuming it ends with the weights of an uninterrupted run: on every
backend, with and without augmentation workers."""

from __future__ import annotations

import numpy as np
import pytest

from epochal.loop.callbacks import AbstractCallback
from epochal.loop.interrupt import TrainingInterrupted


class StopAt(AbstractCallback):
    """Requests a stop after batch ``at = (epoch, batch_nr)``; ``None`` never (same code path)."""

    def __init__(self, at=None):
        self.at = at

    def at_batch_end(self, trainer, epoch=0, batch_nr=0, **kwargs):
        if (epoch, batch_nr) == self.at:
            trainer.request_stop("test")


def _numpy(make_trainer, save_path, callbacks):
    trainer = make_trainer(save_path=save_path, callbacks=callbacks)
    return trainer, lambda: [trainer.module.weight.copy(), trainer.module.bias.copy()]


def _torch(make_trainer, save_path, callbacks):
    torch = pytest.importorskip("torch")
    from epochal_torch.models import MLP
    from epochal_torch.trainer import PyTorchNetworkTrainer

    torch.manual_seed(0)
    trainer = PyTorchNetworkTrainer(
        MLP(64, [32], 10, dropout=0.3),
        save_path,
        {"CE": torch.nn.CrossEntropyLoss()},
        torch.optim.Adam,
        {"lr": 0.01},
        callbacks=callbacks,
    )
    return trainer, lambda: [p.detach().clone().numpy() for p in trainer.module.parameters()]


def _tf(make_trainer, save_path, callbacks):
    keras = pytest.importorskip("keras")
    from epochal_tf.models import MLP
    from epochal_tf.trainer import TfNetworkTrainer

    keras.utils.set_random_seed(0)
    trainer = TfNetworkTrainer(
        MLP(64, [32], 10, dropout=0.3),
        save_path,
        {"CE": keras.losses.SparseCategoricalCrossentropy(from_logits=True)},
        "adam",
        {"learning_rate": 0.01},
        callbacks=callbacks,
    )
    return trainer, lambda: [v.numpy() for v in trainer.module.weights]


BACKENDS = {"numpy": _numpy, "torch": _torch, "tf": _tf}


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_stop_mid_epoch_and_resume_equals_an_uninterrupted_run(
    backend, workers, managers, make_trainer, tmp_path
):
    build = BACKENDS[backend]
    if workers and backend != "torch":
        pytest.skip("workers are the data pipeline's business: one backend suffices")
    train, valid = managers(workers=workers)

    whole, whole_weights = build(make_trainer, tmp_path / "whole", [StopAt()])
    whole.train(3, train, valid, val_score_key="CE", val_score_mode="lowest")

    part, _ = build(make_trainer, tmp_path / "part", [StopAt((2, 3))])
    part.interruptible = True  # what stop_on_signals sets
    with pytest.raises(TrainingInterrupted) as info:
        part.train(3, train, valid, val_score_key="CE", val_score_mode="lowest")
    stop = info.value
    assert (stop.reason, stop.epoch, stop.batches_done) == ("test", 2, 4)
    assert str(stop) == "stopped by test in epoch 2, after batch 4"
    assert stop.checkpoint == str(tmp_path / "part" / "checkpoint_last")

    again, again_weights = build(make_trainer, tmp_path / "part", [StopAt()])
    again.update_state(stop.checkpoint)
    assert again.start_epoch == 2
    again.train(3, train, valid, val_score_key="CE", val_score_mode="lowest")
    for expected, got in zip(whole_weights(), again_weights(), strict=True):
        np.testing.assert_array_equal(expected, got)  # bitwise, on the CPU
    assert again.best_epoch == whole.best_epoch is not None


def test_a_stop_between_epochs_resumes_at_the_next_epoch(managers, make_trainer, tmp_path):
    train, valid = managers()

    class StopAtEpochEnd(AbstractCallback):
        def at_epoch_end(self, trainer, epoch=0, **kwargs):
            if epoch == 1:
                trainer.request_stop("test")

    trainer = make_trainer(save_path=tmp_path, callbacks=[StopAtEpochEnd()])
    trainer.interruptible = True
    with pytest.raises(TrainingInterrupted) as info:
        trainer.train(3, train, valid)
    assert (info.value.epoch, info.value.batches_done) == (2, 0)
    assert str(info.value) == "stopped by test before epoch 2"
    resumed = make_trainer(save_path=tmp_path)
    resumed.update_state(str(tmp_path / "checkpoint_last"))
    assert resumed.start_epoch == 2 and resumed._resume_batches == 0


def test_without_interruptible_a_stop_request_waits(managers, make_trainer, tmp_path):
    """Outside ``stop_on_signals`` the loop does not look at the flag per batch (no cost)."""
    train, _ = managers()
    trainer = make_trainer(save_path=tmp_path, callbacks=[StopAt((1, 0))])
    trainer.train(2, train)  # no exception: nobody made it interruptible
    assert trainer.stop_requested == "test"
