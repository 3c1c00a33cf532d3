"""The trainer: one epoch, predict, and the checkpoint primitives; the core does the rest."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar
from zipfile import BadZipFile

import numpy as np

from epochal.data.batching import rebatch
from epochal.errors import CheckpointError, NonFiniteLossError
from epochal.loop.trainer import AbstractNetworkTrainer
from epochal.runs.checkpoints import check_core_state
from epochal.runs.files import atomic_write, open_run_file


class Linear:
    """``logits = x @ w + b`` on flattened inputs."""

    def __init__(self, n_in: int = 64, n_out: int = 10, seed: int = 0) -> None:
        self.w = np.random.default_rng(seed).normal(0.0, 0.01, (n_in, n_out))
        self.b = np.zeros(n_out)


def _forward(network: Linear, batch: dict) -> tuple:
    """Labels, per-sample cross-entropy, softmax probabilities, correct predictions."""
    x, y = batch["data"].reshape(len(batch["data"]), -1), batch["label"].reshape(-1)
    logits = x @ network.w + network.b
    log_probs = logits - logits.max(1, keepdims=True)
    log_probs -= np.log(np.exp(log_probs).sum(1, keepdims=True))
    probs = np.exp(log_probs)
    return x, y, -log_probs[np.arange(len(y)), y], probs, float((probs.argmax(1) == y).sum())


class LinearTrainer(AbstractNetworkTrainer):
    """Momentum SGD on :class:`Linear`: loss ``"CE"``, metric ``"accuracy"``."""

    checkpoint_suffix: ClassVar[str] = ".lin.npz"

    def __init__(
        self,
        network: Linear,
        save_path: str | None = None,
        lr: float = 0.5,
        momentum: float = 0.9,
        on_nonfinite: str = "raise",
        **kwargs: Any,  # save_freq, fold, callbacks, start_epoch: the core's
    ) -> None:
        super().__init__(save_path=save_path, **kwargs)
        self.module, self.lr, self.momentum = network, lr, momentum
        self.on_nonfinite = NonFiniteLossError.check_policy(on_nonfinite)
        self.velocity = {"w": np.zeros_like(network.w), "b": np.zeros_like(network.b)}

    def train_epoch(self, batches: Iterable[dict], epoch: int) -> dict[str, float]:
        totals, skipped, batch_nr = np.zeros(3), 0, -1  # summed CE, correct, samples
        for batch_nr, batch in enumerate(batches):
            x, y, losses, probs, correct = _forward(self.module, batch)
            if not np.isfinite(loss := losses.mean()):
                if self.on_nonfinite == "raise":
                    raise NonFiniteLossError.at_batch(epoch, batch_nr + 1, None, "CE", loss)
                skipped += 1
                continue
            probs[np.arange(len(y)), y] -= 1.0  # d(mean CE)/d(logits) * len(y)
            for key, grad in (("w", x.T @ probs / len(y)), ("b", probs.mean(0))):
                self.velocity[key] = self.momentum * self.velocity[key] - self.lr * grad
                setattr(self.module, key, getattr(self.module, key) + self.velocity[key])
            totals += (losses.sum(), correct, len(y))
            if self.batch_end_hook is not None:
                self.batch_end_hook(
                    trainer=self, epoch=epoch, batch_nr=batch_nr, losses={"CE": loss}
                )
        if batch_nr < 0:
            raise ValueError(f"epoch {epoch} received no batches")
        if skipped == batch_nr + 1:
            raise NonFiniteLossError.all_skipped(epoch, skipped)
        means = {"CE": totals[0] / totals[2], "accuracy": totals[1] / totals[2]}
        if self.on_nonfinite == "skip_batch":
            means[NonFiniteLossError.METRIC] = skipped
        return means

    def predict(self, batchgen: Iterable[dict], batch_size: int | None = None) -> tuple:
        outputs, labels, totals = [], [], np.zeros(3)  # summed CE, correct, samples
        for batch in rebatch(batchgen, batch_size):
            _, y, losses, probs, correct = _forward(self.module, batch)
            outputs, labels = [*outputs, probs], [*labels, y]
            totals += (losses.sum(), correct, len(y))
        if not outputs:
            raise ValueError("predict received no batches")
        metrics = {"CE": totals[0] / totals[2], "accuracy": totals[1] / totals[2]}
        return np.concatenate(outputs), [np.concatenate(labels)], metrics

    # -- checkpoints: the core writes, finds and restores them with these ------------------

    def network_state(self) -> dict[str, Any]:
        return {"w": self.module.w.copy(), "b": self.module.b.copy()}

    def load_network_state(self, state: Mapping[str, Any]) -> None:
        if state["w"].shape != self.module.w.shape or state["b"].shape != self.module.b.shape:
            raise CheckpointError(
                f"the checkpoint does not fit this network: w {state['w'].shape} in the "
                f"checkpoint, {self.module.w.shape} here"
            )
        self.module.w, self.module.b = state["w"].copy(), state["b"].copy()

    def training_state(self) -> dict[str, Any]:
        return {f"velocity_{key}": value.copy() for key, value in self.velocity.items()}

    def load_training_state(self, state: Mapping[str, Any]) -> None:
        if "velocity_w" in state:  # not in a weights_only checkpoint
            self.velocity = {key: state[f"velocity_{key}"].copy() for key in self.velocity}

    @staticmethod
    def write_checkpoint(path: str, state: dict[str, Any]) -> str:
        """The arrays as ``.npz`` entries, everything else as one JSON document: no pickle."""
        arrays = {key: value for key, value in state.items() if isinstance(value, np.ndarray)}
        meta = json.dumps({key: value for key, value in state.items() if key not in arrays})
        with atomic_write(path) as handle:
            np.savez(handle, meta=np.array(meta), **arrays)
        return path

    @staticmethod
    def read_checkpoint(path: str) -> dict[str, Any]:
        try:
            with open_run_file(path, "rb") as handle, np.load(handle, allow_pickle=False) as npz:
                arrays = {key: npz[key] for key in npz.files if key != "meta"}
                state = {**json.loads(str(npz["meta"])), **arrays}
        except FileNotFoundError as exc:
            raise CheckpointError(f"checkpoint {path} does not exist") from exc
        except (OSError, ValueError, KeyError, BadZipFile, EOFError) as exc:
            raise CheckpointError(
                f"checkpoint {path} cannot be read ({exc}): it is truncated or not a "
                "checkpoint of the linear backend"
            ) from exc
        check_core_state(path, state)
        return state
