"""Where a PyTorchNetworkTrainer runs: the CPU or one CUDA device of ``gpu_ids``."""

from __future__ import annotations

import torch

from epochal.job.keys import ConfigKey
from epochal.loop.supervised import supervised_keys
from epochal_torch.distributed import DIST_BACKENDS
from epochal_torch.optim import AMP_OPTIONS

__all__ = ["CONFIG_KEYS", "check_devices", "device_for"]


def device_for(gpu_ids: list[int]) -> torch.device:
    """``cpu`` for ``[]``, ``cuda:i`` for ``[i]``; a missing device names those there are."""
    if not gpu_ids:
        return torch.device("cpu")
    if len(gpu_ids) > 1:
        raise ValueError(
            f"gpu_ids={gpu_ids}: one trainer drives one GPU; for several GPUs run "
            "`torchrun --nproc-per-node N` with one id per process"
        )
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if not isinstance(gpu_ids[0], int) or not 0 <= gpu_ids[0] < count:
        available = f"ids 0..{count - 1}" if count else "none"
        raise ValueError(
            f"gpu_ids={gpu_ids} but this machine's CUDA devices are: {available}; "
            "pass gpu_ids=[] to train on the CPU"
        )
    return torch.device(f"cuda:{gpu_ids[0]}")


def check_devices(gpu_ids: list[int]) -> None:
    """Each of ``gpu_ids`` is a CUDA device of this machine (several: one a process under
    torchrun), else the ``ValueError`` :func:`device_for` gives, naming those there are."""
    for gpu in gpu_ids:
        device_for([gpu])


def _check_dist_backend(name: str) -> None:
    if name not in DIST_BACKENDS:
        raise ValueError(f"dist_backend must be one of {DIST_BACKENDS}, got {name!r}")


def _check_dist_timeout(seconds: float) -> None:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0:
        raise ValueError(f"dist_timeout must be a positive number of seconds, got {seconds!r}")


#: PyTorchNetworkTrainer's ``training.`` keys (its ``config_keys``), checked by name when a job
#: is validated: the supervised ones with torch's AMP options and devices, and its own options.
CONFIG_KEYS = supervised_keys(
    AMP_OPTIONS,
    device_check=check_devices,
    distributed=ConfigKey("boolean"),
    dist_backend=ConfigKey("string", check_value=_check_dist_backend),
    dist_timeout=ConfigKey("number", check_value=_check_dist_timeout),
)
