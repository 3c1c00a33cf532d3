"""The ``epochal`` command line (click).

Every command, the built-in ones included, is added through ``epochal_register_commands``
the first time the group lists or resolves a command, never at import: the built-in
``train``, ``resume``, ``predict``, ``kfold`` and ``plugins`` come from the core's own plugin
(:mod:`epochal.plugins.defaults`, listed as ``core``), which is asked first so that no plugin
can replace them. A plugin that fails there is reported and the other commands keep working.
Nothing here imports a framework.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
import warnings
from typing import Any

import click

from epochal import __version__
from epochal.errors import EpochalError
from epochal.plugins.info import PluginInfo, describe_plugins
from epochal.plugins.manager import (
    DEFAULTS_PLUGIN_NAME,
    FAILED,
    EpochalPluginManager,
    PluginSettings,
    PluginWarning,
    call_plugin,
    get_plugin_manager,
)

__all__ = ["EpochalGroup", "create_cli", "main", "plugins_command"]


class EpochalGroup(click.Group):
    """A click group that adds plugin commands lazily and in isolation."""

    def __init__(
        self, *args: Any, plugin_manager: EpochalPluginManager | None = None, **kwargs: Any
    ):
        super().__init__(*args, **kwargs)
        self._plugin_manager = plugin_manager
        self._plugin_commands_loaded = False
        self._plugins_asked: set[str] = set()

    @property
    def plugin_manager(self) -> EpochalPluginManager:
        if self._plugin_manager is None:
            self._plugin_manager = get_plugin_manager()
        return self._plugin_manager

    def _load_plugin_commands(self, core_only: bool = False) -> None:
        """Ask the plugins for their commands: the core's plugin first (its commands are
        kept over any plugin's of the same name), then the others, each once."""
        manager = self.plugin_manager
        names = manager.plugins_implementing("epochal_register_commands")
        names = sorted(names, key=lambda name: name != DEFAULTS_PLUGIN_NAME)  # stable: core first
        if core_only:
            names = names[:1] if names and names[0] == DEFAULTS_PLUGIN_NAME else []
        for plugin_name in names:
            if plugin_name in self._plugins_asked:
                continue
            self._plugins_asked.add(plugin_name)
            before = dict(self.commands)
            if call_plugin(manager, "epochal_register_commands", plugin_name, cli=self) is FAILED:
                self.commands = before  # drop whatever the broken plugin half-added
                continue
            for name, command in list(self.commands.items()):
                if name in before and before[name] is not command:
                    self.commands[name] = before[name]
                    warnings.warn(
                        f"plugin {plugin_name!r} tried to replace the command {name!r}; "
                        "the existing one is kept",
                        PluginWarning,
                        stacklevel=2,
                    )
        if not core_only:
            self._plugin_commands_loaded = True

    def load_commands(self) -> None:
        """Every plugin's commands (once): for ``epochal plugins`` and the help text."""
        if not self._plugin_commands_loaded:
            self._load_plugin_commands()

    def list_commands(self, ctx: click.Context) -> list[str]:
        self.load_commands()
        return super().list_commands(ctx)

    def _load_core_commands(self) -> None:
        """The built-in commands alone. Before any plugin manager exists the core's plugin is
        called directly, so that ``epochal train --help`` reads no entry point and imports no
        plugin (a command that runs builds the manager anyway)."""
        if DEFAULTS_PLUGIN_NAME in self._plugins_asked:
            return
        settings = PluginSettings.from_environ(os.environ)
        if self._plugin_manager is not None or settings.trace:  # traced: through the manager
            self._load_plugin_commands(core_only=True)
            return
        self._plugins_asked.add(DEFAULTS_PLUGIN_NAME)
        if DEFAULTS_PLUGIN_NAME not in settings.disable:  # as build_plugin_manager decides
            from epochal.plugins import defaults

            defaults.epochal_register_commands(cli=self)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        # A built-in command needs only the core's plugin: the others are not asked.
        self._load_core_commands()
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        self.load_commands()
        return super().get_command(ctx, cmd_name)


def _format_provides(provides: dict[str, list[str]]) -> str:
    return "; ".join(
        f"{kind}: {', '.join(sorted(names))}" for kind, names in sorted(provides.items())
    )


def _format_hooks(hooks: list[str]) -> str:
    return ", ".join(hook.removeprefix("epochal_") for hook in hooks)


_COLUMN_WIDTHS = (None, None, 48, 36)  # plugin, version, provides, hooks (None: as wide as needed)


def _print_table(infos: list[PluginInfo]) -> None:
    healthy = [info for info in infos if info.error is None]
    broken = [info for info in infos if info.error is not None]
    rows = [("PLUGIN", "VERSION", "PROVIDES", "HOOKS")]
    rows += [
        (
            info.name,
            info.version or "-",
            _format_provides(info.provides) or "-",
            _format_hooks(info.hooks) or "-",
        )
        for info in healthy
    ]
    wrapped = [
        [
            textwrap.wrap(cell, width, break_on_hyphens=False) if width else [cell]
            for cell, width in zip(row, _COLUMN_WIDTHS, strict=True)
        ]
        for row in rows
    ]
    widths = [max(len(line) for row in wrapped for line in row[col]) for col in range(4)]
    for row in wrapped:
        for line_nr in range(max(len(cell) for cell in row)):
            cells = [cell[line_nr] if line_nr < len(cell) else "" for cell in row]
            click.echo("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
    if broken:
        click.echo("\nBroken plugins (skipped; the others work):")
        for info in broken:
            origin = f" ({info.distribution})" if info.distribution else ""
            click.echo(f"  {info.name}{origin}: {info.error}")


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
@click.pass_context
def plugins_command(ctx: click.Context, as_json: bool) -> None:
    """List installed plugins: version, what they provide, hooks, and broken ones."""
    group = ctx.find_root().command
    if isinstance(group, EpochalGroup):
        group.load_commands()  # so that broken command plugins are listed too
        manager = group.plugin_manager
    else:  # added to another group: the process-wide plugins
        manager = get_plugin_manager()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginWarning)  # shown in the table instead
        infos = describe_plugins(manager)
    if as_json:
        click.echo(json.dumps([info.as_dict() for info in infos], indent=2))
    else:
        _print_table(infos)


def create_cli(plugin_manager: EpochalPluginManager | None = None) -> EpochalGroup:
    """Build the ``epochal`` command group; tests pass their own plugin manager.

    The group starts empty: its commands, the built-in ones too, come from the plugins'
    ``epochal_register_commands`` when it first lists or resolves a command.
    """

    @click.group(
        cls=EpochalGroup,
        plugin_manager=plugin_manager,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    @click.version_option(__version__, prog_name="epochal")
    def cli() -> None:
        """epochal: one training loop for PyTorch and TensorFlow, extended by plugins.

        Plugins are Python packages with an entry point in the group "epochal";
        `epochal plugins` lists what is installed.
        """

    return cli  # type: ignore[return-value]


def _show_warning(
    message: Any,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: Any = None,
) -> None:
    stream = file if file is not None else sys.stderr
    if issubclass(category, PluginWarning):
        print(f"epochal: warning: {message}", file=stream)
    else:
        print(
            warnings.formatwarning(message, category, filename, lineno, line), file=stream, end=""
        )


def main(argv: list[str] | None = None) -> None:
    """Console entry point: ``epochal``."""
    warnings.showwarning = _show_warning
    try:
        create_cli()(args=argv, prog_name="epochal")
    except EpochalError as exc:
        click.echo(f"epochal: error: {exc}", err=True)
        sys.exit(2)
