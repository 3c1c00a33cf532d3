"""The ``digits`` dataset: scikit-learn's 1797 8x8 handwritten digits, shipped offline."""

from __future__ import annotations

import numpy as np

from epochal.data.datasets import ArrayDataset

__all__ = ["load_digits"]


def load_digits(image: bool = False) -> ArrayDataset:
    """``data``: float32 in [0, 1], 64 features (``(1, 8, 8)`` with ``image``); ``label``: int64."""
    from sklearn.datasets import load_digits as sklearn_load_digits

    bunch = sklearn_load_digits()
    data = (bunch.data / 16.0).astype(np.float32)
    if image:
        data = data.reshape(-1, 1, 8, 8)
    return ArrayDataset(data=data, label=bunch.target.astype(np.int64))
