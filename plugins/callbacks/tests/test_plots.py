"""LearningCurvePlot on real runs: a valid PNG after every epoch, history kept across resumes."""

from __future__ import annotations

import hashlib
import os
import sys

import numpy as np
import pytest

from epochal.loop.callbacks import AbstractCallback
from epochal_callbacks.plots import LearningCurvePlot

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def check_png(path) -> np.ndarray:
    """A complete PNG that matplotlib reads back as a non-blank RGBA image."""
    from matplotlib.image import imread

    with open(path, "rb") as handle:
        assert handle.read(8) == PNG_SIGNATURE
    image = imread(path)
    assert image.ndim == 3 and image.shape[2] == 4 and image.shape[0] > 200
    assert len(np.unique(image.reshape(-1, 4), axis=0)) > 20  # lines, text: not one colour
    return image


class PngWatcher(AbstractCallback):
    """At each epoch's start, checks the PNG the previous epoch left (a real callback)."""

    def __init__(self, path) -> None:
        self.path = path
        self.digests: list[str] = []

    def at_epoch_begin(self, trainer, epoch=0, **kwargs):
        if epoch > 1:
            self.check()

    def check(self) -> None:
        check_png(self.path)
        leftovers = [name for name in os.listdir(os.path.dirname(self.path)) if ".tmp" in name]
        assert leftovers == []
        with open(self.path, "rb") as handle:
            self.digests.append(hashlib.sha256(handle.read()).hexdigest())


def test_a_valid_png_after_every_epoch(managers, make_trainer, tmp_path):
    train, valid = managers()
    plot = LearningCurvePlot()
    watcher = PngWatcher(str(tmp_path / "curves.png"))
    trainer = make_trainer(save_path=tmp_path, callbacks=[watcher, plot])
    trainer.train(3, train, valid, val_score_key="accuracy")
    watcher.check()
    assert plot.file == str(tmp_path / "curves.png")
    assert len(set(watcher.digests)) == 3  # redrawn each epoch
    image = check_png(plot.file)
    assert image.shape[:2] == (340, 900)  # two panels (CE, accuracy) of 4.5 x 3.4 in at 100 dpi

    figure = plot.figure()
    titles = [axis.get_title() for axis in figure.axes if axis.get_visible()]
    assert titles == ["accuracy (monitored)", "CE"]  # the monitored metric first
    monitored = figure.axes[0]
    labels = [line.get_label() for line in monitored.get_lines()]
    assert labels == ["train", "val", "best val_accuracy", f"best epoch {trainer.best_epoch}"]


def test_resumed_run_plots_the_earlier_epochs(managers, make_trainer, tmp_path):
    train, valid = managers()
    make_trainer(save_path=tmp_path, callbacks=[LearningCurvePlot()]).train(
        2, train, valid, val_score_key="accuracy"
    )
    plot = LearningCurvePlot()
    resumed = make_trainer(save_path=tmp_path, callbacks=[plot])
    resumed.update_state(str(tmp_path / "checkpoint_last"))
    assert [entry["epoch"] for entry in plot.history] == [1, 2]  # from the checkpoint
    resumed.train(4, train, valid, val_score_key="accuracy")
    check_png(plot.file)
    for axis in plot.figure().axes:
        for line in axis.get_lines()[:2]:  # train and val curves
            assert list(line.get_xdata()) == [1, 2, 3, 4]

    # Resuming from an older checkpoint: epochs trained again replace their old points.
    again = LearningCurvePlot()
    older = make_trainer(save_path=tmp_path, callbacks=[again])
    older.update_state(str(tmp_path / "checkpoint_epoch_1"))
    older.train(2, train, valid)
    assert [entry["epoch"] for entry in again.history] == [1, 2]


def test_monitor_and_metrics_choose_the_panels(managers, make_trainer, tmp_path):
    train, valid = managers()
    plot = LearningCurvePlot(monitor="val_CE", metrics=["CE"], file_name="loss.png")
    make_trainer(save_path=tmp_path, callbacks=[plot]).train(2, train, valid)
    check_png(tmp_path / "loss.png")
    assert [axis.get_title() for axis in plot.figure().axes] == ["CE (monitored)"]


def test_leaves_the_pyplot_backend_alone(managers, make_trainer, tmp_path):
    import matplotlib

    pyplot_loaded = "matplotlib.pyplot" in sys.modules
    backend = matplotlib.rcParams._get("backend")  # _get: reading must not resolve it
    train, _ = managers()
    make_trainer(save_path=tmp_path, callbacks=[LearningCurvePlot()]).train(1, train)
    assert matplotlib.rcParams._get("backend") == backend
    assert ("matplotlib.pyplot" in sys.modules) == pyplot_loaded


def test_clear_errors(managers, make_trainer, tmp_path):
    with pytest.raises(ValueError, match=r"give a file_name ending in \.png"):
        LearningCurvePlot(file_name="curves.pdf")
    with pytest.raises(TypeError, match=r"write metrics=\['CE'\]"):
        LearningCurvePlot(metrics="CE")
    train, valid = managers()
    with pytest.raises(ValueError, match="LearningCurvePlot needs a folder"):
        make_trainer(callbacks=[LearningCurvePlot()]).train(1, train)
    with pytest.raises(ValueError, match=r"no metric \['dice'\] in this run; it has \['CE'"):
        make_trainer(callbacks=[LearningCurvePlot(path=tmp_path, metrics=["dice"])]).train(
            1, train, valid
        )


@pytest.mark.parametrize("engine", ["pillow", "matplotlib"])
def test_both_engines_draw_curves_star_and_best_epoch(managers, make_trainer, tmp_path, engine):
    train, valid = managers()
    plot = LearningCurvePlot(engine=engine)
    trainer = make_trainer(save_path=tmp_path, callbacks=[plot])
    trainer.train(3, train, valid, val_score_key="accuracy")
    image = (check_png(plot.file)[..., :3] * 255).round().astype(int)
    assert image.shape[:2] == (340, 900)
    left, right = image[:, :450].reshape(-1, 3), image[:, 450:].reshape(-1, 3)

    def has(pixels, colour, tolerance=40):
        return bool((np.abs(pixels - colour).sum(axis=1) < tolerance).any())

    blue, orange, crimson = (31, 119, 180), (255, 127, 14), (220, 20, 60)
    assert has(left, blue) and has(left, orange) and has(right, blue) and has(right, orange)
    assert has(left, crimson) and not has(right, crimson)  # the star: monitored panel only


def test_nice_ticks_are_round_and_cover_the_range():
    from epochal_callbacks._chart import _label, nice_ticks

    assert nice_ticks(0.0, 1.0) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(0.61, 0.98) == [0.7, 0.8, 0.9]
    assert nice_ticks(0.0, 1.2) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert nice_ticks(1, 15, count=6, integer=True) == [2, 4, 6, 8, 10, 12, 14]
    assert nice_ticks(3, 3, integer=True) == [3, 4]
    assert [_label(t, 0.25) for t in (0.0, 0.5)] == ["0.00", "0.50"]
    assert _label(2.0, 1.0) == "2"
    with pytest.raises(ValueError, match="engine must be 'pillow' or 'matplotlib'"):
        LearningCurvePlot(engine="svg")
