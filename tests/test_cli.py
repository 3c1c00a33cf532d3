"""The `epochal` command in real subprocesses, with real (and really broken) plugins."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import epochal

EPOCHAL = str(Path(sys.executable).parent / "epochal")


def run(*args: str, env: dict | None = None, check_code: int | None = 0, timeout: float = 120):
    merged = {k: v for k, v in os.environ.items() if not k.startswith("EPOCHAL_")}
    merged.update(env or {})
    result = subprocess.run(
        [EPOCHAL, *args], capture_output=True, text=True, env=merged, timeout=timeout
    )
    if check_code is not None:
        assert result.returncode == check_code, (result.returncode, result.stdout, result.stderr)
    return result


def test_version():
    assert run("--version").stdout.strip() == f"epochal, version {epochal.__version__}"


def test_help_lists_builtin_and_plugin_commands():
    out = run("--help").stdout
    assert re.search(r"^\s+plugins\s", out, re.MULTILINE)
    assert re.search(r"^\s+numpy-demo\s", out, re.MULTILINE)


@pytest.mark.parametrize("argv", [["--help"], ["plugins"], ["plugins", "--json"]])
def test_cli_does_not_import_torch_or_tensorflow(argv):
    code = (
        "import sys\n"
        "from epochal.cli.main import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        "frameworks = {'torch', 'tensorflow', 'keras', 'jax'}\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in frameworks)\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert "HEAVY []" in result.stderr, result.stderr


def test_plugins_table_and_json():
    table = run("plugins").stdout
    assert re.search(
        r"^numpy\s+0\.1\.0\s+commands: numpy-demo; trainers: numpy", table, re.MULTILINE
    )
    assert "datasets: digits" in table
    for name in ("torch", "tf", "callbacks", "core"):
        assert re.search(rf"^{name}\s+0\.1\.0", table, re.MULTILINE)
    listing = {row["name"]: row for row in json.loads(run("plugins", "--json").stdout)}
    assert listing["numpy"]["distribution"] == "epochal-numpy-example"
    assert listing["numpy"]["hooks"] == ["epochal_register_commands", "epochal_register_trainers"]
    assert listing["numpy"]["provides"] == {"commands": ["numpy-demo"], "trainers": ["numpy"]}
    # The built-in commands come from the core's own plugin, through the same hook.
    assert listing["core"]["distribution"] == "epochal"
    assert "epochal_register_commands" in listing["core"]["hooks"]
    assert listing["core"]["provides"]["commands"] == [
        "kfold",
        "plugins",
        "predict",
        "resume",
        "train",
    ]
    assert listing["core"]["provides"]["samplers"] == [
        "balanced",
        "random",
        "sequential",
        "stratified",
        "weighted",
    ]
    assert listing["callbacks"]["provides"]["callbacks"] == [
        "csv_logger",
        "early_stopping",
        "learning_curves",
        "progress_bar",
        "tensorboard",
        "timer",
    ]
    # Each backend registers its own LR schedulers: epochal-callbacks needs no framework.
    assert listing["torch"]["provides"] == {
        "callbacks": ["torch_lr_scheduler"],
        "trainers": ["torch"],
    }
    assert listing["tf"]["provides"]["callbacks"] == [
        "tf_cosine_decay",
        "tf_reduce_on_plateau",
        "tf_step_decay",
        "tf_warmup",
    ]
    assert all(row["error"] is None for row in listing.values())


BROKEN_ON_IMPORT = "raise ZeroDivisionError('plugin author divided by zero')\n"


def test_plugin_broken_on_import_is_listed_and_the_rest_works(tmp_path, fake_distribution):
    env = fake_distribution(tmp_path, "brokenplug", BROKEN_ON_IMPORT)
    help_result = run("--help", env=env)
    assert "numpy-demo" in help_result.stdout
    assert (
        "epochal: warning: plugin 'brokenplug' (distribution brokenplug) failed at import: "
        "ZeroDivisionError: plugin author divided by zero" in help_result.stderr
    )
    assert "Traceback" not in help_result.stderr
    table = run("plugins", env=env).stdout
    assert "Broken plugins (skipped; the others work):" in table
    assert (
        "brokenplug (brokenplug): import: ZeroDivisionError: plugin author divided by zero" in table
    )
    listing = {row["name"]: row for row in json.loads(run("plugins", "--json", env=env).stdout)}
    assert listing["brokenplug"]["error"].startswith("import: ZeroDivisionError")
    assert listing["numpy"]["error"] is None


def test_strict_mode_turns_a_broken_plugin_into_an_error(tmp_path, fake_distribution):
    env = fake_distribution(tmp_path, "brokenplug", BROKEN_ON_IMPORT)
    env["EPOCHAL_STRICT_PLUGINS"] = "1"
    result = run("plugins", env=env, check_code=2)
    assert (
        "epochal: error: plugin 'brokenplug'" in result.stderr and "Traceback" not in result.stderr
    )


def test_misspelt_hook_in_an_installed_plugin(tmp_path, fake_distribution):
    source = """
        from epochal import hookimpl

        @hookimpl
        def epochal_register_trainer(register):
            register("typo", "x:y")
    """
    env = fake_distribution(tmp_path, "typoplug", source)
    table = run("plugins", env=env).stdout
    assert (
        "typoplug (typoplug): register: PluginValidationError: unknown hook "
        "'epochal_register_trainer'; did you mean 'epochal_register_trainers'?" in table
    )


def test_load_disable_and_trace_variables():
    assert "numpy-demo" not in run("--help", env={"EPOCHAL_DISABLE_PLUGINS": "numpy"}).stdout
    assert "numpy-demo" not in run("--help", env={"EPOCHAL_LOAD_PLUGINS": "torch"}).stdout
    result = run("numpy-demo", env={"EPOCHAL_DISABLE_PLUGINS": "numpy"}, check_code=2)
    assert "No such command 'numpy-demo'" in result.stderr
    traced = run("plugins", env={"EPOCHAL_TRACE_PLUGINS": "1"})
    assert "epochal trace: epochal_register_trainers(register=" in traced.stderr
    assert "-> [numpy]" in traced.stderr


@pytest.mark.slow
def test_plugin_command_trains_through_the_core_loop():
    result = run("numpy-demo", "--epochs", "4", "--workers", "2")
    lines = result.stdout.strip().splitlines()
    assert [line.split()[1] for line in lines[:4]] == ["1/4", "2/4", "3/4", "4/4"]
    best = float(re.search(r"best val_accuracy (\d\.\d+)", lines[-1]).group(1))
    assert best > 0.9


def test_python_dash_m_epochal():
    result = subprocess.run(
        [sys.executable, "-m", "epochal", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0 and epochal.__version__ in result.stdout
