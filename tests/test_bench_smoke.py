"""The benchmarks still run (``--quick``); their figures are read by people, not asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.slow
@pytest.mark.parametrize(
    "script",
    [
        "cli_startup.py",
        "data_pipeline.py",
        "torch_overhead.py",
        "tf_overhead.py",
        "end_to_end.py",
        "soak.py",
        "ddp_scaling.py",
    ],
)
def test_benchmark_runs(script):
    result = subprocess.run(
        [sys.executable, str(BENCH / script), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "TARGET MET" in result.stdout or "TARGET MISSED" in result.stdout
