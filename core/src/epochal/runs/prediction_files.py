"""``epochal predict``'s files: the data to predict (a registered data set, or a ``.npy``,
``.npz`` or ``.csv`` file) and the predictions written (``.npy`` raw outputs, or ``.csv`` with
the class, the label and the outputs).

A file is checked against the run's own training samples before the model sees it: the
sample shape, a dtype of the same kind (floats for a model trained on floats), finite values,
whole-number labels in range of the run's classes, and for a CSV every cell a number. Each
problem is one :class:`~epochal.errors.DataError` naming the file, the sample (or line and
column) and what is allowed, instead of a shape error from deep inside the framework, a NaN that
silently became a prediction, or a label that became -9223372036854775808.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from epochal.errors import ConfigError, DataError

__all__ = ["SampleSpec", "check_arrays", "check_out", "load_inputs", "write_predictions"]

#: dtype kinds that can be converted into each other without changing what a value means.
_FAMILIES = {"f": "f", "i": "iu", "u": "iu", "b": "b", "c": "c"}
_KIND_WORDS = {"f": "floating-point", "i": "integer", "u": "integer", "b": "boolean",
               "c": "complex"}  # fmt: skip


@dataclass(frozen=True)
class SampleSpec:
    """What one training sample of a run holds: per key its shape and dtype, and for class
    labels the number of classes (``None`` where counting them would load a lazy data set)."""

    shapes: dict[str, tuple[int, ...]]
    dtypes: dict[str, Any]
    classes: int | None = None
    #: Negative labels the training data held (a loss's ``ignore_index``, e.g. -100).
    ignored: frozenset[int] = frozenset()

    @property
    def class_labels(self) -> bool:
        """Whether ``label`` holds one integer class index per sample."""
        dtype = self.dtypes.get("label")
        return dtype is not None and dtype.kind in "iu" and math.prod(self.shapes["label"]) == 1

    @classmethod
    def of_dataset(cls, dataset: Any) -> SampleSpec:
        """The spec of ``dataset``'s first sample; classes from the labels of an in-memory set."""
        import numpy as np

        from epochal.data.datasets import ArrayDataset, BaseCacheDataset

        shapes, dtypes = {}, {}
        for key, value in dataset[0].items():
            if isinstance(value, (np.ndarray, np.generic, int, float)):  # not paths or names
                array = np.asarray(value)
                shapes[key], dtypes[key] = array.shape, array.dtype
        spec = cls(shapes, dtypes)
        if not spec.class_labels or not isinstance(dataset, (ArrayDataset, BaseCacheDataset)):
            return spec
        labels = np.asarray(dataset.labels("label"))  # in memory: one cheap pass
        if not labels.size or labels.max() < 0:
            return spec
        ignored = frozenset(int(value) for value in np.unique(labels[labels < 0]))
        return cls(shapes, dtypes, int(labels.max()) + 1, ignored)


def load_inputs(data: str, config: Mapping[str, Any]) -> Any:
    """The dataset to predict: a registry name (built with the run's ``dataset_params``), or a
    ``.npy``/``.npz``/``.csv`` file checked against the run's training samples."""
    from epochal.data.datasets import ArrayDataset
    from epochal.job.build import build_dataset

    source = f"--data {data}"
    if not os.path.splitext(data)[1]:
        if data == config["data"]["dataset"]:
            return build_dataset(config)  # the run's own data set: it fits
        dataset = build_dataset({**config, "data": {**config["data"], "dataset": data}})
        spec = _training_spec(config)
        if spec is not None:
            _check_first_sample(dataset, spec, source)
        return dataset
    if not os.path.isfile(data):
        raise ConfigError(f"--data {data!r}: no such file, and a registered data set has no '.'")
    extension = os.path.splitext(data)[1].lower()
    if extension not in (".npy", ".npz", ".csv"):
        raise ConfigError(f"--data {data}: use a data set name, or a .npy, .npz or .csv file")
    spec = _training_spec(config)
    if extension == ".csv":
        arrays, where = _read_csv(data, spec, source)
        return ArrayDataset(**check_arrays(arrays, spec, source, where))
    return ArrayDataset(**check_arrays(_load_numpy(data, source), spec, source))


def _training_spec(config: Mapping[str, Any]) -> SampleSpec | None:
    """The run's sample spec, or ``None`` (and a note) when its data set cannot be built any
    more: predicting a file must not need the training data to still be there."""
    from epochal.job.build import build_dataset

    try:
        spec = SampleSpec.of_dataset(build_dataset(config))
    except Exception as exc:  # noqa: BLE001 - any failure only loses the shape check
        import click

        click.echo(
            f"epochal: note: the run's data set {config['data']['dataset']!r} cannot be built "
            f"({exc}); the file is checked without the training samples' shape",
            err=True,
        )
        return None
    return spec if "data" in spec.shapes else None  # no array 'data': nothing to compare


def _check_first_sample(dataset: Any, spec: SampleSpec, source: str) -> None:
    """Another registered data set: its first sample's ``data`` must fit the run (a full pass
    could load a lazy data set twice)."""
    import numpy as np

    if len(dataset) == 0:
        raise DataError(f"{source}: the data set is empty")
    value = dataset[0].get("data")
    if value is None:
        return
    value = np.asarray(value)
    shape, dtype = spec.shapes["data"], spec.dtypes["data"]
    if value.shape != shape or value.dtype.kind not in _FAMILIES.get(dtype.kind, dtype.kind):
        raise DataError(
            f"{source}: its samples have shape {value.shape} ({value.dtype}), but the run was "
            f"trained on samples of shape {shape} ({dtype})"
        )


def _load_numpy(path: str, source: str) -> dict[str, Any]:
    """``{"data": array}`` from a ``.npy`` file, every array of an ``.npz`` one (by content:
    ``np.load`` reads either); never a pickle."""
    import zipfile

    import numpy as np

    def unreadable(exc: Exception) -> DataError:
        if "allow_pickle" in str(exc):  # numpy's refusal of an object array
            return DataError(
                f"{source}: the file holds Python objects (dtype object), which epochal does "
                "not load (no pickle); save a numeric array"
            )
        return DataError(f"{source}: not a readable .npy or .npz file ({exc})")

    try:
        with open(path, "rb") as handle:
            magic = handle.read(6)
    except OSError as exc:
        raise DataError(f"{source}: cannot read the file ({exc.strerror})") from None
    if magic != b"\x93NUMPY" and not magic.startswith(b"PK"):
        # np.load would take anything else for a pickle
        raise DataError(f"{source}: not a .npy or .npz file (save it with np.save or np.savez)")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise unreadable(exc) from None
    if isinstance(loaded, np.ndarray):
        return {"data": loaded}
    with loaded:
        try:
            arrays = {key: loaded[key] for key in loaded.files}
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise unreadable(exc) from None
    if "data" not in arrays:
        raise DataError(
            f"{source}: an .npz file needs an array named 'data' (and optionally 'label'); "
            f"it has {sorted(arrays) or 'none'}"
        )
    return arrays


def _read_csv(
    path: str, spec: SampleSpec | None, source: str
) -> tuple[dict[str, Any], Callable[[int], str]]:
    """``data`` (and ``label``) from a CSV file with a header line; every cell must be a finite
    number. Returns the arrays and a namer of sample ``i``'s line."""
    import numpy as np

    lines: list[int] = []
    rows: list[list[str]] = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue  # a blank line, e.g. at the end
                if len(row) != len(header or ()):
                    raise DataError(
                        f"{source}, line {reader.line_num}: {len(row)} cells, but the header "
                        f"names {len(header or ())} columns"
                    )
                rows.append(row)
                lines.append(reader.line_num)
    except UnicodeDecodeError:
        raise DataError(f"{source}: not UTF-8 text; save the table as a CSV text file") from None
    except csv.Error as exc:
        raise DataError(f"{source}, line {reader.line_num}: {exc}") from None
    except OSError as exc:
        raise DataError(f"{source}: cannot read the file ({exc.strerror})") from None
    if not header:
        raise DataError(f"{source}: no header; the first line must name the columns")
    names = [name.strip() for name in header]
    if all(_is_number(name) for name in names):
        raise DataError(
            f"{source}: line 1 holds numbers; the first line must name the columns "
            "(e.g. f0,f1,...,label)"
        )
    if names.count("label") > 1:
        raise DataError(f"{source}: {names.count('label')} columns are named 'label'; keep one")
    if not rows:
        raise DataError(f"{source}: no rows under the header line")
    features = [index for index, name in enumerate(names) if name != "label"]
    shape = spec.shapes.get("data") if spec else None
    if shape is not None and len(features) != math.prod(shape):
        raise DataError(
            f"{source}: {len(features)} feature columns, but the run was trained on samples of "
            f"shape {shape}: {math.prod(shape)} columns (every column but 'label' is a feature)"
        )
    table = np.array(rows, dtype=str)
    whole = spec is not None and spec.dtypes["data"].kind in "iu"
    values = _numbers(table, features, names, lines, source, whole)
    # float64 or int64 here: check_arrays converts to the run's dtype and names what overflows
    dtype = np.int64 if whole else np.float64 if spec else np.float32
    arrays = {"data": values.astype(dtype).reshape(len(rows), *(shape or (len(features),)))}
    if "label" in names:
        column = names.index("label")
        label = _numbers(table, [column], names, lines, source, False)[:, 0]
        if spec is None and np.array_equal(label, np.round(label)):
            label = label.astype(np.int64)  # whole numbers: class indices, as far as we know
        arrays["label"] = label
    return arrays, lambda index: f"line {lines[index]}"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _numbers(
    table: Any,
    columns: list[int],
    names: list[str],
    lines: list[int],
    source: str,
    whole: bool,
) -> Any:
    """``table[:, columns]`` as float64; the first cell that is no finite number (or, with
    ``whole``, no whole number) is named by line and column."""
    import numpy as np

    cells = table[:, columns]
    try:
        values = cells.astype(np.float64)
        bad = ~np.isfinite(values)
        if whole:
            bad |= np.isfinite(values) & (values != np.round(values))
    except ValueError:  # some cell is not a number: find the first one
        values = None
        bad = np.array([[not _is_number(cell) for cell in row] for row in cells])
    if not bad.any():
        return values
    row, col = (int(index) for index in np.argwhere(bad)[0])
    cell = str(cells[row, col])
    if not _is_number(cell):
        what, allowed = "not a number", "every cell must be a number"
    elif not math.isfinite(float(cell)):
        what, allowed = "not a finite number", "NaN and Inf cannot be predicted"
    else:
        what, allowed = "not a whole number", "the run was trained on whole numbers"
    raise DataError(
        f"{source}, line {lines[row]}, column {names[columns[col]]!r}: {cell!r} is {what}; "
        f"{allowed}"
    )


def check_arrays(
    arrays: Mapping[str, Any],
    spec: SampleSpec | None,
    source: str,
    where: Callable[[int], str] | None = None,
) -> dict[str, Any]:
    """The arrays of a file to predict, converted to the run's dtypes.

    ``spec`` (``None``: unknown) gives the training samples' shapes and dtypes; ``where(i)``
    names sample ``i`` in messages (default ``sample at index i``). Anything the model
    could not take raises a :class:`DataError` starting with ``source``.
    """
    import numpy as np

    name = where or (lambda index: f"sample at index {index}")
    if "data" not in arrays:
        raise DataError(f"{source}: no array 'data' (it has {sorted(arrays)})")
    known = sorted(spec.shapes) if spec else ["data", "label"]
    extra = sorted(set(arrays) - set(known))
    if extra:
        raise DataError(
            f"{source}: {extra[0]!r} is not a key of the run's samples ({', '.join(known)}); "
            "remove it"
        )
    checked = {}
    for key in sorted(arrays, key=lambda key: key != "data"):  # data first
        array = np.asarray(arrays[key])
        if key == "label" and (spec.class_labels if spec else array.dtype.kind in "iu"):
            checked[key] = _class_labels(array, spec, source, name)
        else:
            checked[key] = _values(key, array, spec, source, name)
    samples = len(checked["data"])
    for key, array in checked.items():
        if len(array) != samples:
            raise DataError(
                f"{source}: {key!r} has {len(array)} entries, but 'data' has {samples} samples; "
                "every array needs one entry per sample"
            )
    return checked


def _axis_shape(shape: tuple[int, ...]) -> str:
    """``(N, 64)``: the shape of an array of samples of ``shape``."""
    return "(" + ", ".join(["N", *map(str, shape)]) + (",)" if not shape else ")")


def _dtype_words(dtype: Any) -> str:
    if dtype.names:
        return f"a structured dtype with fields {', '.join(dtype.names)}"
    words = {"U": "text", "S": "bytes", "O": "Python objects", "V": "raw bytes",
             "M": "dates", "m": "time spans"}  # fmt: skip
    kind = _KIND_WORDS.get(dtype.kind) or words.get(dtype.kind, "an unknown kind")
    return f"dtype {dtype} ({kind})"


def _values(
    key: str, array: Any, spec: SampleSpec | None, source: str, name: Callable[[int], str]
) -> Any:
    """``data`` or another array key: the training shape, a dtype of the training kind, finite
    values; converted to the training dtype."""
    import numpy as np

    what = "the data" if key == "data" else f"{key!r}"
    shape = spec.shapes[key] if spec else None
    dtype = spec.dtypes[key] if spec else None
    if array.ndim == 0:
        raise DataError(
            f"{source}: {what} is a single value; it needs a first axis that counts the samples"
            + (f", shape {_axis_shape(shape)}" if shape is not None else "")
        )
    if len(array) == 0:
        raise DataError(f"{source}: {what} has no samples (shape {array.shape})")
    allowed = _FAMILIES.get(dtype.kind, dtype.kind) if dtype is not None else "fiu"
    if array.dtype.kind not in allowed or array.dtype.names:
        trained = (
            f"the run was trained on {dtype} {'samples' if key == 'data' else repr(key)}"
            if dtype is not None
            else "a model takes real numbers"
        )
        fix = _KIND_WORDS.get(dtype.kind, str(dtype)) if dtype is not None else "numeric"
        raise DataError(
            f"{source}: {what} has {_dtype_words(array.dtype)}, but {trained}; save {fix} "
            f"values" + (f" (x.astype('{dtype}'), scaled as in training)" if dtype else "")
        )
    if shape is not None and array.shape[1:] != shape:
        one = "; for one sample, add a first axis: x[None]" if array.shape == shape else ""
        samples = "samples" if key == "data" else f"{key!r} entries"
        raise DataError(
            f"{source}: {samples} have shape {array.shape[1:]}, but the run was trained on "
            f"{samples} of shape {shape} ({dtype}): save an array of shape "
            f"{_axis_shape(shape)}{one}"
        )
    if array.dtype.kind in "fc":
        _refuse_nonfinite(array, what, source, name)
    if dtype is None:  # the training data is unknown: floats as the backends' default
        return array.astype(np.float32) if array.dtype.kind == "f" else array
    info = np.finfo(dtype) if dtype.kind == "f" else np.iinfo(dtype) if dtype.kind in "iu" else None
    if info is not None and array.size:  # a value the cast would turn into inf or wrap around
        low, high = array.min(), array.max()
        if low < info.min or high > info.max:
            bad = low if low < info.min else high
            index = int(np.argwhere(array.reshape(len(array), -1) == bad)[0][0])
            raise DataError(
                f"{source}, {name(index)}: {what} holds {bad}, outside the range of {dtype}, "
                f"which the run was trained on ({info.min:g} to {info.max:g})"
            )
    return array.astype(dtype)


def _refuse_nonfinite(array: Any, what: str, source: str, name: Callable[[int], str]) -> None:
    import numpy as np

    flat = array.reshape(len(array), -1)
    bad = ~np.isfinite(flat)
    if not bad.any():
        return
    index, column = (int(value) for value in np.argwhere(bad)[0])
    value = flat[index, column]
    raise DataError(
        f"{source}, {name(index)}: {what} holds {value}; NaN and Inf cannot be predicted, "
        "fill or drop such samples"
    )


def _class_labels(
    array: Any, spec: SampleSpec | None, source: str, name: Callable[[int], str]
) -> Any:
    """Whole-number class indices in range of the run's classes, in the training dtype."""
    import numpy as np

    classes = spec.classes if spec else None
    indices = f"0 to {classes - 1}" if classes else "0, 1, 2, ..."
    if array.ndim == 0 or len(array) == 0:
        raise DataError(f"{source}: 'label' needs one class index per sample ({indices})")
    flat = array.reshape(len(array), -1)
    if flat.shape[1] != 1:
        hint = "; one-hot, it seems: use label.argmax(axis=1)" if flat.shape[1] == classes else ""
        raise DataError(
            f"{source}: labels have shape {array.shape[1:]} per sample; give one class index "
            f"per sample ({indices}){hint}"
        )
    flat = flat[:, 0]
    if flat.dtype.kind not in "iuf" or flat.dtype.names:
        raise DataError(
            f"{source}: 'label' has {_dtype_words(array.dtype)}; labels must be whole-number "
            f"class indices ({indices})"
        )
    if flat.dtype.kind == "f":
        bad = ~np.isfinite(flat) | (flat != np.round(np.nan_to_num(flat)))
        if bad.any():
            index = int(np.argmax(bad))
            raise DataError(
                f"{source}, {name(index)}: label {flat[index]} is not a class index; labels "
                f"must be whole numbers ({indices})"
            )
    out = flat < 0
    if classes:
        out |= flat >= classes
    if spec and spec.ignored:
        out &= ~np.isin(flat, list(spec.ignored))  # e.g. -100, a loss's ignore_index
    if out.any():
        index = int(np.argmax(out))
        value = flat[index].item()
        value = int(value) if float(value).is_integer() else value
        scope = f"the run's {classes} classes" if classes else "class indices"
        raise DataError(
            f"{source}, {name(index)}: label {value} is out of range for {scope} ({indices})"
        )
    dtype = spec.dtypes["label"] if spec else np.int64
    shape = spec.shapes["label"] if spec else ()
    return flat.astype(dtype).reshape(len(flat), *shape)


def check_out(out: str, data: str) -> None:
    """Refuse an ``--out`` that could not be written, before any prediction is made."""
    if not out.endswith((".npy", ".csv")):
        raise ConfigError(f"--out {out}: the file must end in .npy or .csv")
    if os.path.isdir(out):
        raise ConfigError(
            f"--out {out} is a folder; name a file in it, e.g. "
            f"{os.path.join(out, 'predictions.csv')}"
        )
    folder = os.path.dirname(out) or "."
    if not os.path.exists(folder):
        raise ConfigError(
            f"--out {out}: the folder {folder} does not exist; create it first, or write "
            "to an existing folder"
        )
    if not os.path.isdir(folder):
        raise ConfigError(f"--out {out}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out}: the folder {folder} is not writable; choose another")
    if os.path.isfile(data) and os.path.isfile(out) and os.path.samefile(data, out):
        raise ConfigError(f"--out {out} is the --data file; write the predictions to another file")


def write_predictions(out: str, predictions: Any, labels: list[Any]) -> None:
    """``.npy``: the raw outputs; ``.csv``: the predicted class, the label and the outputs."""
    import numpy as np

    from epochal.runs.files import atomic_write

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
