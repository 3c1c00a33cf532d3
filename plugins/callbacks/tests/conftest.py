"""Fixtures for the callback tests: a tiny real torch backend.

It is a TEST BACKEND (the least a backend must do: ``optimizers`` dict, ``_train_single_epoch``,
``predict``, the checkpoint primitives) on a linear model over digits, built inside a
function so that torch is imported only by the tests that use it. (The LR schedulers' tests
live with their backends, in ``plugins/torch_trainer`` and ``plugins/tf_trainer``.)
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from epochal.loop.trainer import AbstractNetworkTrainer
from epochal.runs.files import atomic_write


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
def torch_trainer():
    """``torch_trainer(save_path=None, callbacks=None, lr=0.1, split_optimizers=False)``."""
    pytest.importorskip("torch")
    return _torch_backend()
