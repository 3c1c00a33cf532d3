"""pytest plugin for plugin authors (registered through the ``pytest11`` entry point).

Fixtures:

``register_epochal_plugin``
    ``register_epochal_plugin(plugin, name=None)`` puts ``plugin`` on the
    process-wide plugin manager for one test and removes it afterwards.
``epochal_plugin_manager``
    A fresh manager with the core defaults and ``plugins=[...]`` of your own,
    no entry points: ``epochal_plugin_manager(MyPlugin())``.

Functions, for tests that run ``epochal`` as a user does (a command of your plugin):
:func:`run_epochal`, :func:`epochal_command` and :func:`user_env`.

The backend conformance suite, :mod:`epochal.testing.conformance`, runs every test a backend
must pass against yours: ``from epochal.testing.conformance import *`` in a test module, plus
``epochal_backend = conformance_backend("mybackend", make_trainer)``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import pytest

from epochal.plugins.manager import (
    EpochalPluginManager,
    build_plugin_manager,
    get_plugin_manager,
    plugin_display_name,
)

# The suite's asserts say what differed (pytest rewrites them, as in a test module); this
# module is loaded as a pytest plugin, before any test module imports the suite.
pytest.register_assert_rewrite("epochal.testing.conformance")

#: Variables a user who never set them would not have: epochal's own and TensorFlow's log
#: level (which its backend sets for its children), so that a test process that imported
#: that backend does not change what the ``epochal`` under test prints.
OWN_ENV = ("EPOCHAL_", "TF_CPP_MIN_LOG_LEVEL", "_EPOCHAL_TF_QUIET")


def user_env(extra: Mapping[str, str] | None = None, drop: Iterable[str] = ()) -> dict[str, str]:
    """This process' environment without :data:`OWN_ENV` (nor variables starting with one of
    ``drop``), plus ``extra``. A plugin import is named as slow only after 60 s (not 2:
    ``EPOCHAL_PLUGIN_IMPORT_NOTICE``), so that a loaded test machine adds no notice lines to
    the output a test reads; pass the variable in ``extra`` to test the notice itself."""
    prefixes = (*OWN_ENV, *drop)
    env = {key: value for key, value in os.environ.items() if not key.startswith(prefixes)}
    env["EPOCHAL_PLUGIN_IMPORT_NOTICE"] = "60"
    env.update(extra or {})
    return env


def epochal_in_process(*args: str) -> tuple[Any, str, str]:
    """``epochal ARGS`` in this process: ``(exit code, stdout, stderr)``. No interpreter
    start-up and the frameworks already imported, so a check that ends before training (or
    trains briefly) costs milliseconds instead of seconds; what must be killed, or must not
    share this process' state, needs a real process (:func:`run_epochal`)."""
    import contextlib
    import io

    from epochal.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    code: Any = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def epochal_command(*args: str) -> list[str]:
    """``python -m epochal ARGS`` with this interpreter (for ``subprocess.Popen``)."""
    return [sys.executable, "-m", "epochal", *args]


def run_epochal(
    *args: str,
    cwd: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    timeout: float = 240,
    **kwargs: Any,
) -> subprocess.CompletedProcess[str]:
    """Run ``epochal ARGS`` in ``cwd`` in a user's environment (:func:`user_env` plus
    ``env``); output captured as text. ``kwargs`` go to ``subprocess.run``."""
    return subprocess.run(
        epochal_command(*args),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=user_env(env),
        **kwargs,
    )


def kill_peer_when(
    ready: str | os.PathLike[str],
    survivor: subprocess.Popen[Any],
    victim: subprocess.Popen[Any],
    timeout: float = 120,
) -> tuple[Any, float]:
    """Distributed fault tests: once the file ``ready`` exists (or ``survivor`` ended, or
    ``timeout`` passed), ``kill -9`` the ``victim`` process; returns the survivor's stderr
    and the seconds it took to exit after the kill (it must, within 60 s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and survivor.poll() is None:
        if os.path.exists(ready):
            break
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    _, stderr = survivor.communicate(timeout=60)
    return stderr, time.monotonic() - killed


@pytest.fixture
def register_epochal_plugin() -> Iterator[Callable[..., str]]:
    manager = get_plugin_manager()
    added: list[object] = []

    def register(plugin: object, name: str | None = None) -> str:
        registered = manager.register_checked(
            plugin, name or manager.unique_name(plugin_display_name(plugin))
        )
        if registered is None:
            raise ValueError(f"plugin name {name!r} is blocked (EPOCHAL_DISABLE_PLUGINS)")
        added.append(plugin)
        return registered

    yield register
    for plugin in reversed(added):
        if manager.is_registered(plugin):
            manager.unregister(plugin)


@pytest.fixture
def epochal_plugin_manager() -> Callable[..., EpochalPluginManager]:
    def build(*plugins: object) -> EpochalPluginManager:
        return build_plugin_manager(load_entry_points=False, environ={}, plugins=plugins)

    return build
