"""Bad checkpoints through the command line: ``epochal resume`` and ``epochal predict``.

A 1-epoch run is trained once; each test copies it and replaces ``checkpoint_last.pt`` with
a crafted pickle (whose payload must not run), a truncated copy, a foreign file, the
checkpoint of another architecture, or a pickle-free file with values of the wrong type or
range (``epoch = -5``, ``epoch = "x"``, ``model = [1, 2, 3]``; also as a TF ``.npz``). Every
command exits 2 with one line naming the file (and the key, or the mismatching keys), and no
traceback. The API-level refusals are tested in ``plugins/*/tests/test_checkpoints.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from epochal.testing import run_epochal

torch = pytest.importorskip("torch")

QUICK = ["--epochs", "1", "--set", "callbacks.tensorboard=false",
         "--set", "callbacks.learning_curves=false"]  # fmt: skip


def epochal(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run_epochal(*args, cwd=cwd, timeout=180)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """Two finished 1-epoch runs: the default MLP (hidden [128]) and one with hidden [16]."""
    root = tmp_path_factory.mktemp("trained")
    runs = {}
    for name, hidden in (("wide", "[128]"), ("narrow", "[16]")):
        result = epochal(
            "train", *QUICK, "--set", f"model.hidden={hidden}", "--run-dir", name, cwd=root
        )
        assert result.returncode == 0, result.stderr
        runs[name] = root / name
    return runs


class Payload:
    """Unpickled without ``weights_only``, this would create the file ``marker``."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def crafted(path: Path, marker: Path) -> None:
    torch.save({"model": {}, "epoch": Payload(str(marker))}, path)


def truncated(path: Path, marker: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def random_bytes(path: Path, marker: Path) -> None:
    path.write_bytes(os.urandom(4096))


def text_file(path: Path, marker: Path) -> None:
    path.write_text("these are my notes, not a checkpoint\n")


BREAKS = {
    "crafted pickle": (crafted, "was refused: it holds objects other than tensors"),
    "truncated": (truncated, "truncated or not a torch checkpoint"),
    # Random bytes may parse as a pickle opcode stream that the weights_only unpickler refuses:
    # either message names the file (the "refused" one is misleading here; see the report).
    "random bytes": (random_bytes, ("truncated or not a torch checkpoint", "was refused")),
    "text file": (text_file, "truncated or not a torch checkpoint"),
}

#: ``epochal resume`` and ``epochal predict`` with the replaced ``checkpoint_last``.
COMMANDS = {
    "resume": lambda run: ["resume", run, "--epochs", "2"],
    "predict": lambda run: [
        "predict", run, "--checkpoint", "last", "--data", "digits", "--out", "p.csv"
    ],
}  # fmt: skip


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """Exit 2 (bad input), one ``epochal: ...`` line, no traceback; returns the line."""
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    lines = [line for line in result.stderr.splitlines() if line.startswith("epochal: ")]
    assert len(lines) == 1, result.stderr
    assert result.returncode == 2, output
    return lines[0]


def _copy(run: Path, tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(run, target)
    return target


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("name", sorted(BREAKS))
def test_a_bad_checkpoint_is_one_clear_line(trained, tmp_path, name, command):
    run = _copy(trained["wide"], tmp_path)
    marker = tmp_path / "payload-ran"
    breaker, message = BREAKS[name]
    breaker(run / "checkpoint_last.pt", marker)
    before = (run / "checkpoint_last.pt").read_bytes()

    result = epochal(*COMMANDS[command]("run"), cwd=tmp_path)
    line = one_error_line(result)
    messages = (message,) if isinstance(message, str) else message
    assert "checkpoint_last" in line and any(text in line for text in messages), line
    assert not marker.exists()  # the crafted payload did not run
    assert (run / "checkpoint_last.pt").read_bytes() == before  # not overwritten
    assert not (tmp_path / "p.csv").exists()
    if command == "predict":
        assert result.returncode == 2, result.stderr


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_checkpoint_of_another_architecture_names_the_keys(trained, tmp_path, command):
    run = _copy(trained["wide"], tmp_path)  # hidden [128]; the checkpoint is hidden [16]'s
    shutil.copy(trained["narrow"] / "checkpoint_last.pt", run / "checkpoint_last.pt")

    line = one_error_line(epochal(*COMMANDS[command]("run"), cwd=tmp_path))
    assert "does not fit this network" in line, line
    assert "(16, 64) in the checkpoint, (128, 64) here" in line, line  # the first layer
    assert "(10, 16) in the checkpoint, (10, 128) here" in line, line  # the last layer


@pytest.fixture(scope="module")
def trained_tf(tmp_path_factory) -> Path:
    """A finished 1-epoch run of the default job on the TF backend."""
    pytest.importorskip("epochal_tf")
    root = tmp_path_factory.mktemp("trained-tf")
    result = epochal("train", *QUICK, "--backend", "tf", "--run-dir", "run", cwd=root)
    assert result.returncode == 0, result.stderr
    return root / "run"


def altered_torch(path: Path, key: str, value: object) -> None:
    """``path`` with ``key`` set to ``value``: saved as a plain dict, no pickled objects."""
    state = torch.load(path, weights_only=True)
    state[key] = value
    torch.save(state, path)


def altered_tf(path: Path, key: str, value: object) -> None:
    """``path`` with ``key`` of its JSON part set to ``value``, written with ``np.savez``."""
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    state = json.loads(str(arrays["__state__"]))
    state[key] = value
    arrays["__state__"] = np.array(json.dumps(state))
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


#: (backend, key, value, command, what the line says about the key)
ALTERED = [
    ("torch", "epoch", -5, "resume", "'epoch' must be an integer >= 0, got -5 (int)"),
    ("torch", "epoch", "x", "predict", "'epoch' must be an integer >= 0, got 'x' (str)"),
    ("torch", "model", [1, 2, 3], "resume", "'model' must be a table of names to tensors"),
    ("torch", "model", [1, 2, 3], "predict", "'model' must be a table of names to tensors"),
    ("tf", "epoch", -5, "predict", "'epoch' must be an integer >= 0, got -5 (int)"),
    ("tf", "epoch", "x", "resume", "'epoch' must be an integer >= 0, got 'x' (str)"),
    ("tf", "model", [1, 2, 3], "resume", "'model' must be the number of its arrays"),
]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("backend", "key", "value", "command", "message"),
    ALTERED,
    ids=[f"{case[0]}-{case[1]}={case[2]!r}-{case[3]}" for case in ALTERED],
)
def test_a_checkpoint_with_a_bad_value_names_the_file_and_the_key(
    request, tmp_path, backend, key, value, command, message
):
    """Pickle-free, so ``weights_only`` / ``allow_pickle=False`` take it: the values are
    checked key by key before the trainer uses them (a ValueError or AttributeError, exit 1,
    before)."""
    source = request.getfixturevalue("trained")["wide"] if backend == "torch" else None
    source = source or request.getfixturevalue("trained_tf")
    run = _copy(source, tmp_path)
    name = "checkpoint_last.pt" if backend == "torch" else "checkpoint_last.tf.npz"
    (altered_torch if backend == "torch" else altered_tf)(run / name, key, value)
    before = (run / name).read_bytes()

    line = one_error_line(epochal(*COMMANDS[command]("run"), cwd=tmp_path))
    assert f"checkpoint run/{name}: {message}" in line, line
    assert "was not written by epochal or was altered" in line, line
    assert (run / name).read_bytes() == before
    assert not (tmp_path / "p.csv").exists()
