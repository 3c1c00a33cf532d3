"""Bad configs at ``epochal train``: every one exits 2 with one message naming the key.

A hypothesis strategy takes the default config and applies ONE mutation that makes it invalid:
a value of a wrong type (any key of known type, nested ones included), an unknown key at any
level, an unknown registry name, a missing config file, text that is not TOML, or a value of
the right type that no key may hold (a NUL byte in any string, any value nested more than
``MAX_DEPTH`` deep, a seed outside ``0 .. 2**32 - 1``). Each is run
through ``epochal.cli.main`` in this process (fast); a few fixed ones run as real subprocesses.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import io
import os
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st

from epochal.cli.main import main
from epochal.job.components import component_names
from epochal.job.config import SCHEMA, load_config
from epochal.job.limits import MAX_DEPTH, SEED_MAX
from epochal.plugins.registry import callbacks, datasets, samplers, trainers
from epochal.runs.experiment import TRAINING_KEYS
from epochal.testing import run_epochal

pytest.importorskip("torch")

BASE = load_config(None)
BACKEND = trainers().get(BASE["experiment"]["backend"])

# -- what the default config holds, and what each place accepts -------------------------------

_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string", dict: "table"}


def _type_of(value: Any) -> str:
    return "list" if isinstance(value, list) else _TYPES[type(value)]


def _leaves(node: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    found = []
    for key, value in node.items():
        found.append((prefix + key, value))
        if isinstance(value, dict):
            found += _leaves(value, f"{prefix}{key}.")
    return found


def _typed_keys() -> dict[str, str]:
    """Dotted key -> expected type: the schema's keys, and every value of the default config
    (``model.in_features``, ``training.optimizer_params.lr``, ``callbacks.progress_bar.lines``);
    a callback's entry is a table or a boolean (``false`` turns it off)."""
    typed = {table: "table" for table in SCHEMA}
    for table, keys in SCHEMA.items():
        typed.update({f"{table}.{key}": kind for key, kind in (keys or {}).items()})
    for key, value in _leaves(BASE):
        typed.setdefault(key, _type_of(value))
    for name in BASE["callbacks"]:
        typed[f"callbacks.{name}"] = "table or boolean"
    return typed


TYPED_KEYS = _typed_keys()


def _parameters(target: Any) -> set[str]:
    if isinstance(target, str):  # a "module:attr" path in the backend's table
        from epochal.plugins.registry import resolve_path

        target = resolve_path(target)
    return set(inspect.signature(target).parameters) - {"self", "kwargs"}


def _accepted_keys() -> dict[str, set[str]]:
    """Table -> the keys that are valid there (an "unknown key" mutation avoids them)."""
    accepted: dict[str, set[str]] = {"": set(SCHEMA)}
    accepted.update({table: set(keys) for table, keys in SCHEMA.items() if keys is not None})
    accepted["training"] |= TRAINING_KEYS | _parameters(BACKEND)
    accepted["model"] = _parameters(BACKEND.components["models"][BASE["experiment"]["model"]])
    optimizer = BACKEND.components["optimizers"][BASE["training"]["optimizer_cls"]]
    accepted["training.optimizer_params"] = _parameters(optimizer)
    accepted["callbacks"] = set(callbacks().names())
    for name in BASE["callbacks"]:
        accepted[f"callbacks.{name}"] = _parameters(callbacks().get(name))
    return accepted


#: Tables whose keys are free names (a loss or metric called anything): no "unknown" key there.
FREE_TABLES = {"training.losses", "training.metrics"}
ACCEPTED = _accepted_keys()
TABLES = sorted(key for key in ACCEPTED if key == "" or key in dict(_leaves(BASE)))

#: Dotted key -> the names valid there; a "registry name" mutation picks a word outside them.
REGISTRY_KEYS = {
    "experiment.backend": trainers().names(),
    "experiment.model": component_names(BACKEND, "models"),
    "data.dataset": datasets().names(),
    "data.sampler": samplers().names(),
    "training.optimizer_cls": component_names(BACKEND, "optimizers"),
    "training.losses.CE": component_names(BACKEND, "losses"),
    "training.metrics.accuracy": component_names(BACKEND, "metrics"),
    "callbacks": callbacks().names(),  # a callback's name is its key: renamed, not replaced
}

# -- the mutations ------------------------------------------------------------------------------


@dataclass
class Case:
    """One invalid job: ``config`` (a dict) or ``text`` (a file's bytes), or a missing file."""

    kind: str
    names: str  # what the error line must contain: a dotted key or a file name
    config: dict[str, Any] | None = None
    text: bytes | None = None
    missing: bool = False
    #: A mutation of training.num_epochs is tested without --epochs (which would replace it).
    epochs_option: bool = True


def _set(config: dict[str, Any], key: str, value: Any) -> None:
    *parents, last = key.split(".")
    node = config
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


identifiers = st.from_regex(r"[a-z][a-z0-9_]{1,11}", fullmatch=True)
words = st.from_regex(r"[a-z]{3,12}", fullmatch=True)
VALUES = {
    "string": st.text(max_size=12),
    "integer": st.integers(-(10**6), 10**6),
    "number": st.floats(allow_nan=False, width=32),
    "boolean": st.booleans(),
    "list": st.lists(st.integers(-5, 500), max_size=3),
    "table": st.dictionaries(identifiers, st.integers(0, 9), max_size=2),
}
values = st.one_of(*VALUES.values())


@st.composite
def wrong_type(draw: st.DrawFn) -> Case:
    key = draw(st.sampled_from(sorted(TYPED_KEYS)))
    expected = TYPED_KEYS[key].split(" or ")
    wrong = [kind for kind in VALUES if kind not in expected]
    if "number" in expected:
        wrong.remove("integer")  # 3 is a fine number
    value = draw(VALUES[draw(st.sampled_from(wrong))])
    config = copy.deepcopy(BASE)
    _set(config, key, value)
    return Case("wrong type", key, config, epochs_option=key != "training.num_epochs")


@st.composite
def unknown_key(draw: st.DrawFn) -> Case:
    table = draw(st.sampled_from([t for t in TABLES if t not in FREE_TABLES]))
    name = draw(identifiers.filter(lambda n: n not in ACCEPTED[table]))
    config = copy.deepcopy(BASE)
    key = f"{table}.{name}" if table else name
    _set(config, key, draw(values))
    return Case("unknown key", key, config)


@st.composite
def unknown_name(draw: st.DrawFn) -> Case:
    key = draw(st.sampled_from(sorted(REGISTRY_KEYS)))
    known = {name.lower() for name in REGISTRY_KEYS[key]}
    word = draw(words.filter(lambda w: w not in known))
    config = copy.deepcopy(BASE)
    if key == "callbacks":
        old = draw(st.sampled_from(sorted(config["callbacks"])))
        config["callbacks"][word] = config["callbacks"].pop(old)
        return Case("unknown name", f"callbacks.{word}", config)
    _set(config, key, word)
    return Case("unknown name", key, config)


@st.composite
def missing_file(draw: st.DrawFn) -> Case:
    name = draw(identifiers) + ".toml"
    return Case("missing file", name, missing=True)


@st.composite
def malformed_toml(draw: st.DrawFn) -> Case:
    text = tomli_w.dumps(BASE).encode()
    how = draw(st.sampled_from(["truncate", "bracket", "byte"]))
    at = draw(st.integers(1, len(text) - 1))
    if how == "truncate":
        broken = text[:at]
    elif how == "bracket":
        broken = text[:at] + draw(st.sampled_from([b"[", b"]"])) + text[at:]
    else:  # a byte that is not UTF-8: the file cannot even be read as text
        broken = text[:at] + b"\xff" + text[at:]
    try:
        tomllib.loads(broken.decode())
        assume(False)  # still valid TOML (e.g. cut at the end of a line): not this mutation
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        pass
    return Case("malformed TOML", "job.toml", text=broken)


STRING_KEYS = sorted(key for key, value in _leaves(BASE) if isinstance(value, str))


@st.composite
def bad_value(draw: st.DrawFn) -> Case:
    """A value of the right type that is refused anyway, named by its key."""
    config = copy.deepcopy(BASE)
    how = draw(st.sampled_from(["NUL", "nested", "seed"]))
    if how == "NUL":  # in any string: a name, a path, a registry name
        key = draw(st.sampled_from(STRING_KEYS))
        value = dict(_leaves(config))[key]
        at = draw(st.integers(0, len(value)))
        _set(config, key, value[:at] + "\x00" + value[at:])
        return Case("bad value", key, config)
    if how == "nested":  # any key, wrapped in more lists than a config may nest
        key = draw(st.sampled_from(sorted(TYPED_KEYS)))
        value = dict(_leaves(config))[key] if key in dict(_leaves(config)) else 1
        for _ in range(draw(st.integers(MAX_DEPTH, MAX_DEPTH + 20))):
            value = [value]
        _set(config, key, value)
        return Case("bad value", key, config, epochs_option=key != "training.num_epochs")
    seed = draw(st.one_of(st.integers(-(2**63), -1), st.integers(SEED_MAX + 1, 2**63 - 1)))
    _set(config, "experiment.seed", seed)
    return Case("bad value", "experiment.seed", config)


#: One mutation each; wrong types twice as often (the most keys to cover).
mutations = st.sampled_from(
    [wrong_type, wrong_type, unknown_key, unknown_name, missing_file, malformed_toml, bad_value]
).flatmap(lambda mutation: mutation())

# -- running ------------------------------------------------------------------------------------


def _write(case: Case, folder: str) -> str:
    path = os.path.join(folder, case.names if case.missing else "job.toml")
    if case.config is not None:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(tomli_w.dumps(case.config))
    elif case.text is not None:
        with open(path, "wb") as handle:
            handle.write(case.text)
    return path


def _argv(case: Case, config: str, run_dir: str) -> list[str]:
    epochs = ["--epochs", "1"] if case.epochs_option else []
    return ["train", config, *epochs, "--run-dir", run_dir]


def _train_in_process(argv: list[str]) -> tuple[Any, str]:
    err, out = io.StringIO(), io.StringIO()
    code: Any = 0
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            main(argv)
        except SystemExit as exc:
            code = exc.code
    return code, err.getvalue()


def _expected_text(case: Case) -> list[str]:
    """What the error line must contain: the mutated key's dotted path, or the file."""
    if case.kind == "malformed TOML":
        return ["job.toml"]
    return [case.names]


def check(case: Case, code: Any, stderr: str, run_dir: str) -> None:
    context = f"{case.kind} {case.names}: exit {code}\n{stderr}"
    assert code == 2, context
    errors = [line for line in stderr.splitlines() if line.startswith("epochal: error:")]
    assert len(errors) == 1, context
    for text in _expected_text(case):
        assert text in errors[0], context
    if case.kind == "malformed TOML":
        assert "not valid TOML" in errors[0] or "cannot read" in errors[0], context
    assert "Traceback" not in stderr, context
    assert not os.path.exists(run_dir), context


@settings(max_examples=400, deadline=None)
@given(case=mutations)
def test_every_invalid_config_exits_2_with_one_line_naming_the_key(case):
    event(case.kind)
    with tempfile.TemporaryDirectory() as folder:
        config = _write(case, folder)
        run_dir = os.path.join(folder, "run")
        code, stderr = _train_in_process(_argv(case, config, run_dir))
        check(case, code, stderr, run_dir)


# -- a few as real subprocesses -------------------------------------------------------------------


def _with(key: str, value: Any) -> dict[str, Any]:
    config = copy.deepcopy(BASE)
    _set(config, key, value)
    return config


FIXED = [
    Case("wrong type", "training.optimizer_params.lr", _with("training.optimizer_params.lr", "x")),
    Case("wrong type", "model.hidden", _with("model.hidden", ["wide"])),
    Case("unknown key", "callbacks.progress_bar.colour", _with("callbacks.progress_bar.colour", 1)),
    Case("unknown name", "experiment.model", _with("experiment.model", "resnet")),
    Case("malformed TOML", "job.toml", text=tomli_w.dumps(BASE).encode()[:-40] + b"[\n"),
]


@pytest.mark.parametrize("case", FIXED, ids=[case.names for case in FIXED])
def test_fixed_invalid_configs_as_subprocesses(case, tmp_path):
    config = _write(case, str(tmp_path))
    result = run_epochal(*_argv(case, config, "run"), cwd=tmp_path, timeout=120)
    check(case, result.returncode, result.stderr, str(Path(tmp_path, "run")))
