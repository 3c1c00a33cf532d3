"""What the plugin and callback part of a checkpoint may hold, checked before it is written.

A checkpoint keeps what plugins return from ``epochal_state_dict`` (and callbacks from
``state_dict()``) next to the weights. Every backend holds plain data: ``None``, ``bool``,
``int``, ``float``, ``str``, and lists, tuples and dicts (with ``str`` keys) of those; a
backend declares what else its files hold (``checkpoint_value_types`` on its trainer, e.g. its
tensors and ``bytes``). Anything else would make the file unloadable (a safe loader such as
PyTorch's ``weights_only`` one refuses a ``numpy.float64`` as much as an ``object()``) or
fail the write, so the trainer checks the state before a file is touched and names the plugin
and the path of the bad value. Types are checked exactly: a subclass of ``float`` such as
``numpy.float64`` is not a float to such a loader.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

__all__ = ["MAX_DEPTH", "PLAIN_DESCRIPTION", "describe_holdable", "find_unholdable", "format_path"]

_SCALARS = frozenset({type(None), bool, int, float, str})
_SEQUENCES = frozenset({list, tuple})
_MAPPINGS = frozenset({dict, OrderedDict})

#: Containers nested deeper than this are refused (a list that holds itself never ends).
MAX_DEPTH = 100

#: What every backend's checkpoint holds, for messages.
PLAIN_DESCRIPTION = "None, bool, int, float, str, and lists, tuples and dicts (str keys) of those"

Path = tuple[object, ...]


def find_unholdable(value: object, extra_types: Sequence[type] = ()) -> tuple[Path, str] | None:
    """``(path, problem)`` of the first value in ``value`` a checkpoint cannot hold, else
    ``None``. ``path`` is the keys and indices from ``value`` down to it; ``extra_types`` are
    the backend's own (matched with ``isinstance``, and not looked into)."""
    extra = tuple(extra_types)
    if _holdable(value, extra, 0):  # the common case, without paths: ~3x faster
        return None
    return _first_unholdable(value, extra)


def _holdable(value: object, extra: tuple[type, ...], depth: int) -> bool:
    kind = type(value)
    if kind in _SCALARS:
        return True
    if kind in _SEQUENCES:
        return depth < MAX_DEPTH and all(
            type(item) in _SCALARS or _holdable(item, extra, depth + 1)
            for item in value  # type: ignore[attr-defined]
        )
    if kind in _MAPPINGS:
        return depth < MAX_DEPTH and all(
            type(key) is str and (type(item) in _SCALARS or _holdable(item, extra, depth + 1))
            for key, item in value.items()  # type: ignore[attr-defined]
        )
    return bool(extra) and isinstance(value, extra)


def _first_unholdable(value: object, extra: tuple[type, ...]) -> tuple[Path, str] | None:
    """:func:`find_unholdable` with the paths: walked only when something is wrong."""
    stack: list[tuple[Path, object]] = [((), value)]
    while stack:
        path, item = stack.pop()
        kind = type(item)
        if kind in _SCALARS:
            continue
        if kind in _SEQUENCES or kind in _MAPPINGS:
            if len(path) >= MAX_DEPTH:
                return path, f"containers nested more than {MAX_DEPTH} deep (one holding itself?)"
            if kind in _SEQUENCES:
                items = list(enumerate(item))  # type: ignore[call-overload]
            else:
                items = list(item.items())  # type: ignore[attr-defined]
                for key, _ in items:
                    if type(key) is not str:
                        return (
                            path,
                            f"a dict with the key {key!r} ({_type_name(key)}): keys must be str",
                        )
            stack.extend(((*path, key), child) for key, child in reversed(items))
            continue
        if extra and isinstance(item, extra):
            continue
        return path, f"{_type_name(item)}{_hint(item)}"
    return None


def format_path(path: Path, root: str = "state") -> str:
    """``state['x'][0]`` for the path ``('x', 0)``."""
    return root + "".join(f"[{key!r}]" for key in path)


def describe_holdable(extra_types: Sequence[type] = ()) -> str:
    """What a checkpoint with the backend's ``extra_types`` holds, for messages."""
    extra = ", ".join(_qualified(kind) for kind in extra_types)
    return PLAIN_DESCRIPTION + (f"; and {extra}" if extra else "")


def _type_name(value: object) -> str:
    return _qualified(type(value))


def _qualified(kind: type) -> str:
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


def _hint(value: object) -> str:
    """How to turn a common near miss into plain data."""
    if type(value).__module__.split(".")[0] == "numpy":
        return " (use .tolist() or .item(): plain numbers and lists)"
    if isinstance(value, (set, frozenset)):
        return " (use a sorted list)"
    return ""
