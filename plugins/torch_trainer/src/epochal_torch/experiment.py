"""``PyTorchExperiment``: delira's name for :class:`~epochal.runs.experiment.Experiment` (torch)."""

from __future__ import annotations

from typing import Any

from epochal.runs.experiment import Experiment

__all__ = ["PyTorchExperiment"]


class PyTorchExperiment(Experiment):
    """An :class:`Experiment` whose backend is ``"torch"`` (:class:`PyTorchNetworkTrainer`)."""

    def __init__(self, params: Any, model_cls: Any, *args: Any, **kwargs: Any) -> None:
        backend = kwargs.pop("backend", "torch")
        if backend != "torch":
            raise ValueError(f"PyTorchExperiment trains with torch, not {backend!r}")
        if kwargs.get("trainer_cls") is None:
            from epochal_torch.trainer import PyTorchNetworkTrainer

            kwargs["trainer_cls"] = PyTorchNetworkTrainer
        super().__init__(params, model_cls, *args, backend="torch", **kwargs)
