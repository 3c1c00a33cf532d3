"""Bad files for ``epochal predict``: each is refused before the model sees it, with one line
that names the file (and the sample, or the line and column of a CSV) and what is allowed.

Before, a ``(10, 7)`` array failed inside torch (``mat1 and mat2 shapes cannot be
multiplied``, exit 1), an integer array failed on the dtype, and a CSV cell ``hello`` silently
became NaN while a bad label became -9223372036854775808. The bulk of the cases are checked
in-process against the default job's data set (digits: 64 float32 features, 10 classes), the
same code the command runs; a 1-epoch run is trained once for the command-line tests.
"""

from __future__ import annotations

import csv
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from epochal.errors import ConfigError, DataError
from epochal.job.config import load_config
from epochal.runs.prediction_files import SampleSpec, check_out, load_inputs
from epochal.testing import run_epochal

pytest.importorskip("torch")

QUICK = ["--epochs", "1", "--set", "callbacks.tensorboard=false",
         "--set", "callbacks.learning_curves=false"]  # fmt: skip
HEADER = [f"f{index}" for index in range(64)]


@pytest.fixture(scope="module")
def config() -> dict:
    """The default job's config: what ``epochal train`` without a config trains."""
    return load_config(None)


def refused(path: Path, config: dict) -> str:
    """The message of the DataError that ``path`` is refused with; it names the file."""
    with pytest.raises(DataError) as error:
        load_inputs(str(path), config)
    message = str(error.value)
    assert message.startswith(f"--data {path}"), message
    assert "\n" not in message
    return message


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def digits(count: int) -> tuple[np.ndarray, np.ndarray]:
    from epochal.data.digits import load_digits

    dataset = load_digits()
    return dataset.arrays["data"][:count], dataset.arrays["label"][:count]


def test_the_spec_comes_from_the_run_s_data_set(config):
    from epochal.job.build import build_dataset

    spec = SampleSpec.of_dataset(build_dataset(config))
    assert spec.shapes == {"data": (64,), "label": ()}
    assert str(spec.dtypes["data"]) == "float32" and spec.class_labels
    assert spec.classes == 10 and not spec.ignored


DTYPES = {
    "int64": np.zeros((5, 64), np.int64),
    "uint8": np.zeros((5, 64), np.uint8),
    "complex": np.zeros((5, 64), np.complex64),
    "text": np.full((5, 64), "0.5"),
    "bytes": np.full((5, 64), b"0.5"),
    "structured": np.zeros(5, dtype=[("a", "f4"), ("b", "i4")]),
    "bool": np.zeros((5, 64), bool),
    "datetime": np.zeros((5, 64), "datetime64[s]"),
}


@pytest.mark.parametrize("kind", sorted(DTYPES))
def test_a_dtype_other_than_floats_is_refused(tmp_path, config, kind):
    array = DTYPES[kind]
    np.save(tmp_path / "x.npy", array)
    message = refused(tmp_path / "x.npy", config)
    described = "structured dtype with fields a, b" if kind == "structured" else str(array.dtype)
    assert described in message, message
    assert "the run was trained on float32 samples; save floating-point values" in message


def test_an_object_array_is_refused_unread(tmp_path, config):
    np.save(tmp_path / "x.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    assert "holds Python objects (dtype object)" in refused(tmp_path / "x.npy", config)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((10, 7), np.float32), "samples have shape (7,), but the run was trained on "
         "samples of shape (64,) (float32): save an array of shape (N, 64)"),
        (np.zeros(64, np.float32), "for one sample, add a first axis: x[None]"),
        (np.float32(1.0), "is a single value"),
        (np.zeros((0, 64), np.float32), "has no samples (shape (0, 64))"),
        (np.where(np.arange(64) == 3, np.nan, 0.5)[None].repeat(3, 0),
         "sample at index 0: the data holds nan; NaN and Inf cannot be predicted"),
        (np.where(np.arange(64) == 3, -np.inf, 0.5)[None].repeat(3, 0), "holds -inf"),
        (np.full((2, 64), 1e300), "holds 1e+300, outside the range of float32"),
    ],
)  # fmt: skip
def test_a_wrong_shape_or_value_is_refused(tmp_path, config, array, message):
    np.save(tmp_path / "x.npy", array)
    assert message in refused(tmp_path / "x.npy", config)


@pytest.mark.parametrize(
    ("label", "message"),
    [
        (np.array([1, 2, 12]), "sample at index 2: label 12 is out of range for the run's 10 "
         "classes (0 to 9)"),
        (np.array([0, -1, 3]), "sample at index 1: label -1 is out of range"),
        (np.array([0.0, 2.5, 3.0]), "label 2.5 is not a class index; labels must be whole"),
        (np.array([0.0, np.nan, 3.0]), "label nan is not a class index"),
        (np.array(["a", "b", "c"]), "'label' has dtype <U1 (text); labels must be whole-number "
         "class indices (0 to 9)"),
        (np.eye(10)[:3], "one-hot, it seems: use label.argmax(axis=1)"),
        (np.array([1, 2]), "'label' has 2 entries, but 'data' has 3 samples"),
    ],
)  # fmt: skip
def test_bad_labels_are_refused(tmp_path, config, label, message):
    data, _ = digits(3)
    np.savez(tmp_path / "x.npz", data=data, label=label)
    assert message in refused(tmp_path / "x.npz", config)


def test_an_npz_needs_data_and_only_the_run_s_keys(tmp_path, config):
    data, label = digits(3)
    np.savez(tmp_path / "x.npz", inputs=data)
    assert "needs an array named 'data'" in refused(tmp_path / "x.npz", config)
    np.savez(tmp_path / "x.npz", data=data, label=label, weight=label)
    message = refused(tmp_path / "x.npz", config)
    assert "'weight' is not a key of the run's samples (data, label)" in message


@pytest.mark.parametrize("content", [b"garbage, not numpy", b"PK\x03\x04 a broken zip"])
def test_a_file_that_is_not_numpy_is_refused_unpickled(tmp_path, config, content):
    (tmp_path / "x.npy").write_bytes(content)
    assert "not a" in refused(tmp_path / "x.npy", config)  # and np.load never unpickles it


def _rows(count: int, label: bool = True) -> list[list[str]]:
    data, labels = digits(count)
    return [[f"{value:g}" for value in row] + ([str(y)] if label else []) for row, y in zip(
        data, labels, strict=True)]  # fmt: skip


def test_bad_csv_files_name_the_line_and_column(tmp_path, config):
    header = [*HEADER, "label"]
    cases = []

    def case(rows, message, columns=header):
        cases.append((write_csv(tmp_path / f"c{len(cases)}.csv", columns, rows), message))

    rows = _rows(3)
    case(
        [rows[0], [rows[1][0], "hello", *rows[1][2:]]],
        "line 3, column 'f1': 'hello' is not a number; every cell must be a number",
    )
    case([rows[0], ["", *rows[1][1:]]], "line 3, column 'f0': '' is not a number")
    case(
        [rows[0], [*rows[1][:5], "nan", *rows[1][6:]]],
        "line 3, column 'f5': 'nan' is not a finite number",
    )
    case(
        [rows[0], [*rows[1][:-1], "12"]],
        "line 3: label 12 is out of range for the run's 10 classes (0 to 9)",
    )
    case([rows[0], [*rows[1][:-1], "seven"]], "line 3, column 'label': 'seven' is not a number")
    case([rows[0], rows[1][:-1]], "line 3: 64 cells, but the header names 65 columns")
    case(
        [row[1:] for row in rows],
        "63 feature columns, but the run was trained on samples of shape (64,): 64 columns",
        columns=header[1:],
    )
    case(rows[1:], "line 1 holds numbers; the first line must name the columns", columns=rows[0])
    case([], "no rows under the header line")
    case([], "2 columns are named 'label'", columns=[*header, "label"])
    for path, message in cases:
        assert message in refused(path, config), path
    (tmp_path / "empty.csv").write_text("")
    assert "no header; the first line must name" in refused(tmp_path / "empty.csv", config)
    (tmp_path / "utf16.csv").write_bytes(",".join(header).encode("utf-16"))
    assert "not UTF-8 text" in refused(tmp_path / "utf16.csv", config)


def test_good_files_are_converted_to_the_run_s_dtypes(tmp_path, config):
    data, labels = digits(4)
    np.save(tmp_path / "x.npy", data.astype(np.float64))
    np.savez(tmp_path / "x.npz", data=data, label=labels.astype(np.float64)[:, None])
    write_csv(tmp_path / "x.csv", ["label", *HEADER], [[r[-1], *r[:-1]] for r in _rows(4)])
    for name in ("x.npy", "x.npz", "x.csv"):
        dataset = load_inputs(str(tmp_path / name), config)
        batch = dataset.get_batch([0, 1, 2, 3])
        assert batch["data"].dtype == np.float32, name
        np.testing.assert_allclose(batch["data"], data, rtol=1e-6)
        if name != "x.npy":
            assert batch["label"].dtype == np.int64 and batch["label"].tolist() == labels.tolist()
    image = load_config(None, ["data.dataset_params.image=true"])  # samples (1, 8, 8)
    batch = load_inputs(str(tmp_path / "x.csv"), image).get_batch([0, 1])
    assert batch["data"].shape == (2, 1, 8, 8)
    np.testing.assert_allclose(batch["data"].reshape(2, 64), data[:2], rtol=1e-6)


def test_another_registered_data_set_must_fit_the_run(config):
    assert len(load_inputs("digits", config)) == 1797  # the run's own data set, unchanged
    with pytest.raises(DataError) as error:
        load_inputs("shapes", config)
    assert str(error.value) == (
        "--data shapes: its samples have shape (1, 16, 16) (float32), but the run was trained "
        "on samples of shape (64,) (float32)"
    )


def test_a_run_whose_data_set_is_gone_still_predicts_files(tmp_path, config, capsys):
    gone = {**config, "data": {**config["data"], "dataset": "my_plugin_data"}}
    data, _ = digits(2)
    np.save(tmp_path / "x.npy", data.astype(np.float64))
    assert load_inputs(str(tmp_path / "x.npy"), gone).arrays["data"].dtype == np.float32
    assert "the file is checked without the training samples' shape" in capsys.readouterr().err
    write_csv(tmp_path / "x.csv", [*HEADER[:10], "label"], [["0.5"] * 10 + ["3"]])
    batch = load_inputs(str(tmp_path / "x.csv"), gone).get_batch([0])
    assert batch["data"].shape == (1, 10) and batch["label"].tolist() == [3]
    np.save(tmp_path / "x.npy", data.astype(complex))
    assert "a model takes real numbers" in refused(tmp_path / "x.npy", gone)
    assert len(load_inputs("digits", gone)) == 1797  # a registered set needs no training set


def test_a_bad_out_is_refused_before_anything_is_loaded(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("x.npy").write_bytes(b"")
    Path("folder").mkdir()
    cases = {
        "p.txt": "--out p.txt: the file must end in .npy or .csv",
        "missing/p.csv": "--out missing/p.csv: the folder missing does not exist",
        "x.npy/p.csv": "--out x.npy/p.csv: x.npy is a file, not a folder",
        "./x.npy": "--out ./x.npy is the --data file",
    }
    for out, message in cases.items():
        with pytest.raises(ConfigError, match="^" + re.escape(message)):
            check_out(out, "x.npy")
    check_out("folder/p.csv", "x.npy")  # fine, and nothing is written yet
    assert not Path("folder/p.csv").exists()


# -- through the command line ----------------------------------------------------------------


def epochal(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run_epochal(*args, cwd=cwd, timeout=180)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A folder holding one finished 1-epoch run of the default job, ``run``."""
    root = tmp_path_factory.mktemp("predict")
    result = epochal("train", *QUICK, "--run-dir", "run", cwd=root)
    assert result.returncode == 0, result.stderr
    return root


@pytest.mark.slow
def test_the_command_refuses_bad_files_with_one_line(run):
    data, labels = digits(5)
    np.save(run / "shape.npy", np.zeros((10, 7), np.float32))
    write_csv(run / "c63.csv", HEADER[:63], [row[:63] for row in _rows(2, label=False)])
    rows = _rows(2)
    write_csv(run / "hello.csv", [*HEADER, "label"], [rows[0], ["hello", *rows[1][1:]]])
    np.savez(run / "labels.npz", data=data, label=labels + 8)
    cases = [
        ("shape.npy", "p.csv", "--data shape.npy: samples have shape (7,), but the run was "
         "trained on samples of shape (64,) (float32)"),
        ("c63.csv", "p.csv", "--data c63.csv: 63 feature columns, but the run was trained on "
         "samples of shape (64,): 64 columns"),
        ("hello.csv", "p.csv", "--data hello.csv, line 3, column 'f0': 'hello' is not a number"),
        ("labels.npz", "p.npy", "--data labels.npz, sample at index 2: label 10 is out of range "
         "for the run's 10 classes (0 to 9)"),
        ("labels.npz", "out/p.csv", "--out out/p.csv: the folder out does not exist"),
    ]  # fmt: skip
    for data_file, out, message in cases:
        result = epochal("predict", "run", "--data", data_file, "--out", out, cwd=run)
        output = result.stdout + result.stderr
        assert result.returncode == 2, output
        assert "Traceback" not in output and "Warning" not in output, output
        errors = [line for line in result.stderr.splitlines() if line.startswith("epochal: ")]
        assert len(errors) == 1 and errors[0].startswith(f"epochal: error: {message}"), errors
        assert not (run / out).exists() and not (run / "out").exists()


@pytest.mark.slow
def test_the_command_still_predicts_good_files(run):
    data, labels = digits(12)
    np.save(run / "x.npy", data)
    np.savez(run / "x.npz", data=data, label=labels)
    write_csv(run / "x.csv", [*HEADER, "label"], _rows(12))
    outputs = {}
    for name, out in (("x.npy", "y.npy"), ("x.npz", "z.csv"), ("x.csv", "c.csv")):
        result = epochal("predict", "run", "--data", name, "--out", out, cwd=run)
        assert result.returncode == 0, result.stderr
        assert f"wrote 12 predictions to {out}" in result.stdout
        if out.endswith(".npy"):
            outputs[name] = np.load(run / out)
            continue
        with open(run / out, newline="") as handle:
            table = list(csv.DictReader(handle))
        assert [int(row["label"]) for row in table] == labels.tolist()
        outputs[name] = np.array([[float(row[f"output_{i}"]) for i in range(10)] for row in table])
        assert [int(row["prediction"]) for row in table] == outputs[name].argmax(1).tolist()
    assert outputs["x.npy"].shape == (12, 10)
    for name in ("x.npz", "x.csv"):  # the same samples give the same outputs, in any format
        np.testing.assert_allclose(outputs[name], outputs["x.npy"], rtol=1e-4, atol=1e-4)
