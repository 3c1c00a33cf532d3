"""The plugin manager: factory, isolation of broken plugins (sys.exit() included), the
EPOCHAL_* variables, the notice for a slow plugin import."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from epochal import hookimpl
from epochal.errors import PluginError
from epochal.plugins.manager import (
    DEFAULTS_PLUGIN_NAME,
    CtrlCWatch,
    PluginWarning,
    build_plugin_manager,
)
from epochal.plugins.registry import datasets, trainers


class GoodPlugin:
    @hookimpl
    def epochal_register_trainers(self, register):
        register("good", "epochal_numpy.trainer:NumpyNetworkTrainer")


class MisspeltPlugin:
    @hookimpl
    def epochal_at_epoc_end(self, trainer):  # misspelt on purpose
        pass


class WrongArgumentPlugin:
    @hookimpl
    def epochal_at_epoch_end(self, trainer, epochs):  # 'epochs' is not in the spec
        pass


def test_importing_epochal_builds_no_manager():
    code = (
        "import epochal, epochal.plugins.manager, epochal.cli.main, epochal.loop.trainer\n"
        "assert epochal.plugins.manager._manager is None, 'manager built at import time'\n"
        "import sys; assert 'epochal_numpy.plugin' not in sys.modules, 'plugin loaded at import'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_factory_gives_independent_managers():
    first = build_plugin_manager(load_entry_points=False, environ={}, plugins=[GoodPlugin()])
    second = build_plugin_manager(load_entry_points=False, environ={})
    assert "good" in trainers(first)
    assert "good" not in trainers(second)
    assert first.has_plugin(DEFAULTS_PLUGIN_NAME) and second.has_plugin(DEFAULTS_PLUGIN_NAME)


def test_misspelt_hookimpl_is_reported_and_skipped():
    with pytest.warns(
        PluginWarning, match=r"epochal_at_epoc_end.*did you mean 'epochal_at_epoch_end'"
    ):
        manager = build_plugin_manager(
            load_entry_points=False, environ={}, plugins=[MisspeltPlugin(), GoodPlugin()]
        )
    broken_names = list(manager.broken)
    assert len(broken_names) == 1 and "MisspeltPlugin" not in str(manager.list_name_plugin())
    assert "good" in trainers(manager)  # the others keep working


def test_misspelt_hookimpl_is_an_error_when_strict():
    with pytest.raises(PluginError, match="unknown hook 'epochal_at_epoc_end'"):
        build_plugin_manager(
            load_entry_points=False,
            environ={"EPOCHAL_STRICT_PLUGINS": "1"},
            plugins=[MisspeltPlugin()],
        )


def test_hookimpl_with_unknown_argument_is_reported():
    with pytest.warns(PluginWarning, match="epochs"):
        manager = build_plugin_manager(
            load_entry_points=False, environ={}, plugins=[WrongArgumentPlugin()]
        )
    assert manager.broken


def test_entry_points_load_real_installed_plugins():
    manager = build_plugin_manager(environ={})
    assert manager.has_plugin("numpy")
    assert manager.plugin_distribution("numpy") == "epochal-numpy-example"
    assert manager.plugin_version("numpy") == "0.1.0"
    assert "numpy" in trainers(manager)


@pytest.mark.parametrize(
    ("environ", "expect_numpy"),
    [
        ({}, True),
        ({"EPOCHAL_LOAD_PLUGINS": "torch,tf"}, False),
        ({"EPOCHAL_LOAD_PLUGINS": "numpy"}, True),
        ({"EPOCHAL_LOAD_PLUGINS": "epochal-numpy-example"}, True),  # distribution name works too
        ({"EPOCHAL_LOAD_PLUGINS": ""}, False),
        ({"EPOCHAL_DISABLE_PLUGINS": "numpy"}, False),
        ({"EPOCHAL_DISABLE_PLUGINS": "epochal_numpy_example"}, False),
    ],
)
def test_load_and_disable_variables(environ, expect_numpy):
    manager = build_plugin_manager(environ=environ)
    assert manager.has_plugin("numpy") is expect_numpy
    assert manager.has_plugin(DEFAULTS_PLUGIN_NAME)  # the core's own defaults always load


def test_defaults_can_be_disabled_by_name():
    manager = build_plugin_manager(
        load_entry_points=False, environ={"EPOCHAL_DISABLE_PLUGINS": DEFAULTS_PLUGIN_NAME}
    )
    assert "digits" not in datasets(manager)


def test_trace_prints_every_hook_call(capfd):
    manager = build_plugin_manager(
        load_entry_points=False, environ={"EPOCHAL_TRACE_PLUGINS": "1"}, plugins=[GoodPlugin()]
    )
    trainers(manager)
    err = capfd.readouterr().err
    assert "epochal trace: epochal_register_trainers(register=" in err
    assert "GoodPlugin" in err


class ExitsInARegistrationHook:
    @hookimpl
    def epochal_register_datasets(self, register):
        sys.exit(3)


def test_a_plugin_that_exits_in_a_registration_hook_is_reported_not_fatal():
    manager = build_plugin_manager(
        load_entry_points=False, environ={}, plugins=[ExitsInARegistrationHook()]
    )
    with pytest.warns(PluginWarning, match=r"epochal_register_datasets: SystemExit\(3\)"):
        names = datasets(manager)
    assert "digits" in names  # the other plugins' registrations are kept
    assert manager.broken["ExitsInARegistrationHook"].error == "SystemExit(3)"


def test_ctrl_c_watch_tells_the_users_ctrl_c_from_code_and_restores_the_handler():
    # Python's own Ctrl-C handler, whatever this process inherited: a pytest started in the
    # background (`cmd &`, nohup) ignores SIGINT, and the watch rightly keeps that
    original = signal.signal(signal.SIGINT, signal.default_int_handler)
    before = signal.getsignal(signal.SIGINT)
    try:
        _ctrl_c_watch_checks(before)
    finally:
        signal.signal(signal.SIGINT, original)


def _ctrl_c_watch_checks(before: object) -> None:
    with CtrlCWatch() as watch:
        with pytest.raises(KeyboardInterrupt) as raised:
            raise KeyboardInterrupt
        assert watch.raised_by_code(raised.value)
        assert watch.raised_by_code(SystemExit(0))
        with pytest.raises(KeyboardInterrupt) as real:
            os.kill(os.getpid(), signal.SIGINT)  # handled at the next bytecode, here
            time.sleep(5)
        assert not watch.raised_by_code(real.value)
    assert signal.getsignal(signal.SIGINT) is before


SLOW_IMPORT = """
import time
time.sleep(1.0)  # the notice comes after 0.2 s: a wide margin on a busy machine
"""


def test_each_slow_import_is_named_once_with_the_way_out(
    tmp_path, fake_distribution, monkeypatch, capfd
):
    names = ("slowpoke", "quickpoke", "slowerpoke")
    for name in names:
        fake_distribution(tmp_path, name, "" if name == "quickpoke" else SLOW_IMPORT)
    monkeypatch.syspath_prepend(str(tmp_path))
    load = {"EPOCHAL_LOAD_PLUGINS": ",".join(names)}
    try:
        manager = build_plugin_manager(environ={**load, "EPOCHAL_PLUGIN_IMPORT_NOTICE": "0.2"})
    finally:
        for name in names:
            sys.modules.pop(f"{name}_plugin", None)
    assert all(manager.has_plugin(name) for name in names)
    assert sorted(capfd.readouterr().err.splitlines()) == [
        f"epochal: still importing plugin '{name}' (module {name}_plugin) after 0.2 s; "
        f"start with EPOCHAL_DISABLE_PLUGINS={name} to skip it"
        for name in ("slowerpoke", "slowpoke")
    ]
    try:  # 0: never
        build_plugin_manager(environ={**load, "EPOCHAL_PLUGIN_IMPORT_NOTICE": "0"})
    finally:
        for name in names:
            sys.modules.pop(f"{name}_plugin", None)
    assert capfd.readouterr().err == ""


def test_a_plugin_that_exits_or_interrupts_at_import_is_reported_and_skipped(
    tmp_path, fake_distribution, monkeypatch
):
    fake_distribution(tmp_path, "exitpoke", "import sys\nsys.exit(3)\n")
    fake_distribution(tmp_path, "interruptpoke", "raise KeyboardInterrupt\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.warns(PluginWarning) as warned:
        manager = build_plugin_manager(environ={"EPOCHAL_LOAD_PLUGINS": "exitpoke,interruptpoke"})
    assert manager.broken["exitpoke"].stage == "import"
    assert manager.broken["exitpoke"].error == "SystemExit(3)"
    assert manager.broken["interruptpoke"].error == "KeyboardInterrupt"
    messages = sorted(str(warning.message) for warning in warned)
    assert len(messages) == 2 and "'exitpoke'" in messages[0] and "skipped" in messages[0]
    assert manager.has_plugin(DEFAULTS_PLUGIN_NAME)
