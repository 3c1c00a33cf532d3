"""LearningCurvePlot: a PNG of the train and validation curves, redrawn after every epoch."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from epochal.loop.callbacks import AbstractCallback, TrainerView
from epochal.loop.trainer import VAL_PREFIX
from epochal.runs.files import atomic_write
from epochal_callbacks._chart import Panel, Series, render_png
from epochal_callbacks._util import check_file_name, check_path, output_path

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["LearningCurvePlot"]

_COLUMNS = 3  # panels per row


def _base_name(key: str | None) -> str | None:
    """``val_CE`` -> ``CE``: the panel a metric belongs to."""
    if key is None or not key.startswith(VAL_PREFIX):
        return key
    return key[len(VAL_PREFIX) :]


class LearningCurvePlot(AbstractCallback):
    """After each epoch, writes ``<path>/<file_name>``: one panel per metric against epoch.

    Each panel shows a metric's train curve and its ``val_`` counterpart. Losses need no
    special treatment: the trainer hands losses and metrics over in one dict without saying
    which is which, so every key gets a panel (``metrics`` picks and orders them) and the
    loss panels are simply among them. The monitored metric's panel comes first, titled
    "(monitored)", with its best value starred; a dotted line marks ``trainer.best_epoch``
    (the epoch of ``checkpoint_best``) on every panel.

    The file is replaced atomically (never half-written, no temporary file left). By default
    it is drawn with Pillow in about 15 ms; ``engine="matplotlib"`` draws it with matplotlib's
    Agg canvas (the user's pyplot backend is left alone), which looks finer but costs ~0.3 s
    to import and 35 to 150 ms a redraw: more than a small job's epoch. The history
    rides in the checkpoint: a resumed run's plot shows every epoch, and epochs trained
    again after a resume replace their earlier points.

    Args:
        monitor: the metric to highlight (default: the trainer's ``val_score_key``): its
            validation value (``val_`` prefix optional, as for the trainer), else the train one.
        file_name: the PNG's name; it may not leave the run folder (``../x.png``) unless it
            is an absolute path.
        path: its folder (default: the trainer's ``save_path``, the run folder); a relative
            one is inside the run folder, an absolute one is used as given.
        metrics: the metrics (without ``val_``) to draw, in order; default: all.
        engine: ``"pillow"`` (fast, the default) or ``"matplotlib"``.
    """

    main_process_only = True  # distributed training: rank 0 writes, the others train

    def __init__(
        self,
        monitor: str | None = None,
        file_name: str = "curves.png",
        path: str | os.PathLike[str] | None = None,
        metrics: Sequence[str] | None = None,
        engine: str = "pillow",
    ) -> None:
        if engine not in ("pillow", "matplotlib"):
            raise ValueError(
                f"LearningCurvePlot: engine must be 'pillow' or 'matplotlib', got {engine!r}"
            )
        if not file_name.lower().endswith(".png"):
            raise ValueError(
                f"LearningCurvePlot writes PNG files: give a file_name ending in .png, "
                f"got {file_name!r}"
            )
        if isinstance(metrics, str):
            raise TypeError(
                f"LearningCurvePlot: metrics must be a list of names, got the string "
                f"{metrics!r}; write metrics=[{metrics!r}]"
            )
        self.monitor = monitor
        self.file_name = check_path("LearningCurvePlot", "file_name", file_name)
        self.path = check_path("LearningCurvePlot", "path", path)
        check_file_name("LearningCurvePlot", self.path, self.file_name)
        self.metrics = list(metrics) if metrics is not None else None
        self.engine = engine
        #: One entry per epoch: ``{"epoch": n, "values": {metric: value}}``.
        self.history: list[dict[str, Any]] = []
        self._file: str | None = None
        self._score_key: str | None = None
        self._best_epoch: int | None = None

    @property
    def file(self) -> str | None:
        """The PNG, once training has begun."""
        return self._file

    def at_training_begin(self, trainer: TrainerView, **kwargs: Any) -> None:
        self._file = output_path("LearningCurvePlot", trainer, self.path, self.file_name)

    def at_epoch_end(
        self,
        trainer: TrainerView,
        epoch: int = 0,
        metrics_train: Mapping[str, Any] | None = None,
        metrics_val: Mapping[str, Any] | None = None,
        val_score_key: str | None = None,
        **kwargs: Any,
    ) -> None:
        if self._file is None:
            self.at_training_begin(trainer)
        assert self._file is not None
        values = {
            key: float(value)
            for key, value in {**(metrics_train or {}), **(metrics_val or {})}.items()
        }
        # An epoch trained again (resumed from an older checkpoint) replaces the old points.
        self.history = [entry for entry in self.history if entry["epoch"] < epoch]
        self.history.append({"epoch": int(epoch), "values": values})
        self._score_key = val_score_key
        self._best_epoch = getattr(trainer, "best_epoch", None)
        with atomic_write(self._file, "wb") as handle:
            if self.engine == "pillow":
                render_png(self.panels(), handle, columns=_COLUMNS)
            else:
                self.figure().savefig(handle, format="png")

    def _monitored_key(self) -> str | None:
        name = self.monitor or self._score_key
        if name is None or not self.history:
            return None
        latest = self.history[-1]["values"]
        candidates = [name] if name.startswith(VAL_PREFIX) else [VAL_PREFIX + name, name]
        return next((key for key in candidates if key in latest), None)

    def _panels(self, monitor: str | None) -> list[str]:
        """Metric names without ``val_``: the monitored one first, then train order."""
        names: list[str] = []
        for entry in self.history:
            for key in entry["values"]:
                name = _base_name(key)
                if name not in names:
                    names.append(name)
        if self.metrics is not None:
            unknown = [name for name in self.metrics if name not in names]
            if unknown:
                raise ValueError(
                    f"LearningCurvePlot: no metric {unknown} in this run; it has {names} "
                    "(name them without the 'val_' prefix)"
                )
            names = list(self.metrics)
        base = _base_name(monitor)
        if base is not None and base in names:
            names.remove(base)
            names.insert(0, base)
        return names

    def panels(self) -> list[Panel]:
        """What the plot shows: one :class:`Panel` per metric, the monitored one first."""
        monitor, best_epoch = self._monitored_key(), self._best_epoch
        epochs = [entry["epoch"] for entry in self.history]
        panels = []
        for name in self._panels(monitor):
            panel = Panel(f"{name} (monitored)" if name == _base_name(monitor) else name)
            for key, label, dashed in ((name, "train", False), (VAL_PREFIX + name, "val", True)):
                series = [entry["values"].get(key, math.nan) for entry in self.history]
                if all(math.isnan(value) for value in series):
                    continue
                panel.series.append(Series(label, epochs, series, dashed))
                if key == monitor and best_epoch in epochs:
                    panel.star = (best_epoch, series[epochs.index(best_epoch)], f"best {key}")
            if best_epoch is not None and epochs and epochs[0] <= best_epoch <= epochs[-1]:
                panel.best_epoch = best_epoch
            panels.append(panel)
        return panels

    def figure(self) -> Figure:
        """The same plot as a matplotlib ``Figure`` (for notebooks, or ``engine="matplotlib"``)."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator

        panels = self.panels()
        columns = max(1, min(_COLUMNS, len(panels)))
        rows = max(1, math.ceil(len(panels) / columns))
        figure = Figure(figsize=(4.5 * columns, 3.4 * rows), dpi=100, layout="constrained")
        FigureCanvasAgg(figure)
        axes = figure.subplots(rows, columns, squeeze=False).ravel()
        for axis, panel in zip(axes, panels, strict=False):  # spare axes are hidden below
            for series in panel.series:
                style = "--" if series.dashed else "-"
                axis.plot(series.xs, series.ys, style, marker="o", markersize=3, label=series.label)
            if panel.star is not None:
                epoch, value, label = panel.star
                axis.plot([epoch], [value], "*", color="crimson", markersize=14, label=label)
            if panel.best_epoch is not None:
                best = panel.best_epoch
                axis.axvline(best, color="gray", linestyle=":", label=f"best epoch {best}")
            axis.set_title(panel.title)
            axis.set_xlabel(panel.x_label)
            axis.xaxis.set_major_locator(MaxNLocator(integer=True))
            axis.grid(alpha=0.3)
            axis.legend(fontsize="small")
        for axis in axes[len(panels) :]:
            axis.set_visible(False)
        return figure

    def state_dict(self) -> dict[str, Any]:
        """Every epoch's values, so a resumed run's plot starts at epoch 1."""
        return {"history": self.history}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = [
            {"epoch": int(entry["epoch"]), "values": dict(entry["values"])}
            for entry in state.get("history", [])
        ]
