"""A complete epochal backend in numpy: the core runs the loop, this fills the gaps."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar
from zipfile import BadZipFile  # a truncated .npz

import numpy as np

from epochal.data.batching import rebatch
from epochal.errors import CheckpointError, ConfigError
from epochal.loop.trainer import AbstractNetworkTrainer
from epochal.runs.checkpoints import check_core_state, checkpoint_value_error
from epochal.runs.files import atomic_write, open_run_file
from epochal_numpy.network import SoftmaxRegression, softmax_cross_entropy


class NumpyNetworkTrainer(AbstractNetworkTrainer):
    """SGD on a :class:`SoftmaxRegression` with cross-entropy ("CE") and accuracy."""

    #: What configs may name with this backend (``model = "softmax"``).
    components: ClassVar[dict[str, dict[str, str]]] = {
        "models": {"softmax": "epochal_numpy.network:SoftmaxRegression"}
    }

    def __init__(
        self,
        network: SoftmaxRegression,
        save_path: str | os.PathLike[str] | None = None,
        lr: float = 1.0,
        save_freq: int = 1,
        fold: int = 0,
        callbacks: Iterable[object] | None = None,
        start_epoch: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            fold,
            callbacks,
            save_path=save_path,
            save_freq=save_freq,
            start_epoch=start_epoch,
            plugin_manager=kwargs.pop("plugin_manager", None),
        )
        if kwargs:
            raise TypeError(f"unexpected arguments: {sorted(kwargs)}")
        self.module = network
        self.lr = float(lr)
        self._setup()

    def _train_single_epoch(self, batchgen: Iterable[dict], epoch: int) -> dict[str, float]:
        loss_sum, correct, seen = 0.0, 0, 0
        hook = self.batch_end_hook
        network = self.module
        for batch_nr, batch in enumerate(batchgen):
            data = batch["data"].reshape(len(batch["data"]), -1)
            labels = batch["label"].reshape(-1)
            losses, probs = softmax_cross_entropy(network(data), labels)
            batch_correct = int((probs.argmax(axis=1) == labels).sum())
            grad = probs  # d(mean CE)/d(logits) = (softmax - onehot) / n, computed in place
            grad[np.arange(len(labels)), labels] -= 1.0
            grad /= len(labels)
            network.weight -= self.lr * (data.T @ grad)
            network.bias -= self.lr * grad.sum(axis=0)
            loss_sum += float(losses.sum())
            correct += batch_correct
            seen += len(labels)
            if hook is not None:
                hook(
                    trainer=self,
                    epoch=epoch,
                    batch_nr=batch_nr,
                    losses={"CE": float(losses.mean())},
                    metrics={"accuracy": batch_correct / len(labels)},
                )
        if seen == 0:
            raise ValueError(f"epoch {epoch} received no batches")
        return {"CE": loss_sum / seen, "accuracy": correct / seen}

    def predict(self, batchgen: Iterable[dict], batch_size: int | None = None) -> tuple:
        predictions, labels_all = [], []
        loss_sum, correct, seen = 0.0, 0, 0
        for batch in rebatch(batchgen, batch_size):
            data = batch["data"].reshape(len(batch["data"]), -1)
            labels = batch["label"].reshape(-1)
            losses, probs = softmax_cross_entropy(self.module(data), labels)
            predictions.append(probs)
            labels_all.append(labels)
            loss_sum += float(losses.sum())
            correct += int((probs.argmax(axis=1) == labels).sum())
            seen += len(labels)
        if seen == 0:
            raise ValueError("predict received no batches")
        metrics = {"CE": loss_sum / seen, "accuracy": correct / seen}
        return np.concatenate(predictions), [np.concatenate(labels_all)], metrics

    # -- checkpoint primitives: the core writes, finds and restores checkpoints with them --

    checkpoint_suffix: ClassVar[str] = ".npz"

    def network_state(self) -> dict[str, Any]:
        return {"weights": self.module.state_dict()}

    def load_network_state(self, state: Mapping[str, Any]) -> None:
        try:
            self.module.load_state_dict(state["weights"])  # checks the shapes before loading
        except ValueError as exc:
            raise CheckpointError(
                f"the checkpoint does not fit this network (was it written for another "
                f"architecture?): {exc}"
            ) from exc

    @staticmethod
    def write_checkpoint(path: str, state: dict[str, Any]) -> str:
        """One ``.npz``: the weights as arrays, everything else as one JSON document."""
        meta = {key: value for key, value in state.items() if key != "weights"}
        with atomic_write(path) as handle:
            np.savez(handle, meta=np.array(json.dumps(meta)), **state["weights"])
        return path

    @staticmethod
    def read_checkpoint(path: str) -> dict[str, Any]:
        """No pickle, no link followed, no FIFO waited on, values checked."""
        try:
            with open_run_file(path, "rb") as handle, np.load(handle, allow_pickle=False) as npz:
                state = json.loads(str(npz["meta"]))
                weights = {key: npz[key] for key in npz.files if key != "meta"}
        except ConfigError:  # a link or a FIFO, refused by open_run_file
            raise
        except FileNotFoundError as exc:
            raise CheckpointError(f"checkpoint {path} does not exist") from exc
        except (OSError, ValueError, KeyError, AttributeError, EOFError, BadZipFile) as exc:
            raise CheckpointError(
                f"checkpoint {path} cannot be read ({type(exc).__name__}: {exc}): it is "
                "truncated or not a checkpoint of the numpy backend"
            ) from exc
        if not isinstance(state, dict):
            raise checkpoint_value_error(path, "'meta'", state, "a JSON table")
        check_core_state(path, state)
        state["weights"] = weights
        return state
