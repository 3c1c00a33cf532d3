"""Registries built from the registration hooks."""

from __future__ import annotations

import pytest

from epochal import hookimpl
from epochal.data import ArrayDataset
from epochal.errors import PluginError, UnknownNameError
from epochal.plugins.manager import PluginWarning, build_plugin_manager
from epochal.plugins.registry import (
    callbacks,
    datasets,
    get_dataset,
    get_sampler,
    resolve_path,
    samplers,
)


class MyDigits:
    """A user plugin that registers its own 'digits': it must win over the default."""

    @hookimpl
    def epochal_register_datasets(self, register):
        register("digits", lambda: ArrayDataset(data=[[1.0]], label=[0]))


class RaisingRegistration:
    @hookimpl
    def epochal_register_datasets(self, register):
        register("half", lambda: None)
        raise RuntimeError("database unreachable")


class Twin:
    def __init__(self, tag):
        self.tag = tag

    @hookimpl
    def epochal_register_callbacks(self, register):
        register("twin", self.tag)


def _manager(*plugins, environ=None):
    return build_plugin_manager(load_entry_points=False, environ=environ or {}, plugins=plugins)


def test_unknown_name_lists_known_names_and_a_close_match():
    registry = samplers(_manager())
    with pytest.raises(UnknownNameError) as info:
        registry.get("randm")
    message = str(info.value)
    assert "unknown sampler 'randm'" in message
    assert "Did you mean 'random'?" in message
    assert "balanced, random, sequential, stratified, weighted" in message


def test_paths_are_imported_only_on_lookup():
    registry = samplers(_manager())
    assert isinstance(registry.entry("random").target, str)
    from epochal.data.samplers import RandomSampler

    assert registry.get("random") is RandomSampler
    assert get_sampler("random", _manager()) is RandomSampler


def test_broken_path_names_the_plugin_and_target():
    class BadPath:
        @hookimpl
        def epochal_register_trainers(self, register):
            register("ghost", "no_such_module_xyz:Trainer")

    from epochal.plugins.registry import trainers

    with pytest.raises(
        ImportError, match=r"trainer 'ghost' \(from plugin .*BadPath.*no_such_module_xyz"
    ):
        trainers(_manager(BadPath())).get("ghost")


def test_user_plugin_wins_over_core_default():
    dataset = get_dataset("digits", _manager(MyDigits()))
    assert len(dataset) == 1


def test_core_digits_dataset():
    dataset = get_dataset("digits", _manager())
    assert len(dataset) == 1797
    sample = dataset[0]
    assert sample["data"].shape == (64,) and sample["data"].dtype.name == "float32"
    assert 0.0 <= sample["data"].min() and sample["data"].max() <= 1.0
    assert sorted(set(dataset.labels().tolist())) == list(range(10))
    assert get_dataset("digits", _manager(), image=True)[0]["data"].shape == (1, 8, 8)


def test_raising_registration_is_isolated():
    with pytest.warns(PluginWarning, match="database unreachable"):
        registry = datasets(_manager(RaisingRegistration()))
    assert "half" not in registry  # nothing half-registered
    assert "digits" in registry  # the others keep working


def test_raising_registration_is_an_error_when_strict():
    manager = _manager(RaisingRegistration(), environ={"EPOCHAL_STRICT_PLUGINS": "1"})
    with pytest.raises(PluginError, match="database unreachable"):
        datasets(manager)


def test_same_name_from_two_plugins_warns_and_one_wins():
    first, second = object(), object()
    with pytest.warns(PluginWarning, match="'twin' is registered by both"):
        registry = callbacks(_manager(Twin(first), Twin(second)))
    # pluggy calls the plugin registered last first, so it wins, like pytest's conftests
    assert registry.get("twin") is second


def test_bad_registrations_are_reported():
    class EmptyName:
        @hookimpl
        def epochal_register_samplers(self, register):
            register("", object)

    class NotAPath:
        @hookimpl
        def epochal_register_samplers(self, register):
            register("mine", "mymodule.MySampler")

    with pytest.warns(PluginWarning, match="non-empty string"):
        samplers(_manager(EmptyName()))
    with pytest.warns(PluginWarning, match="'mymodule.MySampler' is not a 'module:attr' path"):
        assert "mine" not in samplers(_manager(NotAPath()))


def test_resolve_path_errors():
    with pytest.raises(ValueError, match="not a 'module:attr' path"):
        resolve_path("epochal.data")
    with pytest.raises(ImportError, match="has no attribute 'Nope'"):
        resolve_path("epochal.data:Nope")
    assert resolve_path("epochal.data.samplers:RandomSampler.from_dataset")
