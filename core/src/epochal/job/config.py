"""TOML job configs: load, override and check (:mod:`epochal.job.build` turns one into objects).

A config has the tables ``experiment``, ``data``, ``model`` (the model's keyword arguments),
``training``, ``callbacks`` and optionally ``variable`` (delira's variable parameters). Every
problem is a :class:`ConfigError` naming the key and what is allowed.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import MISSING
from importlib import resources
from typing import Any

from epochal.errors import ConfigError
from epochal.job.backends import default_backend, default_job, trainer_config_keys
from epochal.job.components import check_value, toml_alternatives
from epochal.job.limits import MAX_DEPTH, check_seed
from epochal.job.spec import TABLES, keys_of, types_of

__all__ = [
    "DEFAULT_CONFIG",
    "SCHEMA",
    "apply_override",
    "check_config",
    "check_trainer_keys",
    "default_text",
    "load_config",
]

DEFAULT_CONFIG = "default.toml"

_WORDS = {int: "integer", float: "number", str: "string", bool: "boolean", dict: "table"}


def _toml_word(declared: Any) -> str:
    """A declared type in TOML's words: ``int`` -> ``"integer"``, ``dict | None`` -> ``"table"``."""
    kinds = [kind for kind, _ in toml_alternatives(declared) or ()]
    return " or ".join(dict.fromkeys("list" if k is list else _WORDS[k] for k in kinds))


#: table -> key -> the TOML type it takes; ``None`` for a free-form table. Derived from the
#: typed declarations of :mod:`epochal.job.spec`, which :func:`check_config` checks against. The
#: ``training`` table takes the trainer's arguments too: the keys its backend declares
#: (``config_keys``, :func:`check_trainer_keys`) and any other its signature takes
#: (:mod:`epochal.job.trainer_args`).
SCHEMA: dict[str, dict[str, str] | None] = {
    table: (
        {key: _toml_word(kind) for key, kind in types_of(spec).items() if key in keys_of(spec)}
        if spec is not None
        else None
    )
    for table, spec in TABLES.items()
}


def default_text() -> str:
    return resources.files("epochal.configs").joinpath(DEFAULT_CONFIG).read_text()


def parse_toml(text: str, origin: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{origin} is not valid TOML: {exc}") from None
    except RecursionError:  # tomllib recurses once per level: ~500 nested [ or { exhaust it
        found = _too_deep(text)
        where = f" line {found[0]}: the value of {found[1] or 'a key'}" if found else " a value"
        raise ConfigError(
            f"{origin}{where} nests lists or inline tables far more than {MAX_DEPTH} deep; "
            f"a config may nest at most {MAX_DEPTH} levels"
        ) from None


_HEADER = re.compile(r"\s*\[\[?\s*([^\[\]=]*?)\s*\]\]?\s*(#.*)?$")


def _too_deep(text: str) -> tuple[int, str] | None:
    """``(line, key)`` of the first value in TOML ``text`` that nests lists or inline tables
    more than :data:`MAX_DEPTH` deep: a rough scan (strings and comments skipped) that names
    the key when the parser itself cannot."""
    depth, table, key, quote = 0, "", "", ""
    for number, row in enumerate(text.splitlines(), 1):
        header = _HEADER.match(row) if depth == 0 and not quote else None
        if header:
            table = header.group(1)
            continue
        index = 0
        while index < len(row):
            char = row[index]
            if quote:
                if char == "\\" and quote[0] == '"':
                    index += 1  # an escaped character
                elif row.startswith(quote, index):
                    index += len(quote) - 1
                    quote = ""
            elif char == "#":
                break
            elif char in "\"'":
                quote = char * 3 if row.startswith(char * 3, index) else char
                index += len(quote) - 1
            elif char == "=" and depth == 0:
                name = row[:index].strip()
                key = f"{table}.{name}" if table else name
            elif char in "[{":
                depth += 1
                if depth > MAX_DEPTH:
                    return number, key
            elif char in "]}":
                depth = max(depth - 1, 0)
            index += 1
        if len(quote) == 1:
            quote = ""  # a one-line string ends with its line
    return None


def load_config(config: Any = None, overrides: Iterable[str] = ()) -> dict[str, Any]:
    """A checked config from a TOML path, a dict, or the embedded default (``None``), with
    ``"dotted.key=value"`` overrides applied (values in TOML syntax; bare words are strings)."""
    overrides = list(overrides)
    for override in overrides:  # a malformed --set is named before the file is read
        _split_override(override)
    if config is None:
        loaded = default_job()
        loaded["experiment"]["backend"] = default_backend()
    elif isinstance(config, Mapping):
        _check_values(config, "", 0)  # before deepcopy, which recursion would end
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
    key, raw = _split_override(override)
    try:
        value = tomllib.loads(f"value = {raw}")["value"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare word: a string
    except RecursionError:  # ~500 nested [ or {: tomllib recurses once per level
        raise ConfigError(
            f"--set {key}: the value nests lists or inline tables far more than {MAX_DEPTH} "
            f"deep; a config may nest at most {MAX_DEPTH} levels"
        ) from None
    *parents, last = key.split(".")
    node = config
    for depth, part in enumerate(parents):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            where = ".".join(parents[: depth + 1])
            raise ConfigError(f"--set {key}: {where} is a value, not a table")
        node = child
    node[last] = value


def _split_override(override: str) -> tuple[str, str]:
    """``KEY=VALUE`` as ``(key, value text)``, or a :class:`ConfigError` that shows the form."""
    key, sep, raw = override.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(
            f"--set {override!r}: expected KEY=VALUE with a dotted key, e.g. "
            "--set training.optimizer_params.lr=0.01"
        )
    return key, raw.strip()


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_values(node: Any, key: str, depth: int) -> None:
    """No string (nor key) holds a NUL byte, which no name or path may hold; nothing nests
    more than :data:`MAX_DEPTH` tables and lists deep (recursion in every later walk)."""
    if depth > MAX_DEPTH:
        raise ConfigError(
            f"{_shorten(key)} nests tables or lists more than {MAX_DEPTH} deep; a config may "
            f"nest at most {MAX_DEPTH} levels"
        )
    if isinstance(node, str):
        if "\x00" in node:
            raise ConfigError(
                f"{_shorten(key)} = {_shorten(repr(node))} contains a NUL byte (\\x00), which "
                "no name, path or value of a config may hold"
            )
    elif isinstance(node, Mapping):
        for name, value in node.items():
            dotted = f"{key}.{name}" if key else str(name)
            if "\x00" in str(name):
                raise ConfigError(
                    f"the key {_shorten(repr(dotted))} contains a NUL byte (\\x00), which no "
                    "key of a config may hold"
                )
            _check_values(value, dotted, depth + 1)
    elif isinstance(node, (list, tuple)):
        for index, value in enumerate(node):
            _check_values(value, f"{key}[{index}]", depth + 1)


def _unknown(key: str, name: str, allowed: Iterable[str]) -> ConfigError:
    allowed = sorted(allowed)
    close = difflib.get_close_matches(name, allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(f"unknown key {key}{hint}; allowed here: {', '.join(allowed)}")


def _check_trusted_modules(modules: list[Any]) -> None:
    """``experiment.trusted_modules``: importable module names, none of the standard library
    (whose functions include ``os.system``: trusting it would let a config run commands)."""
    import sys

    for module in modules:
        if not isinstance(module, str) or not all(
            part.isidentifier() for part in module.split(".")
        ):
            raise ConfigError(
                f"experiment.trusted_modules: {module!r} is not a module name; list packages "
                "whose functions the job may name, e.g. trusted_modules = ['mypackage']"
            )
        if module.split(".")[0] in sys.stdlib_module_names:
            raise ConfigError(
                f"experiment.trusted_modules: {module!r} is a Python standard-library module, "
                "which a job can never trust (it holds os.system and the like); list your own "
                "packages only"
            )


def check_config(config: dict[str, Any]) -> dict[str, Any]:
    """Types, unknown keys and ranges, against :mod:`epochal.job.spec`'s declarations; fills in
    the defaults it marks. Names are checked on use."""
    _check_values(config, "", 0)
    for table, value in config.items():
        if table not in TABLES:
            raise _unknown(table, table, TABLES)
        if not isinstance(value, dict):
            raise ConfigError(f"{table} must be a table ([{table}]), got {value!r}")
    for table, spec in TABLES.items():
        config.setdefault(table, {})
        if spec is None:
            continue
        declared = keys_of(spec)
        for key, field in declared.items():
            if field.metadata.get("fill") and key not in config[table]:
                config[table][key] = field.default
        if table == "experiment" and "backend" not in config[table]:
            config[table]["backend"] = default_backend()
        types = types_of(spec)
        for key, value in config[table].items():
            if key not in declared:
                if table == "training":
                    continue  # a trainer argument: checked against the trainer's signature
                raise _unknown(f"{table}.{key}", key, declared)
            check_value(f"{table}.{key}", value, types[key])
            minimum = declared[key].metadata.get("minimum")
            if minimum is not None and value < minimum:
                raise ConfigError(f"{table}.{key} must be at least {minimum}, got {value}")
        for key, field in declared.items():
            required = field.default is MISSING and field.default_factory is MISSING
            if required and key not in config[table]:
                raise ConfigError(f"{table}.{key} is missing")
    check_seed(config["experiment"]["seed"], "experiment.seed (--seed)")
    if config["data"]["num_workers"] < 0:
        raise ConfigError(f"data.num_workers must be >= 0, got {config['data']['num_workers']}")
    split = config["data"]["val_split"]
    if not 0 <= split < 1:
        raise ConfigError(f"data.val_split must be in [0, 1) (0: no validation), got {split}")
    mode = config["experiment"].get("val_score_mode")
    if mode is not None and mode not in ("highest", "lowest"):
        raise ConfigError(f"experiment.val_score_mode must be 'highest' or 'lowest', got {mode!r}")
    _check_trusted_modules(config["experiment"].get("trusted_modules", []))
    for name, params in config["callbacks"].items():
        if not isinstance(params, (dict, bool)):
            raise ConfigError(
                f"callbacks.{name} must be a table of parameters, or false to turn it off; "
                f"got {params!r}"
            )
    return config


def check_trainer_keys(config: Mapping[str, Any], trainer_cls: type) -> None:
    """The ``training.`` keys the backend declares (its trainer's ``config_keys``): types,
    ranges and the keys they need, each error naming its key."""
    training = config.get("training") or {}
    for name, declared in trainer_config_keys(trainer_cls).items():
        if name in training:
            declared.check(f"training.{name}", training[name], training)
