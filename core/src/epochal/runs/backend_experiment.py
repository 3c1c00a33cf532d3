"""Experiments bound to one backend: delira's ``PyTorchExperiment`` and ``TfExperiment`` are
subclasses that name their backend and trainer, nothing more."""

from __future__ import annotations

from typing import Any, ClassVar

from epochal.plugins.registry import resolve_path
from epochal.runs.experiment import Experiment

__all__ = ["BackendExperiment"]


class BackendExperiment(Experiment):
    """An :class:`~epochal.runs.experiment.Experiment` whose backend is fixed.

    A subclass sets :attr:`backend_name` and :attr:`trainer_path`; the trainer class is
    imported when an experiment is made (so importing the subclass imports no framework),
    unless ``trainer_cls`` is given. Another ``backend`` is refused.
    """

    #: The registered backend name (what a config's ``experiment.backend`` says).
    backend_name: ClassVar[str]
    #: ``"module:attr"`` of the backend's trainer class.
    trainer_path: ClassVar[str]
    #: What the error for another backend calls it (default: :attr:`backend_name`).
    framework: ClassVar[str | None] = None

    def __init__(self, params: Any, model_cls: Any, *args: Any, **kwargs: Any) -> None:
        backend = kwargs.pop("backend", self.backend_name)
        if backend != self.backend_name:
            raise ValueError(
                f"{type(self).__name__} trains with {self.framework or self.backend_name}, not "
                f"{backend!r}; use Experiment(..., backend={backend!r}) for that one"
            )
        if kwargs.get("trainer_cls") is None:
            kwargs["trainer_cls"] = resolve_path(self.trainer_path)
        super().__init__(params, model_cls, *args, backend=self.backend_name, **kwargs)
