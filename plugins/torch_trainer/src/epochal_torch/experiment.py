"""``PyTorchExperiment``: delira's name for an :class:`~epochal.runs.experiment.Experiment`
whose backend is torch."""

from __future__ import annotations

from epochal.runs.backend_experiment import BackendExperiment

__all__ = ["PyTorchExperiment"]


class PyTorchExperiment(BackendExperiment):
    """An :class:`Experiment` whose backend is ``"torch"`` (:class:`PyTorchNetworkTrainer`)."""

    backend_name = "torch"
    trainer_path = "epochal_torch.trainer:PyTorchNetworkTrainer"
