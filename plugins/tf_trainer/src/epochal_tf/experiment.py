"""``TfExperiment``: delira's name for an :class:`~epochal.runs.experiment.Experiment` on TF."""

from __future__ import annotations

from typing import Any

from epochal.runs.experiment import Experiment

__all__ = ["TfExperiment"]


class TfExperiment(Experiment):
    """An :class:`Experiment` whose backend is ``"tf"`` (:class:`TfNetworkTrainer`)."""

    def __init__(self, params: Any, model_cls: Any, *args: Any, **kwargs: Any) -> None:
        backend = kwargs.pop("backend", "tf")
        if backend != "tf":
            raise ValueError(f"TfExperiment trains with TensorFlow, not {backend!r}")
        if kwargs.get("trainer_cls") is None:
            from epochal_tf.trainer import TfNetworkTrainer

            kwargs["trainer_cls"] = TfNetworkTrainer
        super().__init__(params, model_cls, *args, backend="tf", **kwargs)
