"""Plugins that misbehave: ``sys.exit()`` or ``KeyboardInterrupt`` at import or in a hook,
state a checkpoint cannot hold, an import that hangs. Real installed plugins (``epochal``
entry points) in real ``epochal`` processes, and the trainer loop in this process where a
subprocess adds nothing."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time

import numpy as np
import pytest

from epochal import AbstractCallback, hookimpl
from epochal.errors import PluginError
from epochal.loop.interrupt import stop_on_signals
from epochal.plugins.manager import build_plugin_manager
from epochal.testing import run_epochal

QUICK = ["--set", "callbacks.tensorboard=false", "--set", "callbacks.learning_curves=false"]

#: Ends the process from a hook: at EXIT_AT_EPOCH's end, as EXIT_HOW says.
EXITS_IN_A_HOOK = """
import os, sys
from epochal import hookimpl

@hookimpl
def epochal_at_epoch_end(trainer, epoch):
    if epoch == int(os.environ.get("EXIT_AT_EPOCH", "0")):
        sys.exit(0)
"""

#: Contributes state a checkpoint cannot hold when BAD_STATE is set.
BAD_STATE = """
import os
from epochal import hookimpl

@hookimpl
def epochal_state_dict(trainer):
    return {"badstate": {"x": object() if os.environ.get("BAD_STATE") else 1}}
"""


def load_torch(path):
    torch = pytest.importorskip("torch")
    return torch.load(path, weights_only=True)


@pytest.mark.slow
def test_a_plugin_that_exits_or_interrupts_at_import_is_listed_broken_and_training_works(
    tmp_path, fake_distribution
):
    env = fake_distribution(tmp_path, "exitplug", "import sys\nsys.exit(3)\n")
    fake_distribution(tmp_path, "interruptplug", "raise KeyboardInterrupt\n")  # same folder

    listed = run_epochal("plugins", cwd=tmp_path, env=env, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert "exitplug (exitplug): import: SystemExit(3)" in listed.stdout
    assert "interruptplug (interruptplug): import: KeyboardInterrupt" in listed.stdout

    trained = run_epochal(
        "train", "--run-dir", "run", "--epochs", "1", *QUICK, cwd=tmp_path, env=env
    )
    assert trained.returncode == 0, trained.stderr
    assert "best val_accuracy" in trained.stdout
    assert "plugin 'exitplug' (distribution exitplug) failed at import: SystemExit(3)" in (
        trained.stderr
    )
    assert "plugin 'interruptplug'" in trained.stderr and "Traceback" not in trained.stderr


@pytest.mark.slow
def test_a_plugin_that_exits_in_a_hook_fails_the_run_and_keeps_the_last_finished_epoch(
    tmp_path, fake_distribution
):
    env = fake_distribution(tmp_path, "badplug", EXITS_IN_A_HOOK)
    result = run_epochal(
        "train", "--run-dir", "run", "--epochs", "3", *QUICK, cwd=tmp_path,
        env={**env, "EXIT_AT_EPOCH": "2"},
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("epochal:")]
    assert errors == [
        "epochal: training failed: plugin 'badplug' raised SystemExit(0) in "
        "epochal_at_epoch_end (epoch 2); checkpoint_last of epoch 1 is kept. Fix the plugin or "
        "skip it (EPOCHAL_DISABLE_PLUGINS=badplug), then resume the run."
    ]
    assert "Traceback" not in result.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed" and "badplug" in summary["error"]
    assert load_torch(tmp_path / "run" / "checkpoint_last.pt")["epoch"] == 1  # loads, epoch 1


@pytest.mark.slow
def test_state_a_checkpoint_cannot_hold_is_refused_before_anything_is_written(
    tmp_path, fake_distribution
):
    env = fake_distribution(tmp_path, "badstate", BAD_STATE)
    first = run_epochal("train", "--run-dir", "run", "--epochs", "1", *QUICK, cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr
    last = tmp_path / "run" / "checkpoint_last.pt"
    before = last.read_bytes()
    assert load_torch(last)["callbacks"]["badstate"] == {"x": 1}

    resumed = run_epochal(
        "resume", "run", "--epochs", "2", cwd=tmp_path, env={**env, "BAD_STATE": "1"}
    )
    assert resumed.returncode == 1, resumed.stdout + resumed.stderr
    assert (
        "epochal: training failed: plugin 'badstate' returned from epochal_state_dict what a "
        "checkpoint cannot hold at state['badstate']['x']: object. A PyTorchNetworkTrainer "
        "checkpoint holds None, bool, int, float, str, and lists, tuples and dicts (str keys) of "
        "those; and torch.Tensor, bytes. Nothing was written; the checkpoints saved before are "
        "kept. Fix the plugin or skip it (EPOCHAL_DISABLE_PLUGINS=badstate).\n"
    ) in resumed.stderr
    assert last.read_bytes() == before  # byte-identical, and still the only epoch
    assert not list((tmp_path / "run").glob("*epoch_2*")) and not list(
        (tmp_path / "run").glob("*.tmp*")
    )
    assert load_torch(last)["epoch"] == 1


def test_a_hanging_plugin_import_is_named_and_can_be_skipped(tmp_path, fake_distribution):
    env = fake_distribution(tmp_path, "slowplug", "import time\ntime.sleep(4)\n")
    env["EPOCHAL_PLUGIN_IMPORT_NOTICE"] = "2"  # the default; run_epochal's environment has 60
    slow = run_epochal("--help", cwd=tmp_path, env=env, timeout=60)
    assert slow.returncode == 0, slow.stderr
    assert (
        "epochal: still importing plugin 'slowplug' (module slowplug_plugin) after 2 s; start "
        "with EPOCHAL_DISABLE_PLUGINS=slowplug to skip it\n"
    ) in slow.stderr

    started = time.monotonic()
    skipped = run_epochal(
        "--help", cwd=tmp_path, env={**env, "EPOCHAL_DISABLE_PLUGINS": "slowplug"}, timeout=60
    )
    assert time.monotonic() - started < 4  # the sleep never ran
    assert skipped.returncode == 0 and "still importing" not in skipped.stderr
    assert "Commands:" in skipped.stdout


# -- in this process: the loop with the numpy example backend ---------------------------------


class ExitsAtEpochEnd:
    @hookimpl
    def epochal_at_epoch_end(self, trainer, epoch):
        if epoch == 2:
            raise SystemExit(7)


class InterruptsAtBatch(AbstractCallback):
    def at_batch_end(self, trainer, epoch, batch_nr, **kwargs):
        if (epoch, batch_nr) == (2, 3):
            raise KeyboardInterrupt


class CtrlCTwiceAtBatch(AbstractCallback):
    """The user's Ctrl-C, twice, while a callback runs: the first asks for a stop at the next
    batch, the second (Python's default handler by then) stops at once, in this callback."""

    def at_batch_end(self, trainer, epoch, batch_nr, **kwargs):
        if (epoch, batch_nr) == (2, 3):
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # the second one raises here


class NumpyNumberState(AbstractCallback):
    def state_dict(self):
        return {"best": np.float64(0.5)}


def train(trainer, managers, epochs=3, signals=True, val_score_key="accuracy"):
    train_data, valid = managers()
    with stop_on_signals(trainer, announce=False) if signals else contextlib.nullcontext():
        return trainer.train(epochs, train_data, valid, val_score_key=val_score_key)


def no_plugins(*plugins):
    return build_plugin_manager(load_entry_points=False, environ={}, plugins=plugins)


def test_sys_exit_in_a_plugin_hook_is_a_plugin_error_naming_it(tmp_path, make_trainer, managers):
    trainer = make_trainer(save_path=tmp_path, plugin_manager=no_plugins(ExitsAtEpochEnd()))
    with pytest.raises(PluginError) as failed:
        train(trainer, managers, signals=False)
    assert str(failed.value) == (
        "plugin 'ExitsAtEpochEnd' raised SystemExit(7) in epochal_at_epoch_end (epoch 2); "
        "checkpoint_last of epoch 1 is kept. Fix the plugin, then resume the run."
    )
    assert isinstance(failed.value.__cause__, SystemExit)
    assert json.loads(str(np.load(tmp_path / "checkpoint_last.npz")["meta"]))["epoch"] == 1


@pytest.mark.parametrize("signals", [True, False], ids=["stop_on_signals", "plain"])
def test_keyboard_interrupt_raised_by_a_callback_is_a_plugin_error(
    tmp_path, make_trainer, managers, signals
):
    trainer = make_trainer(save_path=tmp_path, callbacks=[InterruptsAtBatch()])
    with pytest.raises(PluginError) as failed:
        train(trainer, managers, signals=signals)
    assert str(failed.value) == (
        "callback 'InterruptsAtBatch' raised KeyboardInterrupt in at_batch_end (epoch 2); "
        "checkpoint_last of epoch 1 is kept. Fix the callback or turn it off, then resume the "
        "run."
    )


def test_the_users_second_ctrl_c_inside_a_callback_still_stops_at_once(make_trainer, managers):
    before = signal.getsignal(signal.SIGINT)
    trainer = make_trainer(callbacks=[CtrlCTwiceAtBatch()])
    with pytest.raises(KeyboardInterrupt):
        train(trainer, managers)
    assert trainer.stop_requested == "SIGINT"
    assert signal.getsignal(signal.SIGINT) is before


def test_numpy_number_in_callback_state_is_refused_at_the_first_save(
    tmp_path, make_trainer, managers
):
    trainer = make_trainer(save_path=tmp_path, callbacks=[NumpyNumberState()])
    with pytest.raises(PluginError) as refused:
        train(trainer, managers, epochs=1)
    assert str(refused.value).startswith(
        "callback 'NumpyNumberState' returned from state_dict() what a checkpoint cannot hold "
        "at state['best']: numpy.float64 (use .tolist() or .item()"
    )
    assert list(tmp_path.iterdir()) == []  # nothing written at all


# -- in this process: the torch backend holds its tensors -------------------------------------


class TensorState:
    def __init__(self, value):
        self.value = value

    @hookimpl
    def epochal_state_dict(self, trainer):
        return {"ema": {"weight": self.value, "steps": 3}}


def test_torch_checkpoints_hold_tensors_in_plugin_state_and_refuse_numpy(tmp_path, managers):
    torch = pytest.importorskip("torch")
    from epochal_torch.trainer import PyTorchNetworkTrainer

    def trainer(value, save_path):
        network = torch.nn.Sequential(torch.nn.Linear(64, 10))
        return PyTorchNetworkTrainer(
            network, save_path, {"CE": torch.nn.CrossEntropyLoss()}, torch.optim.SGD,
            {"lr": 0.1}, plugin_manager=no_plugins(TensorState(value)),
        )  # fmt: skip

    train(trainer(torch.ones(2), tmp_path / "good"), managers, epochs=1, val_score_key=None)
    saved = torch.load(tmp_path / "good" / "checkpoint_last.pt", weights_only=True)
    assert torch.equal(saved["callbacks"]["ema"]["weight"], torch.ones(2))

    with pytest.raises(PluginError, match=r"at state\['ema'\]\['weight'\]: numpy.ndarray"):
        train(trainer(np.ones(2), tmp_path / "bad"), managers, epochs=1, val_score_key=None)
    assert not (tmp_path / "bad").exists() or list((tmp_path / "bad").iterdir()) == []
