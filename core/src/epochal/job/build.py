"""A checked job config (:mod:`epochal.job.config`) turned into objects: the experiment, its data
managers (with batchgenerators transforms), its callbacks, and back into the TOML a run folder
keeps (``config.toml``). Every problem is a :class:`ConfigError` naming the key."""

from __future__ import annotations

import copy
import difflib
from collections.abc import Mapping
from typing import Any

from epochal.errors import ConfigError, UnknownNameError
from epochal.job.components import check_kwargs
from epochal.job.spec import Job, job_from_config

__all__ = [
    "build_callbacks",
    "build_data",
    "build_dataset",
    "config_for_saving",
    "experiment_from_config",
]


def experiment_from_config(config: dict[str, Any]) -> Any:
    """The :class:`~epochal.runs.experiment.Experiment` a checked config describes, built from
    its typed :class:`Job` (the trainer's arguments come from ``job.training``); the backend's
    declared keys and the model's declared checks run here, each error naming its key."""
    from epochal.job.backends import backend_trainer
    from epochal.job.components import resolve_component
    from epochal.job.config import check_trainer_keys
    from epochal.job.ready_models import check_model_arguments
    from epochal.runs.experiment import Experiment

    job = job_from_config(config)  # the checked config, typed once
    settings = job.experiment
    try:
        trainer_cls = backend_trainer(settings.backend)
    except ConfigError as exc:
        raise ConfigError(f"experiment.backend: {exc}") from None
    check_trainer_keys(config, trainer_cls)
    trusted = settings.trusted_modules
    model = resolve_component(trainer_cls, "models", settings.model, "experiment.model", trusted)
    check_model_arguments(model, job.model_kwargs())
    _check_val_score_key(job)
    experiment = Experiment(
        job,
        model,
        trainer_cls=trainer_cls,
        name=settings.name,
        save_path=settings.save_path,
        val_score_key=settings.val_score_key,
        checkpoint_freq=settings.checkpoint_freq,
        backend=settings.backend,
        seed=settings.seed,
        val_score_mode=settings.val_score_mode,
        trusted_modules=trusted,
    )
    experiment.config = config
    return experiment


def typed(config: Mapping[str, Any] | Job) -> Job:
    """``config`` as the typed :class:`Job` (a checked config dict, or the job itself)."""
    return config if isinstance(config, Job) else job_from_config(config)


def build_dataset(config: Mapping[str, Any] | Job) -> Any:
    """The data set of ``[data]`` (``dataset`` and its ``dataset_params``)."""
    from epochal.plugins.registry import datasets

    data = typed(config).data
    try:
        factory = datasets().get(data.dataset)
    except UnknownNameError as exc:
        raise ConfigError(f"data.dataset: {exc}") from None
    params = dict(data.dataset_params or {})
    check_kwargs(factory, params, "data.dataset_params")
    try:
        dataset = factory(**params)
    except (TypeError, ValueError, OverflowError, MemoryError) as exc:  # the params' fault
        shown = ", ".join(f"{key} = {value!r}" for key, value in params.items()) or "none"
        raise ConfigError(
            f"data.dataset_params: the dataset {data.dataset!r} refused its parameters "
            f"({shown}): {type(exc).__name__}: {exc}"
        ) from None
    if len(dataset) == 0:
        raise ConfigError(f"data.dataset {data.dataset!r} is empty")
    return dataset


def _build_transforms(specs: list[Any], trusted: tuple[str, ...] = ()) -> list[Any]:
    from epochal.job.trust import import_checked

    transforms = []
    for index, spec in enumerate(specs):
        key = f"data.transforms[{index}]"
        if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
            raise ConfigError(
                f"{key} must be a table with name = 'module:Transform' and its parameters"
            )
        params = {k: v for k, v in spec.items() if k != "name"}
        cls = import_checked(spec["name"], "transforms", f"{key}.name", None, trusted)
        check_kwargs(cls, params, key)
        params = {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}
        try:
            transforms.append(cls(**params))
        except (TypeError, ValueError, AssertionError) as exc:
            raise ConfigError(f"{key}: {spec['name']}({params}) failed: {exc}") from None
    return transforms


def build_data(config: Mapping[str, Any] | Job, seed: int | None = None) -> tuple[Any, Any]:
    """Training and validation data managers (validation ``None`` when ``val_split`` is 0)."""
    from epochal.data import DataManager
    from epochal.plugins.registry import samplers

    job = typed(config)
    data = job.data
    dataset = build_dataset(job)
    train, val = dataset, None
    if data.val_split:
        stratify = "label" if data.stratify else None
        try:
            train, val = dataset.train_test_split(
                test_size=data.val_split, random_state=seed, stratify=stratify
            )
        except ValueError as exc:
            raise ConfigError(f"data.val_split = {data.val_split}: {exc}") from None
    if data.batch_size > len(train):
        where = f" ({len(dataset)} less data.val_split = {data.val_split})" if val else ""
        raise ConfigError(
            f"data.batch_size = {data.batch_size} is larger than the {len(train)} training "
            f"samples{where}; use data.batch_size <= {len(train)}"
        )
    sampler = data.sampler
    if sampler not in samplers():
        raise ConfigError(
            f"data.sampler: unknown sampler {sampler!r}; known: {', '.join(samplers().names())}"
        )
    train_manager = DataManager(
        train,
        data.batch_size,
        data.num_workers,
        transforms=_build_transforms(
            data.transforms or [],
            job.experiment.trusted_modules,
        )
        or None,
        sampler_cls=sampler,
        seed=seed,
    )
    val_manager = (
        DataManager(val, min(data.val_batch_size, len(val)), 0) if val is not None else None
    )
    return train_manager, val_manager


def build_callbacks(
    config: Mapping[str, Any] | Job,
    val_score_mode: str,
    val_score_key: str | None,
    n_batches: int | None = None,
) -> list[object]:
    """The ``[callbacks]`` table's callbacks. A callback class may ask for what the job knows
    (its ``job_params``, :func:`_job_params`): a callback that follows the validation score
    follows the job's by default, a progress display knows the batches of an epoch."""
    from epochal.plugins.registry import callbacks

    registry = callbacks()
    built = []
    table = config.callbacks if isinstance(config, Job) else config["callbacks"]
    for name, params in table.items():
        if params is False:
            # Turned off: a typo of a callback would leave that one on, so a name close to a
            # registered one must be one; any other name (a callback whose plugin is missing
            # here, e.g. one of the default job's) runs nowhere, and turning it off is kept.
            if name not in registry and difflib.get_close_matches(name, registry.names(), n=1):
                try:
                    registry.entry(name)
                except UnknownNameError as exc:
                    raise ConfigError(f"callbacks.{name}: {exc}") from None
            continue
        params = {} if params is True else dict(params)
        try:
            cls = registry.get(name)
        except UnknownNameError as exc:
            raise ConfigError(f"callbacks.{name}: {exc}") from None
        job = {
            "val_score_key": "val_" + val_score_key.removeprefix("val_") if val_score_key else None,
            "val_score_mode": val_score_mode,
            "n_batches": n_batches or None,
        }
        params = _job_params(cls, params, job)
        check_kwargs(cls, params, f"callbacks.{name}")
        try:
            built.append(cls(**params))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"callbacks.{name}: {exc}") from None
    return built


#: What the job tells a callback that asks (its class's ``job_params``: parameter -> one of these).
JOB_VALUES = ("val_score_key", "val_score_mode", "n_batches")


def _job_params(cls: Any, params: dict[str, Any], job: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` with the job's values filled in where the callback class asks for them
    (``job_params = {"monitor": "val_score_key", "mode": "val_score_mode"}``) and the config
    leaves them out. The score's mode goes only with the score: a callback the config points
    at another key keeps its own mode."""
    asked = getattr(cls, "job_params", None) or {}
    filled = dict(params)
    given = set(params)
    for parameter, value_name in asked.items():
        if value_name not in JOB_VALUES:
            raise ConfigError(
                f"{getattr(cls, '__name__', cls)}.job_params: {parameter!r} asks for "
                f"{value_name!r}; a job knows {', '.join(JOB_VALUES)}"
            )
        value = job.get(value_name)
        if parameter in given or value is None:
            continue
        if value_name == "val_score_mode" and any(
            asked.get(p) == "val_score_key" and p in given for p in asked
        ):
            continue  # the config monitors a key of its own choice: not the job's mode
        if value_name == "val_score_mode" and job.get("val_score_key") is None:
            continue
        filled[parameter] = value
    return filled


def _check_val_score_key(job: Job) -> None:
    """``experiment.val_score_key`` must name a loss or metric the job computes: a typo would
    otherwise train a whole run that tracks no best epoch."""
    key = job.experiment.val_score_key
    if key is None:
        return
    names: set[str] = set()
    for table in (
        job.training.losses,
        job.training.metrics,
        job.training.trainer.get("train_metrics"),
        job.training.trainer.get("val_metrics"),
    ):
        if isinstance(table, Mapping):
            names.update(table)
    if not names or key.removeprefix("val_") in names:
        return  # a job that names no loss or metric leaves them to the trainer
    close = difflib.get_close_matches(key.removeprefix("val_"), sorted(names), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(
        f"experiment.val_score_key = {key!r} names no loss or metric of this job{hint}; it "
        f"computes {', '.join(sorted(names))} (training.losses and training.metrics), and "
        "validation reports each with the prefix 'val_'"
    )


def _tomlable(value: Any) -> Any:
    """A value TOML can hold: objects become their ``module:attr`` path (classes) or name."""
    if isinstance(value, Mapping):
        return {str(k): _tomlable(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_tomlable(v) for v in value if v is not None]
    if isinstance(value, (bool, int, float, str)):
        return value
    target = (
        value
        if isinstance(value, type) or (callable(value) and hasattr(value, "__qualname__"))
        else type(value)
    )
    return f"{getattr(target, '__module__', '?')}:{getattr(target, '__qualname__', target)}"


def config_for_saving(experiment: Any, params: Any = None) -> dict[str, Any]:
    """What ``config.toml`` in a run folder holds: enough for ``epochal resume``/``predict``."""
    if params is None and experiment.config is not None and experiment._params is None:
        return _tomlable(copy.deepcopy(experiment.config))  # its job, as it was checked
    params = params or experiment.params
    if experiment.config is not None:
        config = copy.deepcopy(experiment.config)
        config["model"] = params.as_dict()["fixed"]["model"]
        config["training"] = params.as_dict()["fixed"]["training"]
        return _tomlable(config)
    return _tomlable(
        {
            "experiment": {
                "name": experiment.name,
                "backend": experiment.backend,
                "model": experiment.model_cls,
                "seed": experiment.seed,
                "val_score_key": experiment.val_score_key,
                "checkpoint_freq": experiment.checkpoint_freq,
            },
            "model": params.as_dict()["fixed"]["model"],
            "training": params.as_dict()["fixed"]["training"],
            "variable": params.as_dict()["variable"],
        }
    )
