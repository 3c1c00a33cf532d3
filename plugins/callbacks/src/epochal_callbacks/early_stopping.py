"""EarlyStopping: stop when a metric has not improved for ``patience`` epochs."""

from __future__ import annotations

from typing import Any

from epochal.loop.callbacks import (
    AbstractCallback,
    TrainerView,
    check_mode,
    improved,
    lookup_metric,
)

_DELIRA_MODES = {"min": "lowest", "max": "highest"}


class EarlyStopping(AbstractCallback):
    """Returns ``{"stop_training": True}`` after ``patience`` epochs without improvement.

    Args:
        monitor: a metric of the epoch, e.g. ``"val_CE"`` or ``"val_accuracy"`` (validation
            keys carry the prefix ``val_``; a key without it is a training metric).
        mode: ``"highest"`` or ``"lowest"`` (delira's ``"max"``/``"min"`` are accepted).
        patience: epochs without improvement before stopping (at least 1).
        min_delta: how much better than the best a value must be to count as improvement.
        monitor_key: delira's name for ``monitor``.
    """

    #: Left out of a config, ``monitor`` and ``mode`` follow the job's validation score.
    job_params = {"monitor": "val_score_key", "mode": "val_score_mode"}

    def __init__(
        self,
        monitor: str | None = None,
        mode: str = "highest",
        patience: int = 10,
        min_delta: float = 0.0,
        *,
        monitor_key: str | None = None,
    ) -> None:
        monitor = monitor if monitor is not None else monitor_key
        if not isinstance(monitor, str) or not monitor:
            raise ValueError("EarlyStopping needs monitor='<metric>', e.g. monitor='val_CE'")
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ValueError(f"EarlyStopping: patience must be an integer >= 1, got {patience!r}")
        if min_delta < 0:
            raise ValueError(f"EarlyStopping: min_delta must be >= 0, got {min_delta!r}")
        self.monitor = monitor
        self.mode = check_mode("EarlyStopping", _DELIRA_MODES.get(mode, mode))
        self.patience = patience
        self.min_delta = float(min_delta)
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.bad_epochs = 0
        self.stopped_epoch: int | None = None

    def at_epoch_end(
        self,
        trainer: TrainerView,
        epoch: int = 0,
        metrics_train: dict | None = None,
        metrics_val: dict | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        value = lookup_metric("EarlyStopping", self.monitor, metrics_train or {}, metrics_val or {})
        if improved(self.mode, self.best, value, self.min_delta):
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
            return {}
        self.bad_epochs += 1
        if self.bad_epochs >= self.patience:
            self.stopped_epoch = epoch
            return {"stop_training": True}
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {
            "monitor": self.monitor,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "stopped_epoch": self.stopped_epoch,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("monitor", self.monitor) != self.monitor:
            raise ValueError(
                f"EarlyStopping: the checkpoint monitored {state['monitor']!r}, this callback "
                f"monitors {self.monitor!r}; resume with the same callbacks in the same order"
            )
        self.best = state["best"]
        self.best_epoch = state["best_epoch"]
        self.bad_epochs = state["bad_epochs"]
        self.stopped_epoch = state["stopped_epoch"]

    def __repr__(self) -> str:
        return (
            f"EarlyStopping(monitor={self.monitor!r}, mode={self.mode!r}, "
            f"patience={self.patience}, min_delta={self.min_delta})"
        )
