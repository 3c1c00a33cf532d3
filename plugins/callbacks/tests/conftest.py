"""Fixtures for the callback tests: tiny real torch and Keras backends, an LR recorder.

The torch one is a TEST BACKEND (the least a backend must do: ``optimizers`` dict,
``_train_single_epoch``, ``predict``, checkpoints with ``_core_state``) on a linear model over
digits; the Keras one is the real ``TfNetworkTrainer`` (epochal-tf) on the same linear model.
They are built inside functions so that torch and tensorflow are imported only by the tests
that use them.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest

from epochal import hookimpl
from epochal.loop.trainer import AbstractNetworkTrainer
from epochal.runs.files import atomic_write
from epochal_callbacks._util import current_lrs


def _xy(batch: dict) -> tuple[np.ndarray, np.ndarray]:
    return batch["data"].reshape(len(batch["data"]), -1), batch["label"].reshape(-1)


@functools.cache
def _torch_backend() -> type:
    import torch

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
                data, labels = (torch.from_numpy(a) for a in _xy(batch))
                logits = self.module(data)
                loss = torch.nn.functional.cross_entropy(logits, labels)
                for optimizer in self.optimizers.values():
                    optimizer.zero_grad()
                loss.backward()
                for optimizer in self.optimizers.values():
                    optimizer.step()
                loss = loss.detach()  # what the hook gets: a device tensor, read only if wanted
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
                data, labels = (torch.from_numpy(a) for a in _xy(batch))
                outputs.append(self.module(data))
                labels_all.append(labels)
            logits, labels = torch.cat(outputs), torch.cat(labels_all)
            metrics = {
                "CE": float(torch.nn.functional.cross_entropy(logits, labels)),
                "accuracy": float((logits.argmax(1) == labels).float().mean()),
            }
            return logits.softmax(1).numpy(), [labels.numpy()], metrics

        def _at_training_end(self, *args, **kwargs):
            super()._at_training_end()
            return self.module

        def save_state(self, file_name, epoch=0, **kwargs):
            state = {
                "model": self.module.state_dict(),
                "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
                **self._core_state(epoch),
            }
            with atomic_write(file_name + ".pt") as handle:
                torch.save(state, handle)

        @staticmethod
        def load_state(file_name, *args, **kwargs):
            return torch.load(file_name + ".pt", weights_only=True)

        def _update_state(self, new_state):
            self.module.load_state_dict(new_state["model"])
            for name, optimizer in self.optimizers.items():
                optimizer.load_state_dict(new_state["optimizers"][name])
            return super()._update_state(new_state)

    return TorchTestTrainer


@functools.cache
def _keras_backend() -> type:
    """The real TfNetworkTrainer on a Dense(10) over 64 features, SGD, cross-entropy ("CE")."""
    from epochal_tf._tf import keras
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
def torch_trainer():
    """``torch_trainer(save_path=None, callbacks=None, lr=0.1, split_optimizers=False)``."""
    pytest.importorskip("torch")
    return _torch_backend()


@pytest.fixture
def keras_trainer():
    """``keras_trainer(save_path=None, callbacks=None, lr=0.1)``; lr may be a schedule."""
    pytest.importorskip("keras")
    pytest.importorskip("tensorflow")
    pytest.importorskip("epochal_tf")
    return _keras_backend()


class LRRecorder:
    """Records ``current_lrs(trainer)`` at each epoch begin, after every other callback.

    A plugin marked ``trylast`` rather than a callback: callbacks run in reverse registration
    order (pluggy calls the newest plugin first), and this must see what the schedulers set.
    """

    def __init__(self) -> None:
        self.epochs: list[dict[str, float]] = []

    @hookimpl(trylast=True)
    def epochal_at_epoch_begin(self, trainer: Any) -> None:
        self.epochs.append(current_lrs(trainer))

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
        self.batches.append(current_lrs(trainer))


@pytest.fixture
def lr_recorder():
    """``lr_recorder(per_batch=False)`` -> a fresh recorder, registered as a callback."""
    return lambda per_batch=False: BatchLRRecorder() if per_batch else LRRecorder()
