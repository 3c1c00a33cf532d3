"""TOML job configs: load, override, check, and turn into an experiment and its data.

A config has the tables ``experiment``, ``data``, ``model`` (the model's keyword arguments),
``training``, ``callbacks`` and optionally ``variable`` (delira's variable parameters). Every
problem is a :class:`ConfigError` naming the key and what is allowed.
"""

from __future__ import annotations

import copy
import difflib
import os
import tomllib
from collections.abc import Iterable, Mapping
from importlib import resources
from typing import Any

from epochal.components import check_kwargs
from epochal.errors import ConfigError, UnknownNameError

__all__ = [
    "DEFAULT_CONFIG",
    "apply_override",
    "build_callbacks",
    "build_data",
    "build_dataset",
    "experiment_from_config",
    "load_config",
]

DEFAULT_CONFIG = "default.toml"

_INT, _FLOAT, _STR, _BOOL, _TABLE, _LIST = "integer", "number", "string", "boolean", "table", "list"
#: table -> key -> expected type; ``None`` for a free-form table.
SCHEMA: dict[str, dict[str, str] | None] = {
    "experiment": {
        "name": _STR,
        "backend": _STR,
        "model": _STR,
        "seed": _INT,
        "val_score_key": _STR,
        "val_score_mode": _STR,
        "checkpoint_freq": _INT,
        "save_path": _STR,
    },
    "data": {
        "dataset": _STR,
        "dataset_params": _TABLE,
        "val_split": _FLOAT,
        "stratify": _BOOL,
        "batch_size": _INT,
        "val_batch_size": _INT,
        "num_workers": _INT,
        "sampler": _STR,
        "transforms": _LIST,
    },
    "model": None,
    "training": {
        "num_epochs": _INT,
        "optimizer_cls": _STR,
        "optimizer_params": _TABLE,
        "losses": _TABLE,
        "metrics": _TABLE,
        "lr_scheduler_cls": _STR,
        "lr_scheduler_params": _TABLE,
        "mixed_precision": _BOOL,
        "mixed_precision_kwargs": _TABLE,
        "gpu_ids": _LIST,
    },
    "variable": {"model": _TABLE, "training": _TABLE},
    "callbacks": None,
}
#: Keys every config must end up with (after the defaults below are filled in).
REQUIRED = {"experiment": ("model",), "data": ("dataset",), "training": ("num_epochs",)}
DEFAULTS = {
    "experiment": {"backend": "torch", "seed": 0, "checkpoint_freq": 1},
    "data": {
        "val_split": 0.2,
        "stratify": True,
        "batch_size": 32,
        "val_batch_size": 256,
        "num_workers": 0,
        "sampler": "random",
    },
}
POSITIVE = {
    "data.batch_size",
    "data.val_batch_size",
    "training.num_epochs",
    "experiment.checkpoint_freq",
}


def _default_text() -> str:
    return resources.files("epochal.configs").joinpath(DEFAULT_CONFIG).read_text()


def default_backend() -> str:
    """``torch`` if installed, else ``tf``, else whatever backend is there."""
    from epochal.registry import trainers

    names = trainers().names()
    for preferred in ("torch", "tf"):
        if preferred in names:
            return preferred
    if not names:
        raise ConfigError("no backend is installed: pip install epochal-torch (or epochal-tf)")
    return names[0]


def parse_toml(text: str, origin: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{origin} is not valid TOML: {exc}") from None


def load_config(config: Any = None, overrides: Iterable[str] = ()) -> dict[str, Any]:
    """A checked config from a TOML path, a dict, or the embedded default (``None``), with
    ``"dotted.key=value"`` overrides applied (values in TOML syntax; bare words are strings)."""
    if config is None:
        loaded = parse_toml(_default_text(), "the default config")
        loaded["experiment"]["backend"] = default_backend()
    elif isinstance(config, Mapping):
        loaded = copy.deepcopy(dict(config))
    else:
        path = os.fspath(config)
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except FileNotFoundError:
            raise ConfigError(f"config file {path!r} does not exist") from None
        except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the config file {path!r}: {exc}") from None
        loaded = parse_toml(text, path)
    for override in overrides:
        apply_override(loaded, override)
    return check_config(loaded)


def apply_override(config: dict[str, Any], override: str) -> None:
    """Set ``a.b.c=value`` in ``config`` (creating tables on the way)."""
    key, sep, raw = override.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(
            f"--set {override!r}: expected KEY=VALUE with a dotted key, e.g. "
            "--set training.optimizer_params.lr=0.01"
        )
    try:
        value = tomllib.loads(f"value = {raw.strip()}")["value"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()  # a bare word: a string
    *parents, last = key.split(".")
    node = config
    for depth, part in enumerate(parents):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            where = ".".join(parents[: depth + 1])
            raise ConfigError(f"--set {key}: {where} is a value, not a table")
        node = child
    node[last] = value


def _type_name(value: Any) -> str:
    return {bool: _BOOL, int: _INT, float: _FLOAT, str: _STR, dict: _TABLE, list: _LIST}.get(
        type(value), type(value).__name__
    )


def _check_type(key: str, value: Any, expected: str) -> None:
    actual = _type_name(value)
    if actual == expected or (expected == _FLOAT and actual == _INT):
        return
    article = "an" if expected[0] in "aeiou" else "a"
    raise ConfigError(f"{key} must be {article} {expected}, got {actual} {value!r}")


def _unknown(key: str, name: str, allowed: Iterable[str]) -> ConfigError:
    allowed = sorted(allowed)
    close = difflib.get_close_matches(name, allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(f"unknown key {key}{hint}; allowed here: {', '.join(allowed)}")


def check_config(config: dict[str, Any]) -> dict[str, Any]:
    """Types, unknown keys and ranges; fills in the defaults. Names are checked on use."""
    for table, value in config.items():
        if table not in SCHEMA:
            raise _unknown(table, table, SCHEMA)
        if not isinstance(value, dict):
            raise ConfigError(f"{table} must be a table ([{table}]), got {value!r}")
    for table, defaults in DEFAULTS.items():
        for key, value in defaults.items():
            config.setdefault(table, {}).setdefault(key, value)
    for table in SCHEMA:
        config.setdefault(table, {})
    for table, keys in SCHEMA.items():
        if keys is None:
            continue
        for key, value in config[table].items():
            if key not in keys:
                if table == "training":
                    continue  # a trainer argument: checked against the trainer's signature
                raise _unknown(f"{table}.{key}", key, keys)
            _check_type(f"{table}.{key}", value, keys[key])
    for table, keys in REQUIRED.items():
        for key in keys:
            if key not in config[table]:
                raise ConfigError(f"{table}.{key} is missing")
    for dotted in POSITIVE:
        table, key = dotted.split(".")
        if key in config[table] and config[table][key] < 1:
            raise ConfigError(f"{dotted} must be at least 1, got {config[table][key]}")
    if config["data"]["num_workers"] < 0:
        raise ConfigError(f"data.num_workers must be >= 0, got {config['data']['num_workers']}")
    split = config["data"]["val_split"]
    if not 0 <= split < 1:
        raise ConfigError(f"data.val_split must be in [0, 1) (0: no validation), got {split}")
    mode = config["experiment"].get("val_score_mode")
    if mode is not None and mode not in ("highest", "lowest"):
        raise ConfigError(f"experiment.val_score_mode must be 'highest' or 'lowest', got {mode!r}")
    training = config["training"]
    if training.get("lr_scheduler_params") and not training.get("lr_scheduler_cls"):
        raise ConfigError(
            "training.lr_scheduler_params is set but training.lr_scheduler_cls is not: name the "
            "scheduler, e.g. lr_scheduler_cls = 'StepLR', or drop the parameters"
        )
    gpu_ids = training.get("gpu_ids", [])
    if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in gpu_ids):
        raise ConfigError(
            f"training.gpu_ids must be a list of CUDA device numbers (integers >= 0; [] for the "
            f"CPU), got {gpu_ids!r}"
        )
    for name, params in config["callbacks"].items():
        if not isinstance(params, (dict, bool)):
            raise ConfigError(
                f"callbacks.{name} must be a table of parameters, or false to turn it off; "
                f"got {params!r}"
            )
    return config


# -- building -----------------------------------------------------------------------------


def experiment_from_config(config: dict[str, Any]) -> Any:
    """The :class:`~epochal.experiment.Experiment` a checked config describes."""
    from epochal.components import resolve_component
    from epochal.experiment import Experiment
    from epochal.params import Parameters
    from epochal.runs import backend_trainer

    settings = config["experiment"]
    params = Parameters(
        {"model": config["model"], "training": config["training"]},
        config.get("variable") or None,
    )
    try:
        trainer_cls = backend_trainer(settings["backend"])
    except ConfigError as exc:
        raise ConfigError(f"experiment.backend: {exc}") from None
    model = resolve_component(trainer_cls, "models", settings["model"], "experiment.model")
    experiment = Experiment(
        params,
        model,
        trainer_cls=trainer_cls,
        name=settings.get("name"),
        save_path=settings.get("save_path"),
        val_score_key=settings.get("val_score_key"),
        checkpoint_freq=settings["checkpoint_freq"],
        backend=settings["backend"],
        seed=settings["seed"],
        val_score_mode=settings.get("val_score_mode"),
    )
    experiment.config = config
    return experiment


def build_dataset(config: Mapping[str, Any]) -> Any:
    from epochal.registry import datasets

    data = config["data"]
    try:
        factory = datasets().get(data["dataset"])
    except UnknownNameError as exc:
        raise ConfigError(f"data.dataset: {exc}") from None
    params = dict(data.get("dataset_params") or {})
    check_kwargs(factory, params, "data.dataset_params")
    dataset = factory(**params)
    if len(dataset) == 0:
        raise ConfigError(f"data.dataset {data['dataset']!r} is empty")
    return dataset


def _build_transforms(specs: list[Any]) -> list[Any]:
    from epochal.registry import resolve_path

    transforms = []
    for index, spec in enumerate(specs):
        key = f"data.transforms[{index}]"
        if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
            raise ConfigError(
                f"{key} must be a table with name = 'module:Transform' and its parameters"
            )
        params = {k: v for k, v in spec.items() if k != "name"}
        try:
            cls = resolve_path(spec["name"])
        except (ImportError, ValueError) as exc:
            raise ConfigError(f"{key}.name: {exc}") from None
        check_kwargs(cls, params, key)
        params = {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}
        try:
            transforms.append(cls(**params))
        except (TypeError, ValueError, AssertionError) as exc:
            raise ConfigError(f"{key}: {spec['name']}({params}) failed: {exc}") from None
    return transforms


def build_data(config: Mapping[str, Any], seed: int | None = None) -> tuple[Any, Any]:
    """Training and validation data managers (validation ``None`` when ``val_split`` is 0)."""
    from epochal.data import DataManager
    from epochal.registry import samplers

    data = config["data"]
    dataset = build_dataset(config)
    train, val = dataset, None
    if data["val_split"]:
        stratify = "label" if data["stratify"] else None
        try:
            train, val = dataset.train_test_split(
                test_size=data["val_split"], random_state=seed, stratify=stratify
            )
        except ValueError as exc:
            raise ConfigError(f"data.val_split = {data['val_split']}: {exc}") from None
    if data["batch_size"] > len(train):
        where = f" ({len(dataset)} less data.val_split = {data['val_split']})" if val else ""
        raise ConfigError(
            f"data.batch_size = {data['batch_size']} is larger than the {len(train)} training "
            f"samples{where}; use data.batch_size <= {len(train)}"
        )
    sampler = data["sampler"]
    if sampler not in samplers():
        raise ConfigError(
            f"data.sampler: unknown sampler {sampler!r}; known: {', '.join(samplers().names())}"
        )
    train_manager = DataManager(
        train,
        data["batch_size"],
        data["num_workers"],
        transforms=_build_transforms(data.get("transforms") or []) or None,
        sampler_cls=sampler,
        seed=seed,
    )
    val_manager = (
        DataManager(val, min(data["val_batch_size"], len(val)), 0) if val is not None else None
    )
    return train_manager, val_manager


def build_callbacks(
    config: Mapping[str, Any],
    val_score_mode: str,
    val_score_key: str | None,
    n_batches: int | None = None,
) -> list[object]:
    """The ``[callbacks]`` table's callbacks; ``early_stopping`` follows the score by default."""
    from epochal.registry import callbacks

    registry = callbacks()
    built = []
    for name, params in config["callbacks"].items():
        if params is False:
            # Turned off: the name must still exist (a typo would leave the callback on), but
            # the default job's callbacks may be turned off where their plugin is missing.
            if name not in registry and name not in _default_callbacks():
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
        if name == "early_stopping" and val_score_key and "monitor" not in params:
            params.setdefault("monitor", "val_" + val_score_key.removeprefix("val_"))
            params.setdefault("mode", val_score_mode)
        if name == "progress_bar" and n_batches and "n_batches" not in params:
            params["n_batches"] = n_batches
        check_kwargs(cls, params, f"callbacks.{name}")
        try:
            built.append(cls(**params))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"callbacks.{name}: {exc}") from None
    return built


def _default_callbacks() -> set[str]:
    return set(tomllib.loads(_default_text()).get("callbacks", {}))


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
