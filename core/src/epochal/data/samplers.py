"""Samplers: the order of one epoch's sample indices, seedable and sharding-ready.

A sampler computes the *global* order of an epoch from a seed, then keeps every
``num_replicas``-th index starting at ``rank``. All ranks (and all augmentation
workers) compute the same global order from the same seed, so shards are
disjoint and together cover the epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from epochal.errors import DataError

__all__ = [
    "AbstractSampler",
    "BalancedSampler",
    "RandomSampler",
    "SequentialSampler",
    "ShardedSampler",
    "StratifiedSampler",
    "WeightedRandomSampler",
]

Seed = int | np.random.SeedSequence | np.random.Generator | None


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class AbstractSampler:
    """Orders the indices ``0 .. n-1`` of a dataset for one epoch.

    Args:
        indices: the dataset indices to draw from, or their count.
        num_replicas: how many processes share each epoch (distributed training).
        rank: which share this process takes, ``0 <= rank < num_replicas``.
    """

    def __init__(
        self, indices: Sequence[int] | int, *, num_replicas: int = 1, rank: int = 0
    ) -> None:
        if isinstance(indices, (int, np.integer)) and not isinstance(indices, bool):
            self.indices = np.arange(int(indices), dtype=np.int64)
        else:
            self.indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        self.num_replicas = _positive_int("num_replicas", num_replicas)
        if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)):
            raise ValueError(f"rank must be an integer, got {rank!r}")
        if not 0 <= rank < self.num_replicas:
            raise ValueError(f"rank must be in [0, {self.num_replicas}), got {rank}")
        self.rank = int(rank)

    @classmethod
    def from_dataset(cls, dataset: Any, **kwargs: Any) -> AbstractSampler:
        """Build the sampler for every sample of ``dataset``."""
        return cls(len(dataset), **kwargs)

    @property
    def num_samples(self) -> int:
        """Samples per epoch over all replicas."""
        return len(self.indices)

    def __len__(self) -> int:
        """Samples per epoch for this rank."""
        total = self.num_samples
        return max(0, (total - self.rank + self.num_replicas - 1) // self.num_replicas)

    def _global_order(self, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} must implement _global_order")

    def epoch_indices(self, seed: Seed = None) -> np.ndarray:
        """This rank's indices for the epoch drawn with ``seed`` (``None``: fresh entropy)."""
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        order = np.asarray(self._global_order(rng), dtype=np.int64)
        if self.num_replicas == 1:
            return order
        return order[self.rank :: self.num_replicas]

    def __iter__(self):
        return iter(self.epoch_indices().tolist())

    def __repr__(self) -> str:
        shard = f", rank={self.rank}/{self.num_replicas}" if self.num_replicas > 1 else ""
        return f"{type(self).__name__}(num_samples={self.num_samples}{shard})"


class SequentialSampler(AbstractSampler):
    """Every index once, in order."""

    def _global_order(self, rng: np.random.Generator) -> np.ndarray:
        return self.indices


class RandomSampler(AbstractSampler):
    """A random order; with ``replacement`` indices are drawn independently.

    ``num_samples`` (default: all) sets the epoch length; without replacement
    an epoch longer than the dataset chains several permutations.
    """

    def __init__(
        self,
        indices: Sequence[int] | int,
        *,
        replacement: bool = False,
        num_samples: int | None = None,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        super().__init__(indices, num_replicas=num_replicas, rank=rank)
        self.replacement = bool(replacement)
        self._num_samples = (
            len(self.indices) if num_samples is None else _positive_int("num_samples", num_samples)
        )
        if not len(self.indices):
            raise DataError("RandomSampler has no indices to draw from (empty dataset)")

    @property
    def num_samples(self) -> int:
        return self._num_samples

    def _global_order(self, rng: np.random.Generator) -> np.ndarray:
        if self.replacement:
            return rng.choice(self.indices, size=self._num_samples, replace=True)
        rounds = -(-self._num_samples // len(self.indices))
        order = np.concatenate([rng.permutation(self.indices) for _ in range(rounds)])
        return order[: self._num_samples]


class WeightedRandomSampler(AbstractSampler):
    """Index ``i`` drawn with probability ``weights[i] / sum(weights)``."""

    def __init__(
        self,
        weights: Sequence[float],
        *,
        num_samples: int | None = None,
        replacement: bool = True,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        weights_array = np.asarray(weights, dtype=np.float64).reshape(-1)
        super().__init__(len(weights_array), num_replicas=num_replicas, rank=rank)
        if not np.all(np.isfinite(weights_array)) or np.any(weights_array < 0):
            raise ValueError("weights must be finite and non-negative")
        if weights_array.sum() <= 0:
            raise ValueError("weights must not all be zero")
        self.weights = weights_array
        self.replacement = bool(replacement)
        self._num_samples = (
            len(weights_array) if num_samples is None else _positive_int("num_samples", num_samples)
        )
        if not replacement and self._num_samples > np.count_nonzero(weights_array):
            raise ValueError(
                f"cannot draw {self._num_samples} samples without replacement from "
                f"{np.count_nonzero(weights_array)} non-zero weights; lower num_samples or "
                "set replacement=True"
            )

    @classmethod
    def from_dataset(cls, dataset: Any, **kwargs: Any) -> WeightedRandomSampler:
        if "weights" not in kwargs:
            raise ValueError("WeightedRandomSampler needs sampler_kwargs={'weights': [...]}")
        weights = kwargs.pop("weights")
        if len(weights) != len(dataset):
            raise ValueError(
                f"WeightedRandomSampler got {len(weights)} weights for {len(dataset)} samples"
            )
        return cls(weights, **kwargs)

    @property
    def num_samples(self) -> int:
        return self._num_samples

    def _global_order(self, rng: np.random.Generator) -> np.ndarray:
        probabilities = self.weights / self.weights.sum()
        return rng.choice(
            self.indices, size=self._num_samples, replace=self.replacement, p=probabilities
        )


class _LabelSampler(AbstractSampler):
    """A sampler that needs one class label per sample."""

    def __init__(self, labels: Sequence[Any], *, num_replicas: int = 1, rank: int = 0) -> None:
        labels_array = np.asarray(labels).reshape(-1)
        super().__init__(len(labels_array), num_replicas=num_replicas, rank=rank)
        if not len(labels_array):
            raise DataError(f"{type(self).__name__} got no labels (empty dataset)")
        self.labels = labels_array
        self.classes, self.class_of = np.unique(labels_array, return_inverse=True)
        self.members = [np.flatnonzero(self.class_of == c) for c in range(len(self.classes))]

    @classmethod
    def from_dataset(cls, dataset: Any, label_key: str = "label", **kwargs: Any) -> AbstractSampler:
        return cls(dataset.labels(label_key), **kwargs)


class BalancedSampler(_LabelSampler):
    """Each class equally likely per draw (minority classes are drawn with replacement).

    An epoch has ``num_samples`` draws (default: the dataset size).
    """

    def __init__(
        self,
        labels: Sequence[Any],
        *,
        num_samples: int | None = None,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        super().__init__(labels, num_replicas=num_replicas, rank=rank)
        self._num_samples = (
            len(self.labels) if num_samples is None else _positive_int("num_samples", num_samples)
        )

    @property
    def num_samples(self) -> int:
        return self._num_samples

    def _global_order(self, rng: np.random.Generator) -> np.ndarray:
        chosen_classes = rng.integers(0, len(self.classes), size=self._num_samples)
        order = np.empty(self._num_samples, dtype=np.int64)
        for class_index, members in enumerate(self.members):
            slots = np.flatnonzero(chosen_classes == class_index)
            order[slots] = rng.choice(members, size=len(slots), replace=True)
        return order


class StratifiedSampler(_LabelSampler):
    """Every sample once, in a random order that spreads each class evenly.

    Any run of consecutive indices (a batch) holds the classes in about the
    dataset's proportions.
    """

    def _global_order(self, rng: np.random.Generator) -> np.ndarray:
        positions = np.empty(len(self.labels), dtype=np.float64)
        for members in self.members:
            count = len(members)
            shuffled = rng.permutation(members)
            positions[shuffled] = (np.arange(count) + rng.random(count)) / count
        return np.argsort(positions, kind="stable")


class ShardedSampler(AbstractSampler):
    """One rank's share of another sampler's epochs (what distributed training draws).

    Every rank draws ``base``'s global order from the same seed and keeps every
    ``num_replicas``-th index from ``rank``; so the samples of step ``j`` on all ranks are
    together the ``j``-th block of ``num_replicas * batch_size`` of the global order: the
    batch one process would take with that global batch size. With ``even`` the order is
    first padded with its own start to a multiple of ``num_replicas`` (as PyTorch's
    ``DistributedSampler`` does), so every rank takes the same number of
    steps, which data-parallel training needs; without it (validation) no sample is repeated.
    """

    def __init__(self, base: AbstractSampler, *, num_replicas: int, rank: int, even: bool) -> None:
        if base.num_replicas != 1:
            raise ValueError(f"{base!r} is sharded already")
        super().__init__(0, num_replicas=num_replicas, rank=rank)
        self.base, self.even = base, bool(even)

    @property
    def num_samples(self) -> int:
        return self.base.num_samples

    def __len__(self) -> int:
        if self.even:
            return -(-self.num_samples // self.num_replicas)
        return super().__len__()

    def epoch_indices(self, seed: Seed = None) -> np.ndarray:
        order = np.asarray(self.base.epoch_indices(seed), dtype=np.int64)
        if self.even and len(order) % self.num_replicas:
            missing = self.num_replicas - len(order) % self.num_replicas
            order = np.concatenate([order, np.resize(order, missing)])
        return order[self.rank :: self.num_replicas]

    def __repr__(self) -> str:
        return f"ShardedSampler({self.base!r}, rank={self.rank}/{self.num_replicas})"
