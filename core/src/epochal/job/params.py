"""``Parameters``: delira's nested container of model and training parameters, in TOML.

Two groupings of the same values: ``fixed``/``variable`` on top (what a hyper-parameter search
varies) or ``model``/``training`` on top (what the experiment hands to the model class and to
the trainer). ``permute_*`` switches between them in place, as in delira.
"""

from __future__ import annotations

import copy
import os
import tomllib
from collections.abc import Mapping
from typing import Any

from epochal.errors import ConfigError

__all__ = ["Parameters"]

_GROUPS = ("model", "training")
_VARIABILITY = ("fixed", "variable")


def _group(value: Mapping[str, Any] | None, name: str) -> dict[str, dict[str, Any]]:
    value = dict(value or {})
    unknown = sorted(set(value) - set(_GROUPS))
    if unknown:
        raise ConfigError(
            f"{name}: unknown group(s) {unknown}; parameters are grouped into {list(_GROUPS)}"
        )
    groups = {}
    for key in _GROUPS:
        part = value.get(key) or {}
        if not isinstance(part, Mapping):
            raise ConfigError(f"{name}.{key} must be a table of parameters, got {part!r}")
        groups[key] = dict(part)
    return groups


class Parameters:
    """Model and training parameters, split into fixed and variable ones (delira's API).

    Args:
        fixed_params: ``{"model": {...}, "training": {...}}`` not varied by a search.
        variable_params: the same groups, the values a hyper-parameter search may vary.
    """

    def __init__(
        self,
        fixed_params: Mapping[str, Any] | None = None,
        variable_params: Mapping[str, Any] | None = None,
    ) -> None:
        self._tree: dict[str, dict[str, dict[str, Any]]] = {
            "fixed": _group(fixed_params, "fixed_params"),
            "variable": _group(variable_params, "variable_params"),
        }
        self._variability_on_top = True

    # -- delira's hierarchy API -----------------------------------------------------------

    @property
    def variability_on_top(self) -> bool:
        return self._variability_on_top

    @property
    def training_on_top(self) -> bool:
        return not self._variability_on_top

    @property
    def hierarchy(self) -> str:
        return (
            "variability\n|\n->\ttraining"
            if self._variability_on_top
            else ("training\n|\n->\tvariability")
        )

    def permute_hierarchy(self) -> Parameters:
        """Swap the two levels (in place) and return ``self``."""
        self._variability_on_top = not self._variability_on_top
        return self

    def permute_training_on_top(self) -> Parameters:
        self._variability_on_top = False
        return self

    def permute_variability_on_top(self) -> Parameters:
        self._variability_on_top = True
        return self

    def _view(self, top: str) -> dict[str, dict[str, Any]]:
        if top in _VARIABILITY:
            return self._tree[top]
        return {level: self._tree[level][top] for level in _VARIABILITY}

    def __getattr__(self, name: str) -> Any:
        tops = _VARIABILITY if self.__dict__.get("_variability_on_top", True) else _GROUPS
        if name in tops:
            return self._view(name)
        raise AttributeError(
            f"Parameters has no attribute {name!r}; with the current hierarchy the groups "
            f"are {list(tops)}"
        )

    def __getitem__(self, name: str) -> dict[str, Any]:
        if name in _VARIABILITY or name in _GROUPS:
            return self._view(name)
        raise KeyError(name)

    # -- values ---------------------------------------------------------------------------

    def group(self, name: str) -> dict[str, Any]:
        """One group's values, fixed and variable merged (variable wins): what a model or a
        trainer receives."""
        if name not in _GROUPS:
            raise KeyError(f"no parameter group {name!r}; the groups are {list(_GROUPS)}")
        return {**self._tree["fixed"][name], **self._tree["variable"][name]}

    @property
    def model_kwargs(self) -> dict[str, Any]:
        return self.group("model")

    @property
    def training_kwargs(self) -> dict[str, Any]:
        return self.group("training")

    def nested_get(self, key: str, *default: Any) -> Any:
        """The value of ``key`` wherever it sits (a dotted key is a path): delira's lookup."""
        for level in ("variable", "fixed"):
            for group in _GROUPS:
                node: Any = self._tree[level][group]
                for part in key.split("."):
                    if not isinstance(node, Mapping) or part not in node:
                        break
                    node = node[part]
                else:
                    return node
        if default:
            return default[0]
        raise KeyError(f"no parameter {key!r} in {self.as_dict()}")

    def update(self, other: Parameters | Mapping[str, Any]) -> Parameters:
        """Merge ``other`` (a Parameters or a ``{"fixed": ..., "variable": ...}`` dict) in."""
        tree = other._tree if isinstance(other, Parameters) else Parameters.from_dict(other)._tree
        for level in _VARIABILITY:
            for group in _GROUPS:
                self._tree[level][group].update(copy.deepcopy(tree[level][group]))
        return self

    # -- (de)serialisation ----------------------------------------------------------------

    def as_dict(self) -> dict[str, Any]:
        """``{"fixed": {"model": ..., "training": ...}, "variable": {...}}`` (a deep copy)."""
        return copy.deepcopy(self._tree)

    @classmethod
    def from_dict(cls, tree: Mapping[str, Any]) -> Parameters:
        """From ``{"fixed": ..., "variable": ...}``, or from ``{"model": ..., "training": ...}``
        (all fixed)."""
        keys = set(tree)
        if keys <= set(_GROUPS):
            return cls(fixed_params=tree)
        if keys <= set(_VARIABILITY):
            return cls(tree.get("fixed"), tree.get("variable"))
        raise ConfigError(
            f"parameters must have the tables {list(_VARIABILITY)} or {list(_GROUPS)}, "
            f"got {sorted(keys)}"
        )

    def save(self, file_path: str | os.PathLike[str]) -> str:
        """Write TOML (``.toml`` is appended if missing); returns the path written."""
        import tomli_w

        from epochal.runs.files import atomic_write

        path = os.fspath(file_path)
        if not path.endswith(".toml"):
            path += ".toml"
        with atomic_write(path) as handle:
            handle.write(tomli_w.dumps(self._tree).encode())
        return path

    @classmethod
    def load(cls, file_path: str | os.PathLike[str]) -> Parameters:
        """Read a TOML file written by :meth:`save` (or with ``[model]``/``[training]`` only)."""
        path = os.fspath(file_path)
        try:
            with open(path, "rb") as handle:
                tree = tomllib.load(handle)
        except FileNotFoundError:
            raise ConfigError(f"parameter file {path!r} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from None
        except RecursionError:  # ~500 nested [ or {: tomllib recurses once per level
            raise ConfigError(f"{path} nests lists or inline tables too deeply to read") from None
        return cls.from_dict(tree)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Parameters) and self._tree == other._tree

    def __repr__(self) -> str:
        return f"Parameters(fixed={self._tree['fixed']!r}, variable={self._tree['variable']!r})"

    def __deepcopy__(self, memo: dict[int, Any]) -> Parameters:
        clone = Parameters.from_dict(copy.deepcopy(self._tree, memo))
        clone._variability_on_top = self._variability_on_top
        return clone
