"""Data on batchgenerators: datasets, samplers and the DataManager."""

from epochal.data.datasets import (
    AbstractDataset,
    ArrayDataset,
    BaseCacheDataset,
    BaseLazyDataset,
    SubsetDataset,
)
from epochal.data.loading import EpochDataLoader
from epochal.data.manager import DataManager
from epochal.data.samplers import (
    AbstractSampler,
    BalancedSampler,
    RandomSampler,
    SequentialSampler,
    StratifiedSampler,
    WeightedRandomSampler,
)

__all__ = [
    "AbstractDataset",
    "AbstractSampler",
    "ArrayDataset",
    "BalancedSampler",
    "BaseCacheDataset",
    "BaseLazyDataset",
    "DataManager",
    "EpochDataLoader",
    "RandomSampler",
    "SequentialSampler",
    "StratifiedSampler",
    "SubsetDataset",
    "WeightedRandomSampler",
]
