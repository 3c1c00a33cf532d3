"""The job's values checked against typed declarations (evaluated types, not annotation text),
and the trainer's arguments computed once per run."""

from __future__ import annotations

import typing
from collections.abc import Mapping, Sequence
from typing import IO, Any, Literal

import pytest

from epochal.errors import ConfigError
from epochal.job.components import check_kwargs, parameter_types
from epochal.runs.experiment import Experiment


def _takes(
    count: int,
    rate: float | None = None,
    flag: bool = False,
    name: str = "",
    sizes: Sequence[int] = (),
    pairs: tuple[float, ...] = (),
    options: Mapping[str, Any] | None = None,
    mode: Literal["highest", "lowest"] = "highest",
    stream: IO[str] | None = None,
    anything: Any = None,
    number: typing.SupportsFloat = 0.0,
    untyped=3,
) -> None:
    """A function whose parameters cover the types a config value is checked against."""


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"count": "3"}, "k.count must be an integer, got string '3'"),
        ({"count": True}, "k.count must be an integer, got boolean True"),
        ({"count": 2.5}, "k.count must be an integer, got number 2.5"),
        ({"rate": "fast"}, "k.rate must be a number, got string 'fast'"),
        ({"flag": 1}, "k.flag must be a boolean, got integer 1"),
        ({"name": 1}, "k.name must be a string, got integer 1"),
        ({"sizes": [1, "a"]}, "k.sizes must be a list of integers, got list [1, 'a']"),
        ({"sizes": 3}, "k.sizes must be a list of integers, got integer 3"),
        ({"pairs": [1, "x"]}, "k.pairs must be a list of numbers"),
        ({"options": [1]}, "k.options must be a table, got list [1]"),
        ({"mode": "max"}, "k.mode must be one of 'highest', 'lowest', got string 'max'"),
        ({"untyped": "x"}, "k.untyped must be a number, got string 'x'"),  # by its default
        ({"cont": 1}, "k.cont: _takes has no parameter 'cont' (did you mean 'count'?)"),
    ],
)
def test_a_wrong_value_is_named_with_its_key_and_declared_type(kwargs, message):
    with pytest.raises(ConfigError) as info:
        check_kwargs(_takes, kwargs, "k")
    assert str(info.value).startswith(message)


def test_right_values_and_undecidable_types_pass():
    check_kwargs(
        _takes,
        {
            "count": 1,
            "rate": 2,  # an integer is a number
            "flag": False,
            "sizes": [1, 2],
            "pairs": [0.9, 0.99],
            "options": {"a": 1},
            "mode": "lowest",
            "stream": "x",  # no TOML value is an IO: the callee decides
            "anything": [1],
            "number": "1.5",  # a protocol a string may meet: the callee decides
        },
        "k",
    )
    assert parameter_types(_takes)["sizes"] == Sequence[int]  # evaluated, not parsed


def test_a_real_optimizer_and_model_are_checked_by_their_declared_types():
    torch = pytest.importorskip("torch")
    from epochal_torch.models import MLP

    with pytest.raises(ConfigError, match=r"training\.optimizer_params\.lr must be a number"):
        check_kwargs(torch.optim.Adam, {"lr": "fast"}, "training.optimizer_params")
    check_kwargs(torch.optim.Adam, {"lr": 1, "betas": [0.9, 0.99]}, "training.optimizer_params")
    with pytest.raises(ConfigError, match=r"model.hidden must be a list of integers"):
        check_kwargs(MLP, {"hidden": ["a"]}, "model")


def test_the_trainer_arguments_are_computed_once_per_run(tmp_path):
    pytest.importorskip("epochal_torch.trainer")
    experiment = Experiment.from_config(
        None,
        [
            "training.num_epochs=1",
            "callbacks.tensorboard=false",
            "callbacks.learning_curves=false",
            "callbacks.progress_bar=false",
            f"experiment.save_path={tmp_path}",
        ],
    )
    computed = []
    original = experiment.trainer_kwargs

    def counted(params: Any = None) -> dict[str, Any]:
        computed.append(params)
        return original(params)

    experiment.trainer_kwargs = counted  # type: ignore[method-assign]
    experiment.run()
    assert len(computed) == 1
    experiment.resume(experiment.last_run.run_dir, num_epochs=2)
    assert len(computed) == 2
    assert experiment.last_run.summary["epochs_run"] == 2


def test_a_config_is_checked_against_the_typed_tables_and_typed_once():
    from epochal.job.config import SCHEMA, load_config
    from epochal.job.spec import DataSpec, Job, job_from_config, types_of

    # the schema is the dataclasses' declarations, in TOML's words
    assert types_of(DataSpec)["batch_size"] is int and SCHEMA["data"]["batch_size"] == "integer"
    assert SCHEMA["data"]["dataset_params"] == "table"  # dict | None
    config = load_config(None, ["data.batch_size=16", "experiment.trusted_modules=['mypkg']"])
    job = job_from_config(config)
    assert isinstance(job, Job) and isinstance(job.data, DataSpec)
    assert (job.data.batch_size, job.data.val_split, job.data.stratify) == (16, 0.2, True)
    assert job.experiment.trusted_modules == ("mypkg",)
    assert job.training.optimizer_params == {"lr": 0.002} and job.training.trainer == {}
    experiment = Experiment.from_config(config)
    assert experiment.job == job and experiment.seed == job.experiment.seed
    for override, message in [
        ("data.val_batch_size=0", "data.val_batch_size must be at least 1, got 0"),
        ("data.dataset_params=[1]", "data.dataset_params must be a table, got list [1]"),
        ("experiment.checkpoint_freq=1.5", "experiment.checkpoint_freq must be an integer"),
        ("data.batchsize=3", "unknown key data.batchsize (did you mean 'batch_size'?)"),
    ]:
        with pytest.raises(ConfigError) as info:
            load_config(None, [override])
        assert str(info.value).startswith(message)
