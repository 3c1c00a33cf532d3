"""Where a TfNetworkTrainer without a strategy runs: the CPU or one GPU of ``gpu_ids``."""

from __future__ import annotations

from epochal.job.keys import ConfigKey
from epochal.loop.supervised import supervised_keys
from epochal_tf._tf import tf
from epochal_tf.optim import PRECISION_OPTIONS
from epochal_tf.strategies import check_strategy

__all__ = ["CONFIG_KEYS", "check_devices", "device_for"]


def device_for(gpu_ids: list[int]) -> str:
    """``"/CPU:0"`` for ``[]``, ``"/GPU:i"`` for ``[i]``; a missing GPU names those there are."""
    if not gpu_ids:
        return "/CPU:0"
    if len(gpu_ids) > 1:
        raise ValueError(
            f"gpu_ids={gpu_ids}: one trainer drives one GPU; for several GPUs use a "
            "tf.distribute strategy with one id per trainer"
        )
    count = len(tf.config.list_physical_devices("GPU"))
    if isinstance(gpu_ids[0], bool) or not isinstance(gpu_ids[0], int):
        raise ValueError(f"gpu_ids must be integers, got {gpu_ids!r}")
    if not 0 <= gpu_ids[0] < count:
        available = f"ids 0..{count - 1}" if count else "none"
        raise ValueError(
            f"gpu_ids={gpu_ids} but TensorFlow sees these GPUs: {available}; "
            "pass gpu_ids=[] to train on the CPU"
        )
    return f"/GPU:{gpu_ids[0]}"


def check_devices(gpu_ids: list[int]) -> None:
    """Each of ``gpu_ids`` is a GPU TensorFlow sees (several: a mirrored strategy's), else the
    ``ValueError`` :func:`device_for` gives, naming those there are."""
    for gpu in gpu_ids:
        device_for([gpu])


#: TfNetworkTrainer's ``training.`` keys (its ``config_keys``), checked by name when a job is
#: validated: the supervised ones with Keras's mixed-precision options and the GPUs, and its
#: strategy.
CONFIG_KEYS = supervised_keys(
    PRECISION_OPTIONS,
    device_check=check_devices,
    strategy=ConfigKey("string", check_value=check_strategy),
)
