"""Where a PyTorchNetworkTrainer runs: the CPU or one CUDA device of ``gpu_ids``."""

from __future__ import annotations

import torch

__all__ = ["device_for"]


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
