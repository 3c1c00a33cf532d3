"""The README's example runs as written (in a fresh process, in a scratch folder)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs(tmp_path):
    example = re.search(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL).group(1)
    assert len(example.strip().splitlines()) <= 20
    result = subprocess.run(
        [sys.executable, "-c", example], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    epochs = re.findall(r"^epoch (\d): val_accuracy=(\d\.\d+)$", result.stdout, flags=re.MULTILINE)
    assert [int(epoch) for epoch, _ in epochs] == [1, 2, 3, 4, 5]
    best = float(re.search(r"^best (\S+) at epoch \d$", result.stdout, flags=re.MULTILINE).group(1))
    assert best > 0.9
    assert (tmp_path / "runs" / "readme" / "checkpoint_best.npz").exists()
