"""What the core learns from plugins instead of naming them: a backend's config keys (its
trainer's ``config_keys``), what a callback asks of the job (``job_params``) and suggests after
a run (``next_steps``), the default job's backend and callbacks
(``epochal_register_default_job``), install hints and versions from the installed plugins."""

from __future__ import annotations

from pathlib import Path

import pytest

from epochal.errors import ConfigError
from epochal.job.backends import (
    backend_name,
    backend_trainer,
    default_backend,
    default_job,
    install_hint,
)
from epochal.job.build import build_callbacks
from epochal.job.config import check_trainer_keys, load_config
from epochal.job.keys import ConfigKey
from epochal.loop.supervised import SUPERVISED_KEYS
from epochal.plugins.registry import get_trainer
from epochal.runs.experiment import Experiment
from epochal.runs.folder import versions

BACKENDS = ["torch", "tf"]
EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def _trainer(backend: str) -> type:
    pytest.importorskip(f"epochal_{backend}.trainer")
    return get_trainer(backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "training.gpu_ids=[0, -1]",
            "training.gpu_ids must be a list of CUDA device numbers (integers >= 0; [] for the "
            "CPU), got [0, -1]",
        ),
        ("training.gpu_ids=[true]", "training.gpu_ids must be a list of CUDA device numbers"),
        ("training.gpu_ids=3", "training.gpu_ids must be a list, got integer 3"),
        ("training.mixed_precision=1", "training.mixed_precision must be a boolean, got integer"),
        ("training.mixed_precision_kwargs=2", "training.mixed_precision_kwargs must be a table"),
        (
            "training.lr_scheduler_params={step_size=2}",
            "training.lr_scheduler_params is set but training.lr_scheduler_cls is not: name the "
            "scheduler, e.g. lr_scheduler_cls = 'StepLR', or drop the parameters",
        ),
        ("training.lr_scheduler_cls=3", "training.lr_scheduler_cls must be a string"),
    ],
)
def test_a_backends_declared_keys_are_checked_by_key_when_the_config_loads(
    backend, override, message
):
    trainer_cls = _trainer(backend)
    # declared by the backend (the supervised keys, with its own checks), read by the core
    assert set(SUPERVISED_KEYS) <= set(trainer_cls.config_keys)
    config = load_config(None, [f"experiment.backend={backend}", override])  # the core: no check
    with pytest.raises(ConfigError) as info:
        Experiment.from_config(config)
    assert str(info.value) == message or str(info.value).startswith(message)


def test_keys_a_backend_does_not_declare_go_to_its_signature():
    pytest.importorskip("epochal_numpy")
    config = load_config(EXAMPLES / "digits_numpy.toml", ["training.gpu_ids=[-1]"])
    assert not getattr(get_trainer("numpy"), "config_keys", None)
    with pytest.raises(ConfigError) as info:
        Experiment.from_config(config).setup()
    assert "gpu_ids" in str(info.value) and "CUDA device numbers" not in str(info.value)


def test_a_third_party_backend_declares_its_own_keys():
    base = _trainer("torch")

    class Mine(base):  # type: ignore[misc, valid-type]
        config_keys = {
            **SUPERVISED_KEYS,
            "devices": ConfigKey("list", items="integer", minimum=1, meaning="device numbers >= 1"),
            "warmup": ConfigKey("number", minimum=0),
        }

    check_trainer_keys({"training": {"devices": [1, 2], "warmup": 0.5}}, Mine)
    for training, message in [
        ({"devices": [0]}, "training.devices must be device numbers >= 1, got [0]"),
        ({"devices": ["a"]}, "training.devices must be device numbers >= 1"),
        ({"warmup": -1}, "training.warmup must be at least 0, got -1"),
        ({"warmup": "x"}, "training.warmup must be a number, got string 'x'"),
    ]:
        with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
            check_trainer_keys({"training": training}, Mine)
    with pytest.raises(ValueError, match="no TOML type"):
        ConfigKey("float")


def test_a_backend_checks_a_value_itself_when_the_config_loads():
    def one_device(ids: list[int]) -> None:
        if len(ids) > 1:
            raise ValueError(f"gpu_ids={ids}: one trainer drives one device")

    base = _trainer("torch")

    class OneDevice(base):  # type: ignore[misc, valid-type]
        config_keys = {"gpu_ids": ConfigKey("list", items="integer", check_value=one_device)}

    check_trainer_keys({"training": {"gpu_ids": [0]}}, OneDevice)
    with pytest.raises(ConfigError) as info:
        check_trainer_keys({"training": {"gpu_ids": [0, 1]}}, OneDevice)
    assert str(info.value) == "training.gpu_ids: gpu_ids=[0, 1]: one trainer drives one device"


def test_callbacks_ask_for_what_the_job_knows():
    config = {
        "callbacks": {
            "early_stopping": {"patience": 3},
            "progress_bar": {"enabled": False},
        }
    }
    stopper, bar = build_callbacks(config, "lowest", "CE", n_batches=7)
    assert (stopper.monitor, stopper.mode) == ("val_CE", "lowest")
    assert bar.n_batches == 7
    # a config that monitors a key of its own keeps the callback's mode, not the score's
    config["callbacks"]["early_stopping"] = {"monitor": "train_CE"}
    stopper, bar = build_callbacks(config, "lowest", "val_accuracy", n_batches=None)
    assert (stopper.monitor, stopper.mode) == ("train_CE", "highest")
    assert bar.n_batches is None
    # a mode of its own, the job's score
    config["callbacks"]["early_stopping"] = {"mode": "min"}
    stopper, _ = build_callbacks(config, "highest", "accuracy")
    assert (stopper.monitor, stopper.mode) == ("val_accuracy", "lowest")


def test_the_default_job_comes_from_the_core_and_the_plugins():
    job = default_job()
    assert list(job["experiment"])[:2] == ["name", "backend"]
    assert job["experiment"]["backend"] == default_backend() == "torch"  # preferred: tryfirst
    assert list(job["callbacks"]) == [
        "progress_bar",
        "csv_logger",
        "tensorboard",
        "learning_curves",
    ]
    assert job["callbacks"]["progress_bar"] == {"lines": True}
    job["callbacks"]["csv_logger"]["x"] = 1  # a copy each time
    assert default_job()["callbacks"]["csv_logger"] == {}


def test_install_hints_and_names_come_from_the_installed_plugins():
    assert install_hint("tf") == "epochal-tf"  # the installed distribution of that plugin
    assert install_hint("numpy") == "epochal-numpy-example"
    assert install_hint("jax") == "epochal-jax"  # nothing installed: the naming rule
    with pytest.raises(ConfigError, match=r"unknown backend 'jax'; installed backends: .*numpy"):
        backend_trainer("jax")
    torch_trainer = _trainer("torch")
    assert backend_name(torch_trainer) == "torch"
    assert Experiment({"model": {}, "training": {}}, "mlp", trainer_cls=torch_trainer).backend == (
        "torch"
    )
    found = versions(torch_trainer)
    import torch

    assert found["torch"] == torch.__version__ and "epochal-torch" in found
    assert "tensorflow" not in found  # the other backend's framework is not this run's


def test_after_a_run_the_callbacks_say_what_to_do_next():
    from epochal.cli.commands import _callback_next_steps

    experiment = Experiment.from_config(None)
    assert _callback_next_steps(experiment) == ["tensorboard --logdir {run_dir}"]
    experiment = Experiment.from_config(None, ["callbacks.tensorboard=false"])
    assert _callback_next_steps(experiment) == []
