"""DataManager on real batchgenerators workers: every sample once, reproducible, never hangs."""

from __future__ import annotations

import glob
import os
import random
import signal
import time

import numpy as np
import pytest
from batchgenerators.dataloading.multi_threaded_augmenter import MultiThreadedAugmenter
from batchgenerators.dataloading.single_threaded_augmenter import SingleThreadedAugmenter
from batchgenerators.transforms.noise_transforms import GaussianNoiseTransform

from epochal.data import ArrayDataset, DataManager, EpochDataLoader, RandomSampler
from epochal.data.datasets import BaseLazyDataset
from epochal.errors import DataError, DataWorkerError


def child_pids() -> set[int]:
    """Live child processes of this process, read from the kernel's process tree."""
    pids: set[int] = set()
    for path in glob.glob(f"/proc/{os.getpid()}/task/*/children"):
        with open(path) as handle:
            pids.update(int(pid) for pid in handle.read().split())
    alive = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as handle:
                if handle.read().split(") ")[-1][0] != "Z":
                    alive.add(pid)
        except FileNotFoundError:
            pass
    return alive


def wait_no_children(timeout: float = 5.0) -> set[int]:
    deadline = time.monotonic() + timeout
    while child_pids() and time.monotonic() < deadline:
        time.sleep(0.05)
    return child_pids()


def indexed_dataset(count: int) -> ArrayDataset:
    data = np.random.default_rng(0).normal(size=(count, 1, 4, 4)).astype(np.float32)
    return ArrayDataset(data=data, label=np.arange(count))


def collect(batchgen) -> list[dict]:
    return [{key: value.copy() for key, value in batch.items()} for batch in batchgen]


@pytest.mark.parametrize("workers", [0, 1, 2, 3])
def test_every_sample_once_last_partial_batch_kept(workers):
    manager = DataManager(indexed_dataset(10), 4, workers, sampler_cls=RandomSampler)
    assert manager.n_samples == 10 and manager.n_batches == 3
    batches = collect(manager.get_batchgen(seed=1))
    assert [len(batch["label"]) for batch in batches] == [4, 4, 2]
    assert sorted(np.concatenate([b["label"] for b in batches]).tolist()) == list(range(10))
    assert wait_no_children() == set()


def test_returns_batchgenerators_augmenters():
    assert isinstance(DataManager(indexed_dataset(8), 4, 2).get_batchgen(), MultiThreadedAugmenter)
    assert isinstance(DataManager(indexed_dataset(8), 4, 0).get_batchgen(), SingleThreadedAugmenter)


def test_same_seed_same_batches_whatever_the_worker_count():
    transform = GaussianNoiseTransform(noise_variance=(0.1, 0.5), p_per_sample=1.0)
    epochs = {}
    for workers in (0, 2, 3):
        manager = DataManager(
            indexed_dataset(37), 5, workers, transforms=[transform], sampler_cls="random"
        )
        epochs[workers] = collect(manager.get_batchgen(seed=42))
    for workers in (2, 3):
        assert len(epochs[workers]) == len(epochs[0]) == 8
        for ours, reference in zip(epochs[workers], epochs[0], strict=True):
            np.testing.assert_array_equal(ours["label"], reference["label"])
            np.testing.assert_array_equal(ours["data"], reference["data"])
    unaugmented = indexed_dataset(37).get_batch(epochs[0][0]["label"])["data"]
    assert not np.allclose(unaugmented, epochs[0][0]["data"])  # the transform really ran
    other_seed = collect(
        DataManager(indexed_dataset(37), 5, 0, sampler_cls="random").get_batchgen(seed=43)
    )
    assert other_seed[0]["label"].tolist() != epochs[0][0]["label"].tolist()


def test_in_process_augmentation_leaves_the_users_rng_alone():
    transform = GaussianNoiseTransform(p_per_sample=1.0)
    manager = DataManager(indexed_dataset(12), 4, 0, transforms=transform)
    np.random.seed(123)
    random.seed(123)
    expected = (np.random.uniform(size=3).tolist(), random.random())
    np.random.seed(123)
    random.seed(123)
    collect(manager.get_batchgen(seed=0))
    assert (np.random.uniform(size=3).tolist(), random.random()) == expected


def test_manager_seed_combines_with_call_seed():
    def first_labels(seed):
        manager = DataManager(indexed_dataset(30), 30, 0, sampler_cls=RandomSampler, seed=seed)
        return next(iter(manager.get_batchgen(seed=1)))["label"].tolist()

    assert first_labels(5) == first_labels(5)
    assert first_labels(5) != first_labels(6)


def test_sharded_managers_split_the_epoch():
    labels = []
    for rank in range(2):
        manager = DataManager(
            indexed_dataset(21),
            4,
            1,
            sampler_cls=RandomSampler,
            sampler_kwargs={"num_replicas": 2, "rank": rank},
        )
        labels.append(np.concatenate([b["label"] for b in manager.get_batchgen(seed=9)]))
    assert not set(labels[0].tolist()) & set(labels[1].tolist())
    assert sorted(np.concatenate(labels).tolist()) == list(range(21))


class TaggingLoader(EpochDataLoader):
    def load_batch(self, batch_nr):
        batch = super().load_batch(batch_nr)
        batch["batch_nr"] = np.full(len(batch["label"]), batch_nr)
        return batch


def test_custom_data_loader_class():
    manager = DataManager(indexed_dataset(9), 4, 2, data_loader_cls=TaggingLoader)
    assert [int(b["batch_nr"][0]) for b in manager.get_batchgen()] == [0, 1, 2]
    with pytest.raises(TypeError, match=r"subclass of epochal\.data\.EpochDataLoader"):
        DataManager(indexed_dataset(9), 4, 0, data_loader_cls=dict)


def load_sample(path):
    with np.load(path) as archive:
        return {"data": archive["data"], "label": archive["label"]}


def test_path_with_load_fn_loads_lazily_in_the_workers(tmp_path):
    for index in range(6):
        np.savez(tmp_path / f"{index}.npz", data=np.full(3, index, np.float32), label=index)
    manager = DataManager(str(tmp_path), 4, 2, load_fn=load_sample)
    assert isinstance(manager.dataset, BaseLazyDataset)
    labels = np.concatenate([b["label"] for b in manager.get_batchgen()])
    assert sorted(labels.tolist()) == list(range(6))


def failing_load(path):
    if path.endswith("3.npz"):
        raise ValueError(f"corrupt file {os.path.basename(path)}")
    return load_sample(path)


@pytest.mark.slow
@pytest.mark.timeout(60)
@pytest.mark.parametrize("workers", [0, 2])
def test_worker_exception_reaches_the_main_process(tmp_path, workers):
    for index in range(8):
        np.savez(tmp_path / f"{index}.npz", data=np.zeros(2, np.float32), label=index)
    manager = DataManager(str(tmp_path), 2, workers, load_fn=failing_load)
    started = time.monotonic()
    with pytest.raises(DataWorkerError) as info:
        collect(manager.get_batchgen())
    assert time.monotonic() - started < 10
    message = str(info.value)
    assert "failed on batch 1: ValueError: corrupt file 3.npz" in message
    assert "failing_load" in message  # the worker's own traceback
    assert isinstance(info.value.__cause__, ValueError)
    assert wait_no_children() == set()


def killing_load(item):
    if item == 5:
        os.kill(os.getpid(), signal.SIGKILL)  # what the OOM killer does
    return {"data": np.zeros(2, np.float32), "label": np.asarray(item)}


@pytest.mark.slow
@pytest.mark.timeout(60)
# batchgenerators' own result thread also prints its RuntimeError; ours is the one raised.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_killed_worker_is_reported_never_hangs():
    manager = DataManager(list(range(12)), 2, 2, load_fn=killing_load)
    started = time.monotonic()
    with pytest.raises(DataWorkerError, match=r"data worker \d was killed by SIGKILL \(signal 9\)"):
        collect(manager.get_batchgen())
    assert time.monotonic() - started < 10
    assert wait_no_children() == set()


def test_bad_arguments_get_clear_errors():
    dataset = indexed_dataset(10)
    with pytest.raises(DataError, match="dataset is empty"):
        DataManager(ArrayDataset(data=np.zeros((0, 2))), 4, 0)
    with pytest.raises(DataError, match="batch_size 11 is larger than the 10 samples"):
        DataManager(dataset, 11, 0)
    with pytest.raises(DataError, match="batch_size must be at least 1"):
        DataManager(dataset, 0, 0)
    with pytest.raises(ValueError, match="n_process_augmentation must be an integer >= 0"):
        DataManager(dataset, 2, -1)
    with pytest.raises(TypeError, match="AbstractSampler subclass"):
        DataManager(dataset, 2, 0, sampler_cls=list)
    with pytest.raises(
        TypeError, match=r"sampler_kwargs \{'shuffle': True\} do not fit RandomSampler"
    ):
        DataManager(dataset, 2, 0, sampler_cls=RandomSampler, sampler_kwargs={"shuffle": True})
    with pytest.raises(TypeError, match="no load_fn was given"):
        DataManager("/some/folder", 2, 0)
    with pytest.raises(TypeError, match="batchgenerators transform"):
        DataManager(dataset, 2, 0, transforms=42)


def test_get_subset_keeps_settings():
    manager = DataManager(indexed_dataset(10), 2, 0, sampler_cls=RandomSampler, seed=3)
    subset = manager.get_subset([1, 3, 5, 7])
    assert subset.n_samples == 4 and subset.sampler_cls is RandomSampler and subset.seed == 3
    assert sorted(np.concatenate([b["label"] for b in subset.get_batchgen()]).tolist()) == [
        1,
        3,
        5,
        7,
    ]


EXIT_MID_EPOCH = """
import numpy as np
from epochal.data import ArrayDataset, DataManager
manager = DataManager(ArrayDataset(data=np.zeros((3200, 1, 64, 64), np.float32)), 32, 2)
batches = iter(manager.get_batchgen(seed=0))
for _ in range(5):
    next(batches)
print("leaving with the epoch half done", flush=True)
"""


@pytest.mark.slow
def test_interpreter_exit_mid_epoch_does_not_hang(tmp_path):
    # multiprocessing kills daemon workers at exit, possibly mid-write; without closing the
    # live augmenters first, batchgenerators' cleanup blocks forever on the half message.
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", EXIT_MID_EPOCH], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "leaving with the epoch half done" in result.stdout
