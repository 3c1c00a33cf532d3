"""Softmax regression: the smallest network that learns digits."""

from __future__ import annotations

import numpy as np


class SoftmaxRegression:
    """``logits = x @ weight + bias`` on flattened inputs."""

    def __init__(self, n_features: int, n_classes: int, seed: int | None = 0) -> None:
        rng = np.random.default_rng(seed)
        self.weight = rng.normal(0.0, 0.01, size=(n_features, n_classes)).astype(np.float64)
        self.bias = np.zeros(n_classes, dtype=np.float64)

    def __call__(self, data: np.ndarray) -> np.ndarray:
        return data.reshape(len(data), -1) @ self.weight + self.bias

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"weight": self.weight.copy(), "bias": self.bias.copy()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        weight, bias = np.asarray(state["weight"]), np.asarray(state["bias"])
        if weight.shape != self.weight.shape or bias.shape != self.bias.shape:
            raise ValueError(
                f"checkpoint holds weight {weight.shape} / bias {bias.shape}, the network has "
                f"{self.weight.shape} / {self.bias.shape}"
            )
        self.weight, self.bias = weight.astype(np.float64), bias.astype(np.float64)


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample losses and the softmax probabilities."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    probs = exp / exp.sum(axis=1, keepdims=True)
    log_probs = shifted - np.log(exp.sum(axis=1, keepdims=True))
    return -log_probs[np.arange(len(labels)), labels], probs
