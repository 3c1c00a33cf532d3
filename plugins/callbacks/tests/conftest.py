"""Fixtures for the callback tests: tiny real torch and Keras backends, an LR recorder.

TEST BACKENDS ONLY, until the real trainers land (issues 5 and 6): each is the least a backend
must do (``optimizers`` dict, ``_train_single_epoch``, ``predict``, checkpoints with
``_core_state``) on a linear model over digits. They are built inside functions so that torch
and tensorflow are imported only by the tests that use them.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any

import numpy as np
import pytest

from epochal import hookimpl
from epochal.files import atomic_write
from epochal.trainer import AbstractNetworkTrainer
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
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    class KerasTestTrainer(AbstractNetworkTrainer):
        """TEST BACKEND: Dense(10) on 64 features, SGD, sparse cross-entropy ("CE")."""

        def __init__(self, save_path=None, callbacks=None, lr=0.1):
            super().__init__(0, callbacks, save_path=save_path)
            keras.utils.set_random_seed(0)
            self.module = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10)])
            lr = float(lr) if isinstance(lr, (int, float)) else lr  # or a LearningRateSchedule
            self.optimizers = {"default": keras.optimizers.SGD(learning_rate=lr)}
            self.optimizers["default"].build(self.module.trainable_variables)
            self._loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
            specs = [tf.TensorSpec([None, 64], tf.float32), tf.TensorSpec([None], tf.int64)]
            self._step = tf.function(self._train_step, input_signature=specs)
            self._setup()

        def _train_step(self, data, labels):
            with tf.GradientTape() as tape:
                logits = self.module(data, training=True)
                loss = self._loss(labels, logits)
            variables = self.module.trainable_variables
            grads = tape.gradient(loss, variables)
            self.optimizers["default"].apply_gradients(zip(grads, variables, strict=True))
            return loss, tf.reduce_sum(tf.cast(tf.argmax(logits, 1) == labels, tf.float32))

        def _train_single_epoch(self, batchgen, epoch):
            loss_sum, correct, seen = 0.0, 0.0, 0
            for batch_nr, batch in enumerate(batchgen):
                data, labels = _xy(batch)
                loss, batch_correct = self._step(data, labels)
                loss_sum, correct = loss_sum + loss * len(labels), correct + batch_correct
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

        def predict(self, batchgen, batch_size=None):
            pairs = [_xy(batch) for batch in batchgen]
            labels = np.concatenate([y for _, y in pairs])
            logits = self.module(np.concatenate([x for x, _ in pairs]))
            metrics = {
                "CE": float(self._loss(labels, logits)),
                "accuracy": float(np.mean(np.argmax(logits, 1) == labels)),
            }
            return keras.ops.convert_to_numpy(keras.ops.softmax(logits)), [labels], metrics

        def _at_training_end(self, *args, **kwargs):
            super()._at_training_end()
            return self.module

        def save_state(self, file_name, epoch=0, **kwargs):
            arrays = {f"w{i}": w for i, w in enumerate(self.module.get_weights())}
            for i, variable in enumerate(self.optimizers["default"].variables):
                arrays[f"o{i}"] = variable.numpy()
            meta = np.array(json.dumps(self._core_state(epoch)))
            with atomic_write(file_name + ".npz") as handle:
                np.savez(handle, meta=meta, **arrays)

        @staticmethod
        def load_state(file_name, *args, **kwargs):
            with np.load(file_name + ".npz", allow_pickle=False) as archive:
                state = json.loads(str(archive["meta"]))
                state["arrays"] = {key: archive[key] for key in archive.files if key != "meta"}
            return state

        def _update_state(self, new_state):
            arrays = new_state["arrays"]
            self.module.set_weights([arrays[f"w{i}"] for i in range(len(self.module.weights))])
            for i, variable in enumerate(self.optimizers["default"].variables):
                variable.assign(arrays[f"o{i}"])
            return super()._update_state(new_state)

    return KerasTestTrainer


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
