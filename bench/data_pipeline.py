"""Batches per second: epochal's DataManager against torch's DataLoader, same work.

What is measured: full epochs of N=3200 samples (data float32 (N, 1, 64, 64),
label int64 (N,)) in random order, in batches of 32 (100 batches per epoch).
Every batch goes through ONE batchgenerators transform, the same object for
both sides: ``SpatialTransform`` (rotation +-0.5 rad and scale 0.85-1.15, each
with p=0.5 per sample, cubic interpolation, centre crop to 64x64, no elastic
deformation): a genuinely spatial transform, about 6 ms per batch on one core
here. ``--quick`` runs 640 samples and one measured epoch (a smoke run).

* epochal: ``DataManager(ArrayDataset(...), 32, workers, transforms=...,
  sampler_cls=RandomSampler)``; one ``dm.get_batchgen(seed=epoch)`` per epoch,
  which starts and stops its worker processes every epoch.
* torch: ``DataLoader(dataset, sampler=BatchSampler(RandomSampler), batch_size=None)``
  where the dataset's ``__getitem__`` takes the list of indices of a whole
  batch, gathers the arrays by fancy indexing (as ``ArrayDataset.get_batch``
  does) and applies the transform. ``collate_fn`` is the identity, so both
  sides yield dicts of numpy arrays, pickled through a pipe from the workers.
  ``persistent_workers=False`` matches epochal's per-epoch workers; the
  ``persistent_workers=True`` row is for information only.

Both run 0 and 2 workers. Threads: torch.set_num_threads(1) and
threadpoolctl's limit of 1 BLAS/OpenMP thread in the main process (workers are
single-threaded on both sides). One warm-up epoch per configuration, then the
configurations are interleaved epoch by epoch so that machine noise hits them
alike; the median of batches/s is reported. An epoch's time includes starting
and stopping its workers (neither side keeps them between epochs, except the
information row). Target: epochal / DataLoader >= 0.9 for both worker counts.
Why: epochal must not make the data pipeline the bottleneck compared with what
a PyTorch user would write.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from batchgenerators.transforms.spatial_transforms import SpatialTransform
from threadpoolctl import threadpool_limits
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler

from epochal.data import ArrayDataset, DataManager
from epochal.data import RandomSampler as EpochalRandomSampler

BATCH_SIZE = 32
TARGET_RATIO = 0.9
EPOCHAL = "epochal DataManager"
TORCH = "torch DataLoader"
TORCH_PERSISTENT = "torch DataLoader persistent (info)"
Config = tuple[str, int]  # (pipeline, worker processes)
RunEpoch = Callable[[int], int]  # epoch number -> samples seen


def make_transform() -> SpatialTransform:
    return SpatialTransform(
        patch_size=(64, 64),
        do_elastic_deform=False,
        do_rotation=True,
        angle_x=(-0.5, 0.5),
        do_scale=True,
        scale=(0.85, 1.15),
        random_crop=False,
        p_rot_per_sample=0.5,
        p_scale_per_sample=0.5,
        border_mode_data="constant",
        order_data=3,
    )


class BatchArrays(Dataset):
    """A torch dataset whose items are whole batches: ``ds[[i, j, ...]]``."""

    def __init__(self, arrays: dict[str, np.ndarray], transform: Any) -> None:
        self.arrays = arrays
        self.transform = transform

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values())))

    def __getitem__(self, indices: list[int]) -> dict[str, np.ndarray]:
        idx = np.asarray(indices, dtype=np.int64)
        return self.transform(**{key: value[idx] for key, value in self.arrays.items()})


def _identity(batch: Any) -> Any:
    return batch


def _seed_numpy(worker_id: int) -> None:
    np.random.seed(torch.initial_seed() % 2**32)  # distinct augmentation per worker


def epochal_runner(arrays: dict[str, np.ndarray], transform: Any, workers: int) -> RunEpoch:
    dm = DataManager(
        ArrayDataset(**arrays),
        BATCH_SIZE,
        workers,
        transforms=transform,
        sampler_cls=EpochalRandomSampler,
    )

    def run(epoch: int) -> int:
        return sum(len(batch["data"]) for batch in dm.get_batchgen(seed=epoch))

    return run


def torch_runner(
    arrays: dict[str, np.ndarray], transform: Any, workers: int, persistent: bool
) -> RunEpoch:
    dataset = BatchArrays(arrays, transform)
    sampler = BatchSampler(
        RandomSampler(dataset, generator=torch.Generator().manual_seed(0)), BATCH_SIZE, False
    )
    loader = DataLoader(
        dataset,
        sampler=sampler,
        batch_size=None,
        num_workers=workers,
        collate_fn=_identity,
        persistent_workers=persistent and workers > 0,
        worker_init_fn=_seed_numpy if workers else None,
    )

    def run(epoch: int) -> int:
        return sum(len(batch["data"]) for batch in loader)

    return run


def measure(
    runners: dict[Config, RunEpoch], epochs: int, n_samples: int
) -> dict[Config, list[float]]:
    """Batches/s of each epoch, configurations interleaved after one warm-up each."""
    n_batches = -(-n_samples // BATCH_SIZE)
    for config, run in runners.items():
        assert run(10**6) == n_samples, f"{config} did not yield every sample once"
    rates: dict[Config, list[float]] = {config: [] for config in runners}
    for epoch in range(epochs):
        for config, run in runners.items():
            start = time.perf_counter()
            seen = run(epoch)
            rates[config].append(n_batches / (time.perf_counter() - start))
            assert seen == n_samples, f"{config} yielded {seen} samples, not {n_samples}"
    return rates


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small epochs, one repeat (smoke run)")
    parser.add_argument("--epochs", type=int, default=None, help="measured epochs (default 7)")
    args = parser.parse_args(argv)
    n_samples = 640 if args.quick else 3200
    epochs = args.epochs or (1 if args.quick else 7)

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    arrays = {
        "data": rng.standard_normal((n_samples, 1, 64, 64), dtype=np.float32),
        "label": rng.integers(0, 10, n_samples, dtype=np.int64),
    }
    transform = make_transform()
    runners: dict[Config, RunEpoch] = {
        (EPOCHAL, 0): epochal_runner(arrays, transform, 0),
        (TORCH, 0): torch_runner(arrays, transform, 0, persistent=False),
        (EPOCHAL, 2): epochal_runner(arrays, transform, 2),
        (TORCH, 2): torch_runner(arrays, transform, 2, persistent=False),
        (TORCH_PERSISTENT, 2): torch_runner(arrays, transform, 2, persistent=True),
    }
    with threadpool_limits(limits=1):
        rates = measure(runners, epochs, n_samples)

    n_batches = -(-n_samples // BATCH_SIZE)
    print(
        f"{n_samples} samples, batch {BATCH_SIZE} ({n_batches} batches/epoch), "
        f"SpatialTransform rot+scale, {epochs} measured epochs, torch threads=1"
    )
    print(f"{'pipeline':<38}{'workers':>8}{'batches/s':>11}{'min':>8}{'max':>8}")
    medians: dict[Config, float] = {}
    for (name, workers), values in rates.items():
        medians[name, workers] = median = statistics.median(values)
        print(f"{name:<38}{workers:>8}{median:>11.1f}{min(values):>8.1f}{max(values):>8.1f}")
    ratios = {w: medians[EPOCHAL, w] / medians[TORCH, w] for w in (0, 2)}
    met = all(ratio >= TARGET_RATIO for ratio in ratios.values())
    summary = ", ".join(f"{w} workers {ratio:.2f}" for w, ratio in ratios.items())
    print(
        f"ratio epochal/DataLoader: {summary} (target >= {TARGET_RATIO}): "
        f"{'TARGET MET' if met else 'TARGET MISSED'}"
    )


if __name__ == "__main__":
    main()
