"""Issue 8, item 3: a full disk while a checkpoint is written. ``epochal resume`` runs under
``RLIMIT_FSIZE`` (``write`` then fails with ``EFBIG``, as it fails with ``ENOSPC`` on a full
disk): it exits 1 with one line naming the checkpoint file and the cause, leaves no temporary
file, and the previous checkpoints are intact and load."""

from __future__ import annotations

import json
import os
import resource
import signal
from pathlib import Path

import pytest

from epochal.testing import run_epochal

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

JOB = [
    "--seed",
    "1",
    "--set",
    "callbacks.tensorboard=false",
    "--set",
    "callbacks.learning_curves=false",
]
SUFFIX = {"torch": ".pt", "tf": ".tf.npz"}


def epochal(*args: str, cwd: Path, file_size_limit: int | None = None):
    def limit() -> None:  # in the child, before exec: a file may not grow past the limit
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    return run_epochal(
        *args, cwd=cwd, timeout=180, preexec_fn=limit if file_size_limit is not None else None
    )


def load(backend: str, path: Path) -> dict:
    if backend == "torch":
        from epochal_torch.io import load_checkpoint
    else:
        from epochal_tf.io import load_checkpoint
    return load_checkpoint(path)


@pytest.mark.skipif(not hasattr(resource, "RLIMIT_FSIZE"), reason="needs RLIMIT_FSIZE")
@pytest.mark.parametrize("backend", ["torch", "tf"])
def test_a_checkpoint_that_does_not_fit_fails_the_run_and_keeps_the_previous_one(tmp_path, backend):
    pytest.importorskip({"torch": "torch", "tf": "tensorflow"}[backend])
    run = tmp_path / "run"
    first = epochal(
        "train", *JOB, "--backend", backend, "--epochs", "1", "--run-dir", "run", cwd=tmp_path
    )
    assert first.returncode == 0, first.stderr
    last, best = (run / f"checkpoint_{kind}{SUFFIX[backend]}" for kind in ("last", "best"))
    size = last.stat().st_size
    others = max((run / name).stat().st_size for name in ("metrics.csv", "summary.json"))
    assert size > 16 * others, "the checkpoint must dwarf the small files for this test"
    before = {path: path.read_bytes() for path in (last, best)}

    # The disk "fills up": epoch 2's metrics.csv and summary.json fit, its checkpoints do not.
    full = epochal("resume", "run", "--epochs", "3", cwd=tmp_path, file_size_limit=size // 2)

    assert full.returncode == 1, full.stdout + full.stderr
    assert "Traceback" not in full.stderr, full.stderr
    (line,) = [line for line in full.stderr.splitlines() if line.startswith("epochal:")]
    assert line.startswith("epochal: training failed: cannot write checkpoint run/checkpoint_")
    named = line.split("cannot write checkpoint ")[1].split(":")[0]
    assert named in [f"run/checkpoint_{kind}{SUFFIX[backend]}" for kind in ("best", "last")]
    assert "File too large (EFBIG)" in line and "ulimit -f" in line
    assert "is intact" in line
    assert sorted(name for name in os.listdir(run) if name.endswith(".tmp")) == []
    for path, content in before.items():  # untouched, and they load: epoch 1
        assert path.read_bytes() == content
        assert load(backend, path)["epoch"] == 1
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "failed" and "File too large" in summary["error"]
