"""``TfExperiment``: delira's name for an :class:`~epochal.runs.experiment.Experiment` on TF."""

from __future__ import annotations

from epochal.runs.backend_experiment import BackendExperiment

__all__ = ["TfExperiment"]


class TfExperiment(BackendExperiment):
    """An :class:`Experiment` whose backend is ``"tf"`` (:class:`TfNetworkTrainer`)."""

    backend_name = "tf"
    framework = "TensorFlow"
    trainer_path = "epochal_tf.trainer:TfNetworkTrainer"
