"""The job as typed objects: one dataclass per config table, whose fields are the table's keys.

The fields' types, defaults and bounds are the declarations :func:`epochal.job.config.check_config`
checks a config against (so each error names its key), and :func:`job_from_config` turns a
checked config into a :class:`Job` once: what the experiment is built from. ``[model]`` is the
model's keyword arguments and ``[callbacks]`` names callbacks: both free-form tables, checked
against the model's and each callback's signature when they are built. ``[training]`` holds the
keys below plus the trainer's own arguments (its backend's ``config_keys`` and its signature).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any

__all__ = [
    "TABLES",
    "DataSpec",
    "ExperimentSpec",
    "Job",
    "TrainingSpec",
    "VariableSpec",
    "job_from_config",
]


def _key(default: Any = dataclasses.MISSING, fill: bool = False, minimum: int | None = None) -> Any:
    """A field: ``fill``: its default is written into a config that leaves the key out (the
    run folder's ``config.toml`` shows it); ``minimum``: the least value it may have."""
    return dataclasses.field(default=default, metadata={"fill": fill, "minimum": minimum})


@dataclasses.dataclass(frozen=True)
class ExperimentSpec:
    """``[experiment]``: what is trained, by which backend, where its runs go."""

    model: str
    name: str | None = None
    backend: str | None = None  # left out: the default job's (epochal.job.backends)
    seed: int = _key(0, fill=True)
    val_score_key: str | None = None
    val_score_mode: str | None = None  # "highest" or "lowest"
    checkpoint_freq: int = _key(1, fill=True, minimum=1)
    save_path: str | None = None
    trusted_modules: tuple = ()  # module names (epochal.job.trust); a list in TOML


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """``[data]``: the data set and how it is split and batched."""

    dataset: str
    dataset_params: dict | None = None
    val_split: float = _key(0.2, fill=True)
    stratify: bool = _key(True, fill=True)
    batch_size: int = _key(32, fill=True, minimum=1)
    val_batch_size: int = _key(256, fill=True, minimum=1)
    num_workers: int = _key(0, fill=True)
    sampler: str = _key("random", fill=True)
    transforms: list | None = None


@dataclasses.dataclass(frozen=True)
class TrainingSpec:
    """``[training]``: the keys the core reads; ``trainer``: the trainer's own arguments."""

    num_epochs: int = _key(dataclasses.MISSING, minimum=1)
    optimizer_cls: str | None = None
    optimizer_params: dict | None = None
    losses: dict | None = None
    metrics: dict | None = None
    trainer: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class VariableSpec:
    """``[variable]``: delira's variable parameters (a hyper-parameter search varies them)."""

    model: dict | None = None
    training: dict | None = None


@dataclasses.dataclass(frozen=True)
class Job:
    """A checked config, typed: built once (:func:`job_from_config`), read by the experiment."""

    experiment: ExperimentSpec
    data: DataSpec
    training: TrainingSpec
    model: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    callbacks: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    variable: VariableSpec = dataclasses.field(default_factory=VariableSpec)

    def model_kwargs(self) -> dict[str, Any]:
        """The model's keyword arguments: ``[model]``, ``[variable.model]`` over it (as delira's
        ``Parameters.model_kwargs``)."""
        return {**self.model, **(self.variable.model or {})}

    def training_kwargs(self, variable: bool = True) -> dict[str, Any]:
        """The training group: the core's keys that are set, the trainer's own arguments and
        (``variable``) ``[variable.training]`` over them, as delira's
        ``Parameters.training_kwargs``: what :func:`epochal.job.trainer_args.trainer_kwargs`
        makes the trainer's arguments of."""
        training = self.training
        core = {
            name: getattr(training, name)
            for name in keys_of(TrainingSpec)
            if getattr(training, name) is not None
        }
        varied = (self.variable.training or {}) if variable else {}
        return {**core, **training.trainer, **varied}


#: Table name -> its dataclass; ``None``: a free-form table.
TABLES: dict[str, type | None] = {
    "experiment": ExperimentSpec,
    "data": DataSpec,
    "model": None,
    "training": TrainingSpec,
    "variable": VariableSpec,
    "callbacks": None,
}


def keys_of(spec: type) -> dict[str, dataclasses.Field]:
    """The config keys a table's dataclass declares (``trainer`` is no key: the rest)."""
    return {f.name: f for f in dataclasses.fields(spec) if f.name != "trainer"}


def types_of(spec: type) -> dict[str, Any]:
    """The evaluated types of a table's keys."""
    return typing.get_type_hints(spec)


def job_from_config(config: Mapping[str, Any]) -> Job:
    """The typed :class:`Job` of a config that :func:`~epochal.job.config.check_config` passed."""
    training = dict(config.get("training") or {})
    core = {name: training.pop(name) for name in keys_of(TrainingSpec) if name in training}
    experiment = dict(config["experiment"])
    experiment["trusted_modules"] = tuple(experiment.get("trusted_modules") or ())
    return Job(
        experiment=ExperimentSpec(**experiment),
        data=DataSpec(**config["data"]),
        training=TrainingSpec(**core, trainer=training),
        model=dict(config.get("model") or {}),
        callbacks=dict(config.get("callbacks") or {}),
        variable=VariableSpec(**(config.get("variable") or {})),
    )
