"""The core's own plugin: the ``digits`` and ``shapes`` datasets and the built-in samplers.

Registered exactly like a third-party plugin, but ``trylast`` so that a user's
plugin registering the same name wins.
"""

from __future__ import annotations

from epochal.plugins.hookspecs import Register, hookimpl

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
