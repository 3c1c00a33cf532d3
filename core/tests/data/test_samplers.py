"""Samplers: seeded, sharded, and each with its own promise about an epoch."""

from __future__ import annotations

import numpy as np
import pytest

from epochal.data import (
    ArrayDataset,
    BalancedSampler,
    RandomSampler,
    SequentialSampler,
    StratifiedSampler,
    WeightedRandomSampler,
)

LABELS = np.array([0] * 90 + [1] * 10)


def test_sequential():
    assert SequentialSampler(5).epoch_indices(seed=3).tolist() == [0, 1, 2, 3, 4]


def test_random_is_a_seeded_permutation():
    sampler = RandomSampler(50)
    first = sampler.epoch_indices(seed=7)
    assert sorted(first.tolist()) == list(range(50))
    assert first.tolist() == sampler.epoch_indices(seed=7).tolist()
    assert first.tolist() != sampler.epoch_indices(seed=8).tolist()


def test_random_longer_epoch_and_replacement():
    longer = RandomSampler(10, num_samples=25).epoch_indices(seed=0)
    assert len(longer) == 25 and np.bincount(longer).min() >= 2
    with_replacement = RandomSampler(10, replacement=True, num_samples=1000).epoch_indices(seed=0)
    assert len(with_replacement) == 1000 and set(with_replacement.tolist()) == set(range(10))


@pytest.mark.parametrize("replicas", [2, 3])
@pytest.mark.parametrize(
    "make",
    [
        lambda **kw: SequentialSampler(100, **kw),
        lambda **kw: RandomSampler(100, **kw),
        lambda **kw: StratifiedSampler(LABELS, **kw),
    ],
)
def test_shards_are_disjoint_and_cover_the_epoch(make, replicas):
    shards = [
        make(num_replicas=replicas, rank=rank).epoch_indices(seed=5) for rank in range(replicas)
    ]
    merged = np.concatenate(shards)
    assert sorted(merged.tolist()) == list(range(100))
    assert [len(make(num_replicas=replicas, rank=r)) for r in range(replicas)] == [
        len(s) for s in shards
    ]


def test_sharding_arguments_are_checked():
    with pytest.raises(ValueError, match=r"rank must be in \[0, 2\)"):
        SequentialSampler(10, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="num_replicas must be a positive integer"):
        SequentialSampler(10, num_replicas=0)


def test_balanced_draws_classes_equally():
    order = BalancedSampler(LABELS, num_samples=4000).epoch_indices(seed=1)
    share_of_minority = np.mean(LABELS[order] == 1)
    assert 0.45 < share_of_minority < 0.55


def test_stratified_spreads_classes_over_batches():
    order = StratifiedSampler(LABELS).epoch_indices(seed=2)
    assert sorted(order.tolist()) == list(range(100))
    per_batch = [np.sum(LABELS[order[i : i + 20]] == 1) for i in range(0, 100, 20)]
    assert all(1 <= count <= 3 for count in per_batch), per_batch


def test_weighted_never_draws_zero_weight():
    weights = np.array([0.0, 1.0, 3.0, 0.0])
    order = WeightedRandomSampler(weights, num_samples=4000).epoch_indices(seed=0)
    counts = np.bincount(order, minlength=4)
    assert counts[0] == counts[3] == 0
    assert 2.6 < counts[2] / counts[1] < 3.4
    with pytest.raises(ValueError, match="non-negative"):
        WeightedRandomSampler([1.0, -1.0])
    with pytest.raises(ValueError, match="without replacement"):
        WeightedRandomSampler(weights, num_samples=3, replacement=False)


def test_from_dataset_reads_labels():
    dataset = ArrayDataset(data=np.zeros(100), label=LABELS)
    assert len(StratifiedSampler.from_dataset(dataset)) == 100
    with pytest.raises(ValueError, match="needs sampler_kwargs=\\{'weights'"):
        WeightedRandomSampler.from_dataset(dataset)
