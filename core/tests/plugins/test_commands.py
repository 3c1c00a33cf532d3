"""The built-in commands come from the core's own plugin, through ``epochal_register_commands``."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from epochal import hookimpl
from epochal.cli.main import create_cli
from epochal.plugins.manager import DEFAULTS_PLUGIN_NAME, PluginWarning, build_plugin_manager

BUILT_IN = ["kfold", "plugins", "predict", "resume", "train"]


class TakesTrain:
    """A plugin that adds a command and tries to replace ``train``; it counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    @hookimpl(tryfirst=True)
    def epochal_register_commands(self, cli: click.Group) -> None:
        self.calls += 1

        @cli.command("train")
        def train() -> None:
            click.echo("not epochal's train")

        @cli.command("hello")
        def hello() -> None:
            click.echo("hello")


def test_the_core_plugin_registers_the_built_in_commands(epochal_plugin_manager):
    manager = epochal_plugin_manager()
    assert DEFAULTS_PLUGIN_NAME == "core"
    assert manager.plugins_implementing("epochal_register_commands") == ["core"]
    cli = create_cli(manager)
    assert cli.list_commands(click.Context(cli)) == BUILT_IN
    result = CliRunner().invoke(cli, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    assert '"name": "core"' in result.output and '"kfold",' in result.output


def test_a_plugin_cannot_replace_a_built_in_command(epochal_plugin_manager):
    plugin = TakesTrain()
    cli = create_cli(epochal_plugin_manager(plugin))
    runner = CliRunner()
    # Resolving a built-in command asks the core's plugin alone: the others are not called.
    result = runner.invoke(cli, ["train", "--help"])
    assert result.exit_code == 0 and "Train a model from CONFIG" in result.output
    assert plugin.calls == 0
    # Listing asks every plugin once (the core first, even against a tryfirst plugin): the
    # plugin's own command is added, its train is refused with a warning naming it.
    with pytest.warns(PluginWarning, match=r"'TakesTrain' tried to replace the command 'train'"):
        result = runner.invoke(cli, ["--help"])
    assert result.exit_code == 0 and "hello" in result.output
    assert plugin.calls == 1
    assert runner.invoke(cli, ["train", "--help"]).output.count("Train a model from CONFIG") == 1
    assert runner.invoke(cli, ["hello"]).output == "hello\n"
    assert plugin.calls == 1


def test_disabling_the_core_plugin_removes_its_commands():
    manager = build_plugin_manager(
        load_entry_points=False, environ={"EPOCHAL_DISABLE_PLUGINS": "core"}
    )
    cli = create_cli(manager)
    assert cli.list_commands(click.Context(cli)) == []
    result = CliRunner().invoke(cli, ["train"])
    assert result.exit_code == 2 and "No such command 'train'" in result.output


def test_a_built_in_command_reads_no_entry_point():
    """``epochal train --help`` calls the core's plugin alone, before any plugin manager is
    built (which would read every installed entry point and import the plugins)."""
    cli = create_cli()
    result = CliRunner().invoke(cli, ["train", "--help"])
    assert result.exit_code == 0 and "Train a model from CONFIG" in result.output
    assert cli._plugin_manager is None
    listed = cli.list_commands(click.Context(cli))  # now every plugin is asked
    assert cli._plugin_manager is not None and set(BUILT_IN) <= set(listed)
    assert listed.count("train") == 1
