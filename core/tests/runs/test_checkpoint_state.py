"""What plugin and callback state a checkpoint can hold: the check made before every save."""

from __future__ import annotations

import json
from collections import OrderedDict

import numpy as np
import pytest

from epochal.runs.checkpoint_state import describe_holdable, find_unholdable, format_path


def bad(value, extra_types=()):
    found = find_unholdable(value, extra_types)
    return None if found is None else (format_path(found[0]), found[1])


def test_plain_data_passes_and_survives_json():
    state = {
        "none": None,
        "flag": True,
        "count": 3,
        "score": float("nan"),
        "name": "x",
        "history": [{"epoch": 1, "values": (0.5, -1.0)}],
        "ordered": OrderedDict(a=1),
    }
    assert bad(state) is None
    json.dumps(state)  # what the JSON backends (tf, numpy) write


@pytest.mark.parametrize(
    ("state", "where", "problem"),
    [
        ({"x": object()}, "state['x']", "object"),
        ({"a": [1, {"b": np.float64(0.5)}]}, "state['a'][1]['b']", "numpy.float64 (use .tolist()"),
        ({"a": np.zeros(3)}, "state['a']", "numpy.ndarray"),
        ({"a": {1: "one"}}, "state['a']", "a dict with the key 1 (int): keys must be str"),
        ({"a": {3, 1}}, "state['a']", "set (use a sorted list)"),
        ({"a": b"raw"}, "state['a']", "bytes"),
    ],
)
def test_what_a_plain_checkpoint_cannot_hold_is_named_with_its_path(state, where, problem):
    found = bad(state)
    assert found is not None and found[0] == where and found[1].startswith(problem)


def test_the_first_bad_value_in_order_is_reported():
    assert bad({"a": [1, object(), object()], "b": object()}) == ("state['a'][1]", "object")


def test_a_container_that_holds_itself_is_refused_not_a_recursion_error():
    loop: list = []
    loop.append(loop)
    where, problem = bad({"loop": loop})
    assert where.startswith("state['loop'][0][0]") and "nested more than" in problem


def test_a_backend_declares_what_else_it_holds():
    class Tensor:  # stands for a framework's tensor type
        pass

    assert bad({"w": Tensor(), "raw": b"x"}, (Tensor, bytes)) is None
    assert bad({"w": [Tensor(), object()]}, (Tensor,)) == ("state['w'][1]", "object")
    assert describe_holdable((bytes,)).endswith("; and bytes")
