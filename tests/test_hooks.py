"""Every hookspec, exercised through a real trainer; plus the meta-tests that keep it so.

A hook without a ``test_hook_<name>`` here, or without its section in
docs/plugins.md, fails ``test_every_hookspec_has_a_test`` /
``test_every_hookspec_is_documented``.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner

from epochal import hookimpl
from epochal.cli.main import create_cli
from epochal.data import DataManager, SequentialSampler
from epochal.data.datasets import ArrayDataset
from epochal.plugins import hookspecs
from epochal.plugins.manager import PluginWarning, get_plugin_manager
from epochal.plugins.registry import get_callback, get_dataset, get_trainer

HOOK_NAMES = sorted(name for name in hookspecs.__all__ if name.startswith("epochal_"))
DOCS = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"


class Recorder:
    """A plugin that records the life-cycle hooks it sees."""

    def __init__(self):
        self.calls: list[tuple] = []

    @hookimpl
    def epochal_setup(self, trainer):
        self.calls.append(("setup", type(trainer.module).__name__))

    @hookimpl
    def epochal_at_training_begin(self, trainer):
        self.calls.append(("training_begin", trainer.start_epoch))

    @hookimpl
    def epochal_at_epoch_begin(self, trainer, epoch, num_epochs, metrics_val, val_score_key):
        self.calls.append(("epoch_begin", epoch, num_epochs, sorted(metrics_val), val_score_key))

    @hookimpl
    def epochal_at_epoch_end(self, trainer, epoch, metrics_train, metrics_val, is_best):
        self.calls.append(("epoch_end", epoch, sorted(metrics_train), sorted(metrics_val), is_best))

    @hookimpl
    def epochal_at_training_end(self, trainer):
        self.calls.append(("training_end",))

    def named(self, name):
        return [call for call in self.calls if call[0] == name]


def _train(recorder, register, managers, make_trainer, epochs=3, **kwargs):
    register(recorder)
    trainer = make_trainer(**kwargs)
    train, valid = managers()
    trainer.train(epochs, train, valid, val_score_key="accuracy")
    return recorder


def test_hook_epochal_register_trainers(register_epochal_plugin, managers):
    from epochal_numpy.trainer import NumpyNetworkTrainer

    class SlowNumpy(NumpyNetworkTrainer):
        pass

    class Backend:
        @hookimpl
        def epochal_register_trainers(self, register):
            register("slow-numpy", SlowNumpy)

    register_epochal_plugin(Backend())
    assert get_trainer("slow-numpy") is SlowNumpy
    assert get_trainer("numpy").__name__ == "NumpyNetworkTrainer"  # the installed example


def test_hook_epochal_register_callbacks(register_epochal_plugin, managers, make_trainer):
    class StopAt:
        def __init__(self, epoch):
            self.epoch = epoch

        def at_epoch_begin(self, trainer, **kwargs):
            return {}

        def at_epoch_end(self, trainer, curr_epoch, **kwargs):
            self.last = curr_epoch
            return {"stop_training": curr_epoch >= self.epoch}

    class Callbacks:
        @hookimpl
        def epochal_register_callbacks(self, register):
            register("stop_at", StopAt)

    register_epochal_plugin(Callbacks())
    stopper = get_callback("stop_at")(epoch=2)
    train, valid = managers()
    make_trainer(callbacks=[stopper]).train(10, train, valid)
    assert stopper.last == 2


def test_hook_epochal_register_datasets(register_epochal_plugin):
    class Datasets:
        @hookimpl
        def epochal_register_datasets(self, register):
            register(
                "ramp",
                lambda n=5: ArrayDataset(data=np.arange(n, dtype=np.float32), label=np.zeros(n)),
            )

    register_epochal_plugin(Datasets())
    assert len(get_dataset("ramp", n=7)) == 7
    assert len(get_dataset("digits")) == 1797  # the core default is still there


def test_hook_epochal_register_samplers(register_epochal_plugin):
    class Reversed(SequentialSampler):
        def _global_order(self, rng):
            return self.indices[::-1]

    class Samplers:
        @hookimpl
        def epochal_register_samplers(self, register):
            register("reversed", Reversed)

    register_epochal_plugin(Samplers())
    manager = DataManager(
        ArrayDataset(data=np.arange(5), label=np.arange(5)), 5, 0, sampler_cls="reversed"
    )
    assert next(iter(manager.get_batchgen()))["data"].tolist() == [4, 3, 2, 1, 0]


def test_hook_epochal_register_default_job(register_epochal_plugin):
    from epochal.job.backends import default_backend, default_job

    class Preferred:
        @hookimpl(tryfirst=True)
        def epochal_register_default_job(self, job):
            job["experiment"].setdefault("backend", "numpy")
            job["callbacks"].setdefault("timer", {})

    before = default_job()
    assert before["experiment"]["backend"] != "numpy"  # the installed backends' choice
    register_epochal_plugin(Preferred())
    job = default_job()
    assert job["experiment"]["backend"] == "numpy"  # tryfirst: its setdefault comes first
    assert job["callbacks"]["timer"] == {}
    assert set(before["callbacks"]) <= set(job["callbacks"])  # the others still add theirs
    assert default_backend() == "numpy"


def test_hook_epochal_register_commands(epochal_plugin_manager):
    class Commands:
        @hookimpl
        def epochal_register_commands(self, cli):
            @cli.command()
            @click.argument("name")
            def hello(name):
                """Say hello."""
                click.echo(f"hello {name}")

    class BrokenCommands:
        @hookimpl
        def epochal_register_commands(self, cli):
            @cli.command()
            def half():
                pass

            raise RuntimeError("no commands today")

    cli = create_cli(epochal_plugin_manager(Commands(), BrokenCommands()))
    runner = CliRunner()
    with pytest.warns(PluginWarning, match="'BrokenCommands' failed at epochal_register_commands"):
        result = runner.invoke(cli, ["--help"])
    assert result.exit_code == 0 and "hello" in result.output and "half" not in result.output
    result = runner.invoke(cli, ["hello", "world"])
    assert result.exit_code == 0 and result.output == "hello world\n"
    result = runner.invoke(cli, ["plugins"])
    assert "BrokenCommands" in result.output and "no commands today" in result.output


def test_hook_epochal_setup(register_epochal_plugin, make_trainer):
    recorder = Recorder()
    register_epochal_plugin(recorder)
    make_trainer()
    assert recorder.calls == [("setup", "SoftmaxRegression")]


def test_hook_epochal_at_training_begin(register_epochal_plugin, managers, make_trainer):
    recorder = _train(Recorder(), register_epochal_plugin, managers, make_trainer, epochs=2)
    assert recorder.named("training_begin") == [("training_begin", 1)]
    assert recorder.calls.index(("training_begin", 1)) < recorder.calls.index(
        recorder.named("epoch_begin")[0]
    )


def test_hook_epochal_at_epoch_begin(register_epochal_plugin, managers, make_trainer):
    recorder = _train(Recorder(), register_epochal_plugin, managers, make_trainer, epochs=3)
    begins = recorder.named("epoch_begin")
    assert [call[1:3] for call in begins] == [(1, 3), (2, 3), (3, 3)]
    assert begins[0][3] == []  # no validation yet before epoch 1
    assert begins[1][3] == ["val_CE", "val_accuracy"]  # the previous epoch's
    assert begins[0][4] == "accuracy"

    class StopBeforeEpoch3:
        @hookimpl
        def epochal_at_epoch_begin(self, epoch):
            return {"stop_training": epoch == 3}

    register_epochal_plugin(StopBeforeEpoch3())
    stopped = _train(Recorder(), register_epochal_plugin, managers, make_trainer, epochs=5)
    assert [call[1] for call in stopped.named("epoch_end")] == [1, 2]


def test_hook_epochal_at_batch_end(register_epochal_plugin, managers, make_trainer):
    assert make_trainer()._batch_end_hook is None  # nobody implements it: never dispatched

    class Batches:
        def __init__(self):
            self.seen = []

        @hookimpl
        def epochal_at_batch_end(self, epoch, batch_nr, losses, metrics):
            self.seen.append((epoch, batch_nr, sorted(losses), sorted(metrics)))

    batches = Batches()
    register_epochal_plugin(batches)
    train, valid = managers()
    make_trainer().train(2, train, valid)
    assert len(batches.seen) == 2 * train.n_batches
    assert batches.seen[0] == (1, 0, ["CE"], ["accuracy"])
    assert batches.seen[-1][:2] == (2, train.n_batches - 1)


def test_hook_epochal_at_epoch_end(register_epochal_plugin, managers, make_trainer):
    recorder = _train(Recorder(), register_epochal_plugin, managers, make_trainer, epochs=3)
    ends = recorder.named("epoch_end")
    assert [call[1] for call in ends] == [1, 2, 3]
    assert all(
        call[2] == ["CE", "accuracy"] and call[3] == ["val_CE", "val_accuracy"] for call in ends
    )
    assert ends[0][4] is True  # the first score is always the best so far


def test_hook_epochal_at_training_end(register_epochal_plugin, managers, make_trainer):
    recorder = _train(Recorder(), register_epochal_plugin, managers, make_trainer, epochs=2)
    assert recorder.calls[-1] == ("training_end",)
    assert len(recorder.named("training_end")) == 1


class Counter:
    """A stateful plugin: counts epochs, and its count rides in the checkpoint."""

    def __init__(self):
        self.epochs = 0
        self.loaded = None

    @hookimpl
    def epochal_at_epoch_end(self):
        self.epochs += 1

    @hookimpl
    def epochal_state_dict(self):
        return {"counter": {"epochs": self.epochs}}

    @hookimpl
    def epochal_load_state_dict(self, state):
        self.loaded = state.get("counter")
        if self.loaded:
            self.epochs = self.loaded["epochs"]


def test_hook_epochal_state_dict(register_epochal_plugin, managers, tmp_path, make_trainer):
    counter = Counter()
    register_epochal_plugin(counter)
    train, valid = managers()
    make_trainer(save_path=tmp_path).train(2, train, valid)
    state = make_trainer().load_state(str(tmp_path / "checkpoint_last"))
    assert state["callbacks"]["counter"] == {"epochs": 2}
    assert state["epoch"] == 2


def test_hook_epochal_load_state_dict(register_epochal_plugin, managers, tmp_path, make_trainer):
    counter = Counter()
    register_epochal_plugin(counter)
    train, valid = managers()
    make_trainer(save_path=tmp_path).train(2, train, valid)
    counter.epochs = 0  # as in a new process
    resumed = make_trainer(save_path=tmp_path)
    resumed.update_state(str(tmp_path / "checkpoint_last"))
    assert counter.loaded == {"epochs": 2} and resumed.start_epoch == 3
    resumed.train(4, train, valid)
    assert counter.epochs == 4


def test_state_keys_must_be_unique(register_epochal_plugin, managers, tmp_path, make_trainer):
    from epochal.errors import PluginError

    register_epochal_plugin(Counter())
    register_epochal_plugin(Counter())
    train, valid = managers()
    try:
        make_trainer(save_path=tmp_path).train(1, train, valid)
    except PluginError as exc:
        assert "state key 'counter'" in str(exc)
    else:
        raise AssertionError("two plugins with the same state key must be refused")


def test_every_hookspec_has_a_test():
    missing = [name for name in HOOK_NAMES if f"test_hook_{name}" not in globals()]
    assert not missing, f"hooks without a test_hook_<name> in {__file__}: {missing}"


def test_every_hookspec_is_documented():
    text = DOCS.read_text()
    for name in HOOK_NAMES:
        spec_args = list(inspect.signature(getattr(hookspecs, name)).parameters)
        match = re.search(rf"^### `{name}\(([^)]*)\)`", text, flags=re.MULTILINE)
        assert match, f"{name} has no '### `{name}(...)`' section in {DOCS}"
        documented = [arg.strip() for arg in match.group(1).split(",") if arg.strip()]
        assert documented == spec_args, f"{name}: docs say {documented}, the spec has {spec_args}"


def test_global_manager_is_left_clean(register_epochal_plugin):
    plugin = Recorder()
    register_epochal_plugin(plugin)
    assert get_plugin_manager().is_registered(plugin)
