"""The core's own plugin, listed as ``core``: the ``digits`` and ``shapes`` datasets, the
built-in samplers, and the built-in commands (``train``, ``resume``, ``predict``, ``kfold``,
``plugins``).

Registered exactly like a third-party plugin. Its registrations are ``trylast`` so that a
user's plugin registering the same dataset or sampler name wins; its commands are asked for
first, so a plugin cannot replace a built-in command (it gets a warning instead).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from epochal.plugins.hookspecs import Register, hookimpl

if TYPE_CHECKING:  # pragma: no cover
    import click

_SAMPLERS = {
    "sequential": "SequentialSampler",
    "random": "RandomSampler",
    "balanced": "BalancedSampler",
    "stratified": "StratifiedSampler",
    "weighted": "WeightedRandomSampler",
}


@hookimpl(trylast=True)
def epochal_register_datasets(register: Register) -> None:
    register("digits", "epochal.data.digits:load_digits")
    register("shapes", "epochal.data.shapes:load_shapes")


@hookimpl(trylast=True)
def epochal_register_samplers(register: Register) -> None:
    for name, class_name in _SAMPLERS.items():
        register(name, f"epochal.data.samplers:{class_name}")


@hookimpl
def epochal_register_commands(cli: click.Group) -> None:
    # Imported here: building the plugin manager must not import the CLI.
    from epochal.cli.commands import register_commands
    from epochal.cli.main import plugins_command

    cli.add_command(plugins_command)
    register_commands(cli)
