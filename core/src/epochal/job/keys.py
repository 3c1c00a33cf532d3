"""Config keys as typed declarations: the core's tables and the ``training.`` keys a backend
adds (its trainer's ``config_keys``), each checked where the config is loaded, naming the key.

A backend declares what only it reads::

    class MyTrainer(AbstractNetworkTrainer):
        config_keys = {"devices": ConfigKey("list", items="integer", minimum=0,
                                            meaning="a list of device numbers (integers >= 0)")}

so that ``training.devices = [-1]`` is refused with the key's name before anything is built.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from epochal.errors import ConfigError

__all__ = ["TOML_TYPES", "ConfigKey", "check_type", "toml_type_name"]

#: TOML's words for the Python types a TOML value can have.
TOML_TYPES: dict[str, tuple[type, ...]] = {
    "integer": (int,),
    "number": (int, float),
    "string": (str,),
    "boolean": (bool,),
    "table": (dict,),
    "list": (list, tuple),
}
_TYPE_NAMES = {bool: "boolean", int: "integer", float: "number", str: "string", dict: "table"}


def toml_type_name(value: Any) -> str:
    """What a config value is, in TOML's words: ``integer``, ``number``, ``list``, ``table``..."""
    if isinstance(value, (list, tuple)):
        return "list"
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _is(value: Any, kind: str) -> bool:
    if isinstance(value, bool) and kind != "boolean":
        return False  # TOML's true is no integer
    return isinstance(value, TOML_TYPES[kind])


def check_type(key: str, value: Any, expected: str) -> None:
    """``value`` is a TOML ``expected`` (an integer is a number too), or a :class:`ConfigError`
    naming ``key``."""
    if _is(value, expected) or (expected == "number" and toml_type_name(value) == "integer"):
        return
    article = "an" if expected[0] in "aeiou" else "a"
    raise ConfigError(f"{key} must be {article} {expected}, got {toml_type_name(value)} {value!r}")


@dataclass(frozen=True)
class ConfigKey:
    """One config key: its TOML type and what else its value must be.

    Args:
        type: ``"integer"``, ``"number"``, ``"string"``, ``"boolean"``, ``"table"`` or ``"list"``.
        items: the TOML type of every item of a list.
        minimum: the least value a number (or every item of a list) may have.
        meaning: what a right value is, shown when the value is wrong ("a list of ...").
        requires: a key of the same table that must be set when this one is.
        fix: how to set ``requires`` (shown with it), e.g. ``"name it, e.g. x = 'y'"``.
        check_value: the backend's own check of a value of the right type (e.g. that a device
            exists), called when the config loads; its ``ValueError`` or ``TypeError`` becomes
            the key's error, so that no error of the trainer's has to be traced back to a key.
    """

    type: str
    items: str | None = None
    minimum: float | None = None
    meaning: str = ""
    requires: str | None = None
    fix: str = ""
    check_value: Callable[[Any], object] | None = None

    def __post_init__(self) -> None:
        for kind in (self.type, self.items):
            if kind is not None and kind not in TOML_TYPES:
                raise ValueError(f"ConfigKey: {kind!r} is no TOML type; one of {list(TOML_TYPES)}")

    def check(self, key: str, value: Any, table: Mapping[str, Any]) -> None:
        """Refuse ``value`` of ``key`` (its whole dotted name) with one line naming the key;
        ``table``: the other keys of its table (for ``requires``)."""
        check_type(key, value, self.type)
        values = value if self.type == "list" else [value]
        good = all(
            (self.items is None or self.type != "list" or _is(item, self.items))
            and (self.minimum is None or not _is(item, "number") or item >= self.minimum)
            for item in values
        )
        if not good:
            meaning = self.meaning or f"at least {self.minimum}"
            raise ConfigError(f"{key} must be {meaning}, got {value!r}")
        if self.requires and value and not table.get(self.requires):
            parent = key.rpartition(".")[0]
            required = f"{parent}.{self.requires}" if parent else self.requires
            fix = f": {self.fix}" if self.fix else ""
            raise ConfigError(f"{key} is set but {required} is not{fix}")
        self.check_given(key, value)

    def check_given(self, key: str, value: Any) -> None:
        """The backend's own check (``check_value``) of a value given to the trainer, e.g.
        through the Python API, where it may be an object rather than a TOML value."""
        if self.check_value is not None and value is not None:
            try:
                self.check_value(value)
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"{key}: {exc}") from None
