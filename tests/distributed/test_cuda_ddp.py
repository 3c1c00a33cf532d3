"""DDP with CUDA tensors and float16 AMP (GradScaler): two ranks share GPU 0 and all-reduce
through gloo (NCCL refuses two ranks on one GPU; a machine with 2+ GPUs uses nccl, one GPU a
rank). Skipped without CUDA (CI has none); run on a lent GPU machine."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from epochal.testing import user_env

torch = pytest.importorskip("torch")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

JOB = Path(__file__).with_name("ddp_job.py")


def _run(*args: str, cwd: Path) -> None:
    result = subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=user_env({"OMP_NUM_THREADS": "1"}),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_float16_amp_under_ddp_on_the_gpu(tmp_path):
    _run(str(JOB), "one.npz", "64", "amp=1", "gpu=1", cwd=tmp_path)
    torchrun = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    _run(*torchrun, str(JOB), "two.npz", "32", "amp=1", "gpu=1", cwd=tmp_path)
    one, two = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
    assert int(two["world"]) == 2
    assert two["history"][-1, 3] > 0.8
    np.testing.assert_allclose(two["history"], one["history"], rtol=0, atol=2e-2)
