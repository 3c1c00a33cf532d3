"""DataManager: a dataset, a sampler and transforms -> one epoch of batches.

``get_batchgen(seed)`` returns a batchgenerators ``MultiThreadedAugmenter``
(``SingleThreadedAugmenter`` for ``n_process_augmentation=0``) that yields each
sample of the epoch exactly once, in batches of ``batch_size`` (the last one
may be smaller). The same seed gives the same batches, whatever the number of
workers.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from epochal.data.datasets import AbstractDataset, ArrayDataset, BaseCacheDataset, BaseLazyDataset
from epochal.data.loading import (
    EpochDataLoader,
    EpochMultiThreadedAugmenter,
    EpochSingleThreadedAugmenter,
)
from epochal.data.samplers import AbstractSampler, SequentialSampler, ShardedSampler
from epochal.errors import DataError

__all__ = ["DataManager"]


def _as_dataset(
    data: Any, load_fn: Callable[..., Any] | None, from_disc: bool, dataset_kwargs: Mapping
) -> AbstractDataset:
    if isinstance(data, AbstractDataset):
        return data
    if isinstance(data, Mapping):
        return ArrayDataset(**data)
    if isinstance(data, (str, os.PathLike, list, tuple)):
        if load_fn is None:
            raise TypeError(
                f"data is a path or a list of items ({data!r:.80}) but no load_fn was given; "
                "pass load_fn=<function(item) -> sample dict> or an AbstractDataset"
            )
        dataset_cls = BaseLazyDataset if from_disc else BaseCacheDataset
        return dataset_cls(data, load_fn, **dataset_kwargs)
    raise TypeError(
        f"data must be an AbstractDataset, a dict of arrays, or a path or list of items with "
        f"load_fn; got {type(data).__name__}"
    )


def _resolve_sampler_cls(sampler_cls: Any) -> type:
    if isinstance(sampler_cls, str):
        from epochal.plugins.registry import get_sampler

        sampler_cls = get_sampler(sampler_cls)
    if not (isinstance(sampler_cls, type) and issubclass(sampler_cls, AbstractSampler)):
        raise TypeError(
            f"sampler_cls must be an epochal AbstractSampler subclass or a registered sampler "
            f"name, got {sampler_cls!r}"
        )
    return sampler_cls


def _compose(transforms: Any) -> Any:
    if transforms is None:
        return None
    if isinstance(transforms, (list, tuple)):
        from batchgenerators.transforms.abstract_transforms import Compose

        return Compose(list(transforms)) if transforms else None
    if not callable(transforms):
        raise TypeError(
            f"transforms must be a batchgenerators transform (or a list of them), got "
            f"{type(transforms).__name__}"
        )
    return transforms


class DataManager:
    """Batches for training and validation (delira's ``BaseDataManager`` API).

    Args:
        data: an :class:`AbstractDataset`, a dict of arrays, or a path with ``load_fn``.
        batch_size: samples per batch (the last batch of an epoch may be smaller).
        n_process_augmentation: worker processes; 0 runs in the main process.
        transforms: a batchgenerators transform or a list of them (composed).
        sampler_cls: an :class:`AbstractSampler` subclass or a registered name.
        sampler_kwargs: keyword arguments for the sampler (``num_replicas``/``rank`` shard).
        data_loader_cls: an :class:`EpochDataLoader` subclass to build batches.
        load_fn, from_disc, dataset_kwargs: build the dataset from a path
            (lazily when ``from_disc``, else loaded up front).
        seed: base seed, combined with the seed of each ``get_batchgen`` call.
        num_cached_per_queue: batches each worker prepares ahead.
        pin_memory: let batchgenerators pin the batches in page-locked memory for the GPU.
    """

    def __init__(
        self,
        data: Any,
        batch_size: int,
        n_process_augmentation: int,
        transforms: Any = None,
        sampler_cls: Any = SequentialSampler,
        sampler_kwargs: Mapping[str, Any] | None = None,
        data_loader_cls: type[EpochDataLoader] | None = None,
        *,
        load_fn: Callable[..., Any] | None = None,
        from_disc: bool = True,
        dataset_kwargs: Mapping[str, Any] | None = None,
        seed: int | None = None,
        num_cached_per_queue: int = 2,
        pin_memory: bool = False,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
            raise TypeError(f"batch_size must be an integer, got {batch_size!r}")
        if batch_size < 1:
            raise DataError(f"batch_size must be at least 1, got {batch_size}")
        if (
            isinstance(n_process_augmentation, bool)
            or not isinstance(n_process_augmentation, (int, np.integer))
            or n_process_augmentation < 0
        ):
            raise ValueError(
                f"n_process_augmentation must be an integer >= 0 (0: no worker processes), "
                f"got {n_process_augmentation!r}"
            )
        self.dataset = _as_dataset(data, load_fn, from_disc, dataset_kwargs or {})
        if len(self.dataset) == 0:
            raise DataError("the dataset is empty: there is nothing to train or validate on")
        self.batch_size = int(batch_size)
        self.n_process_augmentation = int(n_process_augmentation)
        self._transforms_given = transforms
        self.transforms = _compose(transforms)
        self.sampler_cls = _resolve_sampler_cls(sampler_cls)
        self.sampler_kwargs = dict(sampler_kwargs or {})
        try:
            self.sampler = self.sampler_cls.from_dataset(self.dataset, **self.sampler_kwargs)
        except TypeError as exc:
            raise TypeError(
                f"sampler_kwargs {self.sampler_kwargs} do not fit "
                f"{self.sampler_cls.__name__}: {exc}"
            ) from exc
        if data_loader_cls is None:
            data_loader_cls = EpochDataLoader
        if not (isinstance(data_loader_cls, type) and issubclass(data_loader_cls, EpochDataLoader)):
            raise TypeError(
                "data_loader_cls must be a subclass of epochal.data.EpochDataLoader, "
                f"got {data_loader_cls!r}"
            )
        self.data_loader_cls = data_loader_cls
        self.seed = seed
        self.num_cached_per_queue = num_cached_per_queue
        self.pin_memory = pin_memory
        if self.batch_size > self.n_samples:
            raise DataError(
                f"batch_size {self.batch_size} is larger than the {self.n_samples} samples of an "
                f"epoch; use batch_size <= {self.n_samples}"
            )

    @property
    def n_samples(self) -> int:
        """Samples per epoch (for this rank when sharded)."""
        return len(self.sampler)

    @property
    def n_batches(self) -> int:
        """Batches per epoch, the last partial batch included."""
        return -(-self.n_samples // self.batch_size)

    def get_batchgen(
        self, seed: int | None = None
    ) -> EpochMultiThreadedAugmenter | EpochSingleThreadedAugmenter:
        """An augmenter over one epoch; the same ``seed`` gives the same batches.

        ``seed`` is combined with the manager's ``seed``; with neither, the
        epoch is drawn from fresh entropy.
        """
        entropy = [int(s) for s in (self.seed, seed) if s is not None]
        sequence = np.random.SeedSequence(entropy or None)
        order_seed, batch_seed, worker_entropy = sequence.spawn(3)
        rank = self.sampler.rank
        if rank:  # same global order on every rank, but each rank augments its own way
            batch_seed = batch_seed.spawn(rank + 1)[rank]
            worker_entropy = worker_entropy.spawn(rank + 1)[rank]
        indices = self.sampler.epoch_indices(np.random.default_rng(order_seed))
        n_batches = -(-len(indices) // self.batch_size)
        n_workers = min(self.n_process_augmentation, n_batches)
        loader = self.data_loader_cls(
            self.dataset,
            self.batch_size,
            indices,
            transforms=self.transforms,
            seed=int(batch_seed.generate_state(1)[0]),
            num_workers=max(1, n_workers),
        )
        if n_workers == 0:
            return EpochSingleThreadedAugmenter(loader, None)
        worker_seeds = [int(s) for s in worker_entropy.generate_state(n_workers)]
        return EpochMultiThreadedAugmenter(
            loader,
            None,
            n_workers,
            num_cached_per_queue=self.num_cached_per_queue,
            seeds=worker_seeds,
            pin_memory=self.pin_memory,
        )

    def shard(self, num_replicas: int, rank: int, *, even: bool = True) -> DataManager:
        """This manager for process ``rank`` of ``num_replicas`` (data-parallel training):
        each epoch's global order (the same on every rank for the same seed) split across
        ranks by :class:`ShardedSampler`, with ``even`` shards for training and unpadded ones
        for validation. A manager the user sharded already is returned as it is."""
        if num_replicas == 1:
            return self
        if self.sampler.num_replicas != 1:
            if (self.sampler.num_replicas, self.sampler.rank) != (num_replicas, rank):
                raise DataError(
                    f"the data manager is sharded for rank {self.sampler.rank} of "
                    f"{self.sampler.num_replicas} processes, but this is rank {rank} of "
                    f"{num_replicas}; leave num_replicas and rank out of sampler_kwargs and the "
                    "trainer shards the data itself"
                )
            return self
        sharded = copy.copy(self)
        sharded.sampler = ShardedSampler(
            self.sampler, num_replicas=num_replicas, rank=rank, even=even
        )
        if sharded.n_samples == 0:
            raise DataError(
                f"{self.n_samples} samples cannot be shared by {num_replicas} processes: rank "
                f"{rank} gets none. Use at least {num_replicas} samples (validation too), or "
                "fewer processes"
            )
        if sharded.batch_size > sharded.n_samples:
            sharded.batch_size = sharded.n_samples
        return sharded

    def get_subset(self, indices: Iterable[int]) -> DataManager:
        """A manager with the same settings over the samples at ``indices``."""
        return DataManager(
            self.dataset.get_subset(indices),
            self.batch_size,
            self.n_process_augmentation,
            transforms=self._transforms_given,
            sampler_cls=self.sampler_cls,
            sampler_kwargs=self.sampler_kwargs,
            data_loader_cls=self.data_loader_cls,
            seed=self.seed,
            num_cached_per_queue=self.num_cached_per_queue,
            pin_memory=self.pin_memory,
        )

    def __repr__(self) -> str:
        return (
            f"DataManager({len(self.dataset)} samples, batch_size={self.batch_size}, "
            f"n_batches={self.n_batches}, workers={self.n_process_augmentation}, "
            f"sampler={self.sampler!r})"
        )
