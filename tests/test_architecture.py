"""The architecture's invariants that a reading of the tree can check (docs/architecture.md).

Each test reads files only: the core is framework-neutral and names no plugin, every plugin
depends on the core alone, a backend's trainer module stays small, and the code cites no
document outside the repository.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "core" / "src" / "epochal"
PLUGINS = sorted(p.parent for p in (ROOT / "plugins").glob("*/pyproject.toml"))
EXAMPLES = sorted(p.parent for p in (ROOT / "examples").glob("*/pyproject.toml"))

#: Names (as code spells them) of backends, frameworks and of the callbacks epochal-callbacks
#: ships: the core's source must not mention them, in code or prose; it learns of them
#: through plugins. (The product names in prose, "PyTorch and TensorFlow", may stay.)
PLUGIN_NAMES = re.compile(
    r"\b(torch|tf|tensorflow|keras|jax|epochal_torch|epochal_tf|epochal_callbacks|"
    r"epochal-torch|epochal-tf|epochal-callbacks|early_stopping|progress_bar|tensorboard|"
    r"csv_logger|learning_curves|torchrun|cuda)\b"
)

#: The one exception: the augmenter's start mirrors batchgenerators' own, whose pin_memory
#: thread needs the framework batchgenerators imported (``_bg.torch``); the core names its
#: attribute, it never imports a framework.
_ALLOWED = re.compile(r"_bg\.torch\b")


def _sources(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def test_the_core_names_no_backend_framework_or_callback() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in [*_sources(CORE), *sorted(CORE.rglob("*.toml"))]
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if PLUGIN_NAMES.search(line) and not _ALLOWED.search(line)
    ]
    assert not found, "the core names a plugin or framework:\n" + "\n".join(found)


@pytest.mark.parametrize("package", [*PLUGINS, *EXAMPLES], ids=lambda p: p.name)
def test_every_plugin_depends_on_the_core_alone(package: Path) -> None:
    project = tomllib.loads((package / "pyproject.toml").read_text())["project"]
    epochal_deps = [
        dep
        for dep in project.get("dependencies", [])
        if re.match(r"epochal\b", dep) and not re.match(r"epochal\s*(?:[<>=!~;\[]|$)", dep)
    ]
    assert not epochal_deps, f"{package.name} depends on other plugins: {epochal_deps}"
    assert any(re.match(r"epochal\s*(?:[<>=!~;]|$)", dep) for dep in project["dependencies"])


@pytest.mark.parametrize(
    "module",
    [
        ROOT / "plugins/torch_trainer/src/epochal_torch/trainer.py",
        ROOT / "plugins/tf_trainer/src/epochal_tf/trainer.py",
        ROOT / "examples/numpy_trainer/src/epochal_numpy/trainer.py",
    ],
    ids=lambda p: p.parent.name,
)
def test_a_backends_trainer_module_is_small(module: Path) -> None:
    lines = len(module.read_text().splitlines())
    assert lines <= 250, f"{module.relative_to(ROOT)} has {lines} lines: the core's job?"


def test_no_code_cites_a_document_outside_the_repository() -> None:
    sources = [*_sources(CORE), *(p for d in PLUGINS for p in _sources(d / "src"))]
    sources += _sources(ROOT / "bench") + _sources(ROOT / "examples")
    cited = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in sources
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\bDESIGN\b|shared/", line)
    ]
    assert not cited, f"code cites a document outside the repository: {cited}"
