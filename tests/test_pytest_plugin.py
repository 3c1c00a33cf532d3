"""The pytest11 entry point: plugin authors get the fixtures without any conftest."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap


def test_fixtures_reach_a_plugin_authors_test_suite(tmp_path):
    (tmp_path / "test_author.py").write_text(
        textwrap.dedent("""
        from epochal import hookimpl
        from epochal.plugins.manager import get_plugin_manager
        from epochal.plugins.registry import trainers

        class Backend:
            @hookimpl
            def epochal_register_trainers(self, register):
                register("author-backend", "collections:OrderedDict")

        def test_registered_for_one_test(register_epochal_plugin):
            register_epochal_plugin(Backend())
            assert "author-backend" in trainers()

        def test_gone_afterwards():
            assert "author-backend" not in trainers()
            plugins = get_plugin_manager().get_plugins()
            assert not any(type(p).__name__ == "Backend" for p in plugins)

        def test_isolated_manager(epochal_plugin_manager):
            manager = epochal_plugin_manager(Backend())
            assert "author-backend" in trainers(manager)
            assert "numpy" not in trainers(manager)  # no entry points in an isolated manager
    """)
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout


def test_run_epochal_in_a_users_environment(monkeypatch, tmp_path):
    from epochal import __version__
    from epochal.testing import run_epochal, user_env

    monkeypatch.setenv("EPOCHAL_DISABLE_PLUGINS", "torch")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    monkeypatch.setenv("FAULT_AT", "x")
    env = user_env({"EXTRA": "1"}, drop=("FAULT_",))
    assert {"EPOCHAL_DISABLE_PLUGINS", "TF_CPP_MIN_LOG_LEVEL", "FAULT_AT"}.isdisjoint(env)
    assert env["EXTRA"] == "1" and env["PATH"] == user_env()["PATH"]
    result = run_epochal("--version", cwd=tmp_path, timeout=60)
    assert result.returncode == 0 and result.stdout.strip().endswith(__version__)
    listed = run_epochal("plugins", cwd=tmp_path)
    assert re.search(r"^torch\s", listed.stdout, re.MULTILINE)  # EPOCHAL_* stayed behind
