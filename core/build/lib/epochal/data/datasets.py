"""Datasets: indexable collections of samples, each a ``dict`` of numpy arrays.

``get_batch(indices)`` is what the data loader calls; the array-backed dataset
answers it with one fancy-indexing per key instead of stacking samples.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from epochal.errors import DataError

__all__ = [
    "AbstractDataset",
    "ArrayDataset",
    "BaseCacheDataset",
    "BaseLazyDataset",
    "SubsetDataset",
    "stack_samples",
]

Sample = dict[str, Any]


def stack_samples(samples: Sequence[Sample]) -> dict[str, np.ndarray]:
    """Stack samples key by key into a batch; mismatches raise a :class:`DataError`."""
    if not samples:
        raise DataError("cannot build a batch from zero samples")
    keys = list(samples[0])
    batch = {}
    for key in keys:
        try:
            values = [sample[key] for sample in samples]
        except KeyError:
            bad = next(i for i, sample in enumerate(samples) if key not in sample)
            raise DataError(
                f"sample {bad} of the batch has no key {key!r} (it has {sorted(samples[bad])}); "
                "every sample must have the same keys"
            ) from None
        try:
            batch[key] = np.stack([np.asarray(value) for value in values])
        except ValueError:
            shapes = sorted({np.shape(value) for value in values})
            raise DataError(
                f"samples have different shapes for key {key!r}: {shapes}; make the load "
                "function or a transform return one shape per key"
            ) from None
    return batch


class AbstractDataset:
    """Base class: ``len``, indexing, batches, subsets and splits.

    Subclasses implement ``__getitem__`` and ``__len__``; ``get_batch`` and
    ``labels`` have generic versions that subclasses may speed up.
    """

    def __init__(self, data_path: Any = None, load_fn: Callable[..., Any] | None = None) -> None:
        self.data_path = data_path
        self._load_fn = load_fn

    def __getitem__(self, index: int) -> Sample:
        raise NotImplementedError(f"{type(self).__name__} must implement __getitem__")

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must implement __len__")

    def __iter__(self) -> Iterator[Sample]:
        for index in range(len(self)):
            yield self[index]

    def get_sample_from_index(self, index: int) -> Sample:
        """delira's name for ``dataset[index]``."""
        return self[index]

    def _check_index(self, index: int) -> int:
        length = len(self)
        if not -length <= index < length:
            raise IndexError(f"index {index} is out of range for a dataset of {length} samples")
        return index % length

    def get_batch(self, indices: Sequence[int]) -> dict[str, np.ndarray]:
        """The samples at ``indices`` stacked into one batch dict."""
        return stack_samples([self[int(index)] for index in indices])

    def labels(self, key: str = "label") -> np.ndarray:
        """One class label per sample (for stratified splits and samplers)."""
        values = []
        for index in range(len(self)):
            sample = self[index]
            if key not in sample:
                raise DataError(
                    f"sample {index} has no key {key!r} (it has {sorted(sample)}); "
                    "pass the key that holds the class label"
                )
            values.append(sample[key])
        return _as_class_labels(np.asarray(values), key)

    def get_subset(self, indices: Iterable[int]) -> SubsetDataset:
        """A view on the samples at ``indices`` (nothing is copied or reloaded)."""
        return SubsetDataset(self, indices)

    def train_test_split(
        self,
        test_size: float | int | None = 0.25,
        train_size: float | int | None = None,
        random_state: int | None = None,
        shuffle: bool = True,
        stratify: str | None = None,
    ) -> tuple[SubsetDataset, SubsetDataset]:
        """Split into ``(train, test)`` subsets (scikit-learn's ``train_test_split``).

        ``stratify`` names the label key to stratify on (e.g. ``"label"``).
        """
        from sklearn.model_selection import train_test_split

        indices = np.arange(len(self))
        train, test = train_test_split(
            indices,
            test_size=test_size,
            train_size=train_size,
            random_state=random_state,
            shuffle=shuffle,
            stratify=self.labels(stratify) if stratify else None,
        )
        return self.get_subset(train), self.get_subset(test)

    def kfold(
        self, n_splits: int = 5, shuffle: bool = True, random_state: int | None = None
    ) -> Iterator[tuple[SubsetDataset, SubsetDataset]]:
        """``(train, test)`` subsets for each of ``n_splits`` folds."""
        from sklearn.model_selection import KFold

        splitter = KFold(n_splits, shuffle=shuffle, random_state=random_state if shuffle else None)
        for train, test in splitter.split(np.arange(len(self))):
            yield self.get_subset(train), self.get_subset(test)

    def stratified_kfold(
        self,
        n_splits: int = 5,
        shuffle: bool = True,
        random_state: int | None = None,
        label_key: str = "label",
    ) -> Iterator[tuple[SubsetDataset, SubsetDataset]]:
        """Like :meth:`kfold`, keeping each class's share equal across folds."""
        from sklearn.model_selection import StratifiedKFold

        labels = self.labels(label_key)
        splitter = StratifiedKFold(
            n_splits, shuffle=shuffle, random_state=random_state if shuffle else None
        )
        for train, test in splitter.split(np.zeros(len(labels)), labels):
            yield self.get_subset(train), self.get_subset(test)


def _as_class_labels(values: np.ndarray, key: str) -> np.ndarray:
    if values.ndim > 1 and all(size == 1 for size in values.shape[1:]):
        values = values.reshape(len(values))
    if values.ndim != 1:
        raise DataError(
            f"{key!r} holds arrays of shape {values.shape[1:]} per sample; class-based splits "
            "and samplers need one class label per sample"
        )
    return values


class SubsetDataset(AbstractDataset):
    """The samples of ``dataset`` at ``indices``, in that order."""

    def __init__(self, dataset: AbstractDataset, indices: Iterable[int]) -> None:
        super().__init__(getattr(dataset, "data_path", None))
        self.dataset = dataset
        self.indices = np.asarray(list(indices) if not isinstance(indices, np.ndarray) else indices)
        if self.indices.size and not np.issubdtype(self.indices.dtype, np.integer):
            raise TypeError(f"subset indices must be integers, got dtype {self.indices.dtype}")
        self.indices = self.indices.astype(np.int64, copy=False)
        length = len(dataset)
        if self.indices.size and (self.indices.min() < -length or self.indices.max() >= length):
            raise IndexError(f"subset indices out of range for a dataset of {length} samples")

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Sample:
        return self.dataset[int(self.indices[self._check_index(index)])]

    def get_batch(self, indices: Sequence[int]) -> dict[str, np.ndarray]:
        return self.dataset.get_batch(self.indices[np.asarray(indices, dtype=np.int64)])

    def labels(self, key: str = "label") -> np.ndarray:
        return self.dataset.labels(key)[self.indices]


class ArrayDataset(AbstractDataset):
    """An in-memory dataset from arrays that share their first axis.

    ``ArrayDataset(data=x, label=y)`` gives samples ``{"data": x[i], "label": y[i]}``.
    """

    def __init__(self, **arrays: Any) -> None:
        super().__init__()
        if not arrays:
            raise DataError(
                "ArrayDataset needs at least one array, e.g. ArrayDataset(data=x, label=y)"
            )
        self.arrays = {key: np.asarray(value) for key, value in arrays.items()}
        lengths = {key: (len(value) if value.ndim else None) for key, value in self.arrays.items()}
        if None in lengths.values() or len(set(lengths.values())) != 1:
            raise DataError(
                f"ArrayDataset arrays must share their first axis; lengths are {lengths}"
            )
        self._length = next(iter(lengths.values()))

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> Sample:
        index = self._check_index(index)
        return {key: value[index] for key, value in self.arrays.items()}

    def get_batch(self, indices: Sequence[int]) -> dict[str, np.ndarray]:
        idx = np.asarray(indices, dtype=np.int64)
        return {key: value[idx] for key, value in self.arrays.items()}

    def labels(self, key: str = "label") -> np.ndarray:
        if key not in self.arrays:
            raise DataError(f"no array {key!r}; the dataset has {sorted(self.arrays)}")
        return _as_class_labels(self.arrays[key], key)


def _list_items(data_path: Any) -> list[Any]:
    """A directory's entries (sorted, hidden ones skipped) or the items of a list."""
    if isinstance(data_path, (str, os.PathLike)):
        path = os.fspath(data_path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"data_path {path!r} does not exist")
        if not os.path.isdir(path):
            return [path]
        items = [
            os.path.join(path, name)
            for name in sorted(os.listdir(path))
            if not name.startswith(".")
        ]
        if not items:
            raise DataError(f"data_path {path!r} is an empty directory: no samples to load")
        return items
    return list(data_path)


def _check_sample(sample: Any, load_fn: Callable[..., Any], item: Any) -> Sample:
    if not isinstance(sample, dict):
        raise TypeError(
            f"load_fn {getattr(load_fn, '__name__', load_fn)!r} returned "
            f"{type(sample).__name__} for {item!r}; it must return a dict such as "
            "{'data': array, 'label': array} (or a list of such dicts)"
        )
    return sample


class BaseCacheDataset(AbstractDataset):
    """Loads every sample once, up front, with ``load_fn(item, **load_kwargs)``.

    ``data_path`` is a directory (each entry is one item), a file, or a list of
    items. ``load_fn`` returns a sample dict or a list of them.
    """

    def __init__(self, data_path: Any, load_fn: Callable[..., Any], **load_kwargs: Any) -> None:
        super().__init__(data_path, load_fn)
        self.load_kwargs = load_kwargs
        self._samples: list[Sample] = []
        for item in _list_items(data_path):
            loaded = load_fn(item, **load_kwargs)
            for sample in loaded if isinstance(loaded, (list, tuple)) else [loaded]:
                self._samples.append(_check_sample(sample, load_fn, item))

    def __len__(self) -> int:
        return len(self._samples)

    def __getitem__(self, index: int) -> Sample:
        return self._samples[self._check_index(index)]


class BaseLazyDataset(AbstractDataset):
    """Loads a sample only when it is accessed (in the worker that needs it)."""

    def __init__(self, data_path: Any, load_fn: Callable[..., Any], **load_kwargs: Any) -> None:
        super().__init__(data_path, load_fn)
        self.load_kwargs = load_kwargs
        self.items = _list_items(data_path)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Sample:
        item = self.items[self._check_index(index)]
        assert self._load_fn is not None
        return _check_sample(self._load_fn(item, **self.load_kwargs), self._load_fn, item)
