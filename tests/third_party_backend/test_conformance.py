"""A backend written from ``docs/plugins.md`` alone (``linear_backend/``, under 150 lines),
installed as pip would (a distribution with an ``epochal`` entry point on ``sys.path``),
passes the backend conformance suite."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from epochal.plugins.manager import reset_plugin_manager
from epochal.testing.conformance import *  # noqa: F403  (the suite's tests and fixtures)
from epochal.testing.conformance import conformance_backend

HERE = Path(__file__).parent


@pytest.fixture(scope="module", autouse=True)
def installed(tmp_path_factory):
    """``pip install linear-backend`` for this module: its package and dist-info on sys.path,
    and a plugin manager that finds them (rebuilt again afterwards, without them)."""
    site = tmp_path_factory.mktemp("site-packages")
    info = site / "linear_backend-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: linear-backend\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[epochal]\nlinear = linear_backend.plugin\n")
    paths = [str(site), str(HERE)]
    sys.path[:0] = paths
    importlib.invalidate_caches()
    reset_plugin_manager()
    yield
    for path in paths:
        sys.path.remove(path)
    reset_plugin_manager()


def make_trainer(save_path=None, *, seed=0, network="default", **kwargs):
    """The suite's trainer: a linear classifier (32 inputs for "other"; nothing random)."""
    from linear_backend.trainer import Linear, LinearTrainer  # installed by the fixture

    return LinearTrainer(Linear(32 if network == "other" else 64, 10, seed), save_path, **kwargs)


epochal_backend = conformance_backend(
    "linear",
    make_trainer,
    unstable={"lr": 5.0, "momentum": 0.0},
    distribution="linear-backend",
    random_state=False,  # full batches in the given order: nothing random to restore
)


def test_the_backend_is_under_150_lines():
    """Issue 14's promise: a backend from the docs alone is small (its whole package)."""
    lines = sum(len(path.read_text().splitlines()) for path in HERE.glob("linear_backend/*.py"))
    assert lines < 150, lines
