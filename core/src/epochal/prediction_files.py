"""``epochal predict``'s files: the data to predict (a registered data set, or a ``.npy``,
``.npz`` or ``.csv`` file) and the predictions written (``.npy`` raw outputs, or ``.csv`` with
the class, the label and the outputs)."""

from __future__ import annotations

import os
from typing import Any

from epochal.errors import ConfigError

__all__ = ["load_inputs", "write_predictions"]


def load_inputs(data: str, experiment: Any) -> Any:
    """A dataset from a registry name, or from a ``.npy``/``.npz``/``.csv`` file."""
    import numpy as np

    from epochal.data.datasets import ArrayDataset

    if not os.path.splitext(data)[1]:
        config = dict(experiment.config)
        config["data"] = {**config["data"], "dataset": data}
        from epochal.build import build_dataset

        return build_dataset(config)
    if not os.path.isfile(data):
        raise ConfigError(f"--data {data!r}: no such file, and a registered data set has no '.'")
    if data.endswith(".npy"):
        return ArrayDataset(data=np.load(data, allow_pickle=False))
    if data.endswith(".npz"):
        with np.load(data, allow_pickle=False) as arrays:
            if "data" not in arrays:
                raise ConfigError(f"--data {data}: an .npz file needs an array named 'data'")
            return ArrayDataset(**{key: arrays[key] for key in arrays.files})
    if data.endswith(".csv"):
        table = np.genfromtxt(data, delimiter=",", names=True, dtype=np.float32)
        names = list(table.dtype.names or ())
        features = [name for name in names if name != "label"]
        arrays = {"data": np.stack([table[name] for name in features], axis=1)}
        if "label" in names:
            arrays["label"] = table["label"].astype(np.int64)
        return ArrayDataset(**arrays)
    raise ConfigError(f"--data {data}: use a data set name, or a .npy, .npz or .csv file")


def write_predictions(out: str, predictions: Any, labels: list[Any]) -> None:
    import numpy as np

    from epochal.files import atomic_write

    if out.endswith(".npy"):
        with atomic_write(out) as handle:
            np.save(handle, predictions)
        return
    flat = predictions.reshape(len(predictions), -1)
    columns = {}
    if flat.shape[1] > 1:
        columns["prediction"] = flat.argmax(axis=1).astype(str)
    if labels:
        columns["label"] = np.asarray(labels[0]).reshape(len(flat), -1)[:, 0].astype(str)
    for index in range(flat.shape[1]):
        columns[f"output_{index}"] = np.char.mod("%.6g", flat[:, index])
    lines = [",".join(columns)] + [",".join(row) for row in zip(*columns.values(), strict=True)]
    with atomic_write(out) as handle:
        handle.write(("\n".join(lines) + "\n").encode())
