"""Fixtures shared by every package's tests: digits data and the numpy example trainer."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from epochal.data import DataManager, RandomSampler
from epochal.plugins.registry import get_dataset
from epochal_numpy.network import SoftmaxRegression
from epochal_numpy.trainer import NumpyNetworkTrainer

# A plugin import is named as slow after 60 s, not 2, in every process the tests start: on a
# loaded machine a plugin that imports torch takes over 2 s, and the notice would be one more
# line in the output a test reads. The notice's own tests set the variable.
os.environ.setdefault("EPOCHAL_PLUGIN_IMPORT_NOTICE", "60")


@pytest.fixture(scope="session")
def digits_split():
    dataset = get_dataset("digits")
    return dataset.train_test_split(test_size=0.2, random_state=0, stratify="label")


@pytest.fixture
def managers(digits_split):
    """``managers(workers=0, batch_size=64)`` -> (train, valid) DataManagers on digits."""

    def build(workers: int = 0, batch_size: int = 64, seed: int = 0):
        train, valid = digits_split
        return (
            DataManager(train, batch_size, workers, sampler_cls=RandomSampler, seed=seed),
            DataManager(valid, 128, 0),
        )

    return build


def _make_trainer(save_path=None, callbacks=None, lr=1.0, seed=0, **kwargs) -> NumpyNetworkTrainer:
    return NumpyNetworkTrainer(
        SoftmaxRegression(64, 10, seed=seed),
        save_path=save_path,
        lr=lr,
        callbacks=callbacks,
        **kwargs,
    )


@pytest.fixture
def make_trainer():
    """``make_trainer(save_path=None, callbacks=None, lr=1.0, seed=0)`` -> numpy trainer."""
    return _make_trainer


@pytest.fixture
def fake_distribution():
    """``fake_distribution(root, name, module_source) -> env``: a real distribution (dist-info
    and module) under ``root`` with an ``epochal`` entry point; ``env`` puts it on PYTHONPATH."""

    def install_fake_distribution(root: Path, name: str, module_source: str) -> dict:
        """A real distribution on sys.path (dist-info + module) with an `epochal` entry point."""
        module = f"{name}_plugin"
        (root / f"{module}.py").write_text(textwrap.dedent(module_source))
        info = root / f"{name}-0.3.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.3\n")
        (info / "entry_points.txt").write_text(f"[epochal]\n{name} = {module}\n")
        return {"PYTHONPATH": str(root)}

    return install_fake_distribution
