"""Datasets: arrays, files loaded up front or lazily, subsets and splits."""

from __future__ import annotations

import numpy as np
import pytest

from epochal.data import ArrayDataset, BaseCacheDataset, BaseLazyDataset
from epochal.errors import DataError


def _write_samples(folder, count):
    for index in range(count):
        np.savez(
            folder / f"sample_{index:03d}.npz",
            data=np.full((2, 3), index, np.float32),
            label=index % 3,
        )
    return folder


def load_npz(path, scale=1.0):
    with np.load(path) as archive:
        return {"data": archive["data"] * scale, "label": archive["label"]}


def test_array_dataset_samples_and_batches():
    dataset = ArrayDataset(data=np.arange(20).reshape(10, 2), label=np.arange(10) % 2)
    assert len(dataset) == 10
    assert dataset[3]["data"].tolist() == [6, 7] and dataset[-1]["label"] == 1
    batch = dataset.get_batch([4, 1])
    assert batch["data"].tolist() == [[8, 9], [2, 3]] and batch["label"].tolist() == [0, 1]
    with pytest.raises(IndexError, match="out of range for a dataset of 10 samples"):
        dataset[10]


def test_array_dataset_refuses_mismatched_lengths():
    with pytest.raises(DataError, match="share their first axis"):
        ArrayDataset(data=np.zeros((5, 2)), label=np.zeros(4))
    with pytest.raises(DataError, match="at least one array"):
        ArrayDataset()


def test_cache_dataset_loads_real_files_once(tmp_path):
    _write_samples(tmp_path, 5)
    calls = []

    def counting_load(path, scale):
        calls.append(path)
        return load_npz(path, scale)

    dataset = BaseCacheDataset(tmp_path, counting_load, scale=2.0)
    assert len(dataset) == 5 and len(calls) == 5
    assert dataset[4]["data"][0, 0] == 8.0
    dataset.get_batch([0, 1, 2])
    assert len(calls) == 5  # cached: nothing loaded again


def test_cache_dataset_accepts_lists_of_samples(tmp_path):
    _write_samples(tmp_path, 2)

    def two_per_file(path):
        sample = load_npz(path)
        return [sample, sample]

    assert len(BaseCacheDataset(tmp_path, two_per_file)) == 4


def test_lazy_dataset_loads_on_access(tmp_path):
    _write_samples(tmp_path, 4)
    calls = []

    def counting_load(path):
        calls.append(path)
        return load_npz(path)

    dataset = BaseLazyDataset(tmp_path, counting_load)
    assert len(dataset) == 4 and calls == []
    assert dataset[2]["label"] == 2
    assert len(calls) == 1


def test_file_dataset_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        BaseCacheDataset(tmp_path / "missing", load_npz)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="empty directory"):
        BaseLazyDataset(empty, load_npz)
    _write_samples(tmp_path, 1)
    with pytest.raises(TypeError, match="must return a dict"):
        BaseCacheDataset(tmp_path / "sample_000.npz", lambda path: np.zeros(3))


def test_stacking_names_the_bad_key(tmp_path):
    items = [{"data": np.zeros(3)}, {"data": np.zeros(4)}]
    dataset = BaseCacheDataset(items, lambda item: item)
    with pytest.raises(DataError, match=r"different shapes for key 'data': \[\(3,\), \(4,\)\]"):
        dataset.get_batch([0, 1])


def test_subset_is_a_view_with_fast_batches():
    dataset = ArrayDataset(data=np.arange(10), label=np.arange(10) % 2)
    subset = dataset.get_subset([7, 2, 5])
    assert len(subset) == 3 and subset[0]["data"] == 7
    assert subset.get_batch([2, 0])["data"].tolist() == [5, 7]
    assert subset.labels().tolist() == [1, 0, 1]


def test_train_test_split_stratified():
    labels = np.array([0] * 80 + [1] * 20)
    dataset = ArrayDataset(data=np.arange(100), label=labels)
    train, test = dataset.train_test_split(test_size=0.25, random_state=0, stratify="label")
    assert len(train) == 75 and len(test) == 25
    assert set(train.indices) | set(test.indices) == set(range(100))
    assert np.mean(test.labels()) == pytest.approx(0.2, abs=0.01)


def test_kfold_covers_every_sample_once():
    dataset = ArrayDataset(data=np.arange(23), label=np.arange(23) % 3)
    tests = [test.indices for _, test in dataset.kfold(n_splits=5, random_state=1)]
    assert sorted(np.concatenate(tests).tolist()) == list(range(23))
    for train, test in dataset.kfold(n_splits=5, random_state=1):
        assert not set(train.indices) & set(test.indices)


def test_stratified_kfold_keeps_class_shares():
    labels = np.array([0] * 50 + [1] * 10)
    dataset = ArrayDataset(data=np.arange(60), label=labels)
    for _, test in dataset.stratified_kfold(n_splits=5, random_state=0):
        assert (test.labels() == 1).sum() == 2


def test_labels_need_one_class_per_sample():
    dataset = ArrayDataset(data=np.zeros((4, 2)), label=np.zeros((4, 3)))
    with pytest.raises(DataError, match="one class label per sample"):
        dataset.labels()
    assert ArrayDataset(data=np.zeros(4), label=np.zeros((4, 1))).labels().shape == (4,)
