"""Issue 13, item 1: nothing a config (or a run folder's ``config.toml``) names is called unless
it is of the kind its slot expects (:mod:`epochal.job.trust`). Every refused case proves that no
code of the target ran: the payloads write a marker file when called, and it never appears."""

from __future__ import annotations

import importlib
import shutil
import sys
import tomllib

import pytest
import tomli_w

from epochal.errors import ConfigError
from epochal.job.build import build_data, experiment_from_config
from epochal.job.config import load_config
from epochal.testing import run_epochal

torch = pytest.importorskip("torch")

QUICK = ["--set", "callbacks.tensorboard=false", "--set", "callbacks.learning_curves=false"]

#: A package of the user's that is not trusted: importing it is harmless, calling anything in
#: it (but the torch Module subclass ``Net``) leaves the marker file.
PAYLOAD = """
import torch

MARK = {mark!r}


def run(*args, **kwargs):
    with open(MARK, "w") as handle:
        handle.write("ran")
    return torch.zeros(())


class Payload:
    def __init__(self, *args, **kwargs):
        run()

    def __call__(self, *args, **kwargs):
        return run()


class Net(torch.nn.Linear):
    def __init__(self):
        super().__init__(64, 10)
"""


@pytest.fixture
def payload(tmp_path, monkeypatch):
    """The marker path; the module ``payloadmod`` is importable while the test runs."""
    mark = tmp_path / "MARK"
    (tmp_path / "payloadmod.py").write_text(PAYLOAD.format(mark=str(mark)))
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield mark
    sys.modules.pop("payloadmod", None)


def _build(overrides: list[str]):
    """Everything a run builds before it trains: the experiment, the trainer's arguments
    (losses, metrics, optimizer, scheduler), the data with its transforms, the trainer."""
    experiment = experiment_from_config(load_config(None, overrides))
    experiment.trainer_kwargs()
    build_data(experiment.config, 0)
    return experiment, experiment.setup()


REFUSED = [
    # (key named in the error, overrides)
    ("experiment.model", ["experiment.model=os:system", "model={command='touch {mark}'}"]),
    ("experiment.model", ["experiment.model=subprocess:getoutput", "model={cmd='touch {mark}'}"]),
    ("experiment.model", ["experiment.model=payloadmod:run", "model={}"]),
    ("experiment.model", ["experiment.model=payloadmod:Payload", "model={}"]),
    ("training.losses.CE", ["training.losses.CE=os:system"]),
    ("training.losses.CE", ["training.losses.CE=payloadmod:run"]),
    ("training.losses.CE", ["training.losses.CE=payloadmod:Payload"]),
    ("training.metrics.accuracy", ["training.metrics.accuracy=payloadmod:run"]),
    ("training.optimizer_cls", ["training.optimizer_cls=payloadmod:Payload"]),
    ("training.optimizer_cls", ["training.optimizer_cls=subprocess:Popen"]),
    ("training.lr_scheduler_cls", ["training.lr_scheduler_cls=payloadmod:run"]),
    ("data.transforms[0].name", ["data.transforms=[{name='os:system', command='touch {mark}'}]"]),
    ("data.transforms[0].name", ["data.transforms=[{name='payloadmod:Payload'}]"]),
    # paths that reach a callable through a trusted or harmless name
    ("experiment.model", ["experiment.model=os:path.join.__call__", "model={}"]),
    ("experiment.model", ["experiment.model=epochal_torch.trainer:os.system", "model={}"]),
    ("experiment.model", ["experiment.model=payloadmod:_private", "model={}"]),
    ("experiment.model", ["experiment.model=.foo:Bar", "model={}"]),
    ("experiment.model", ["experiment.model=epochal.testing:run_epochal", "model={}"]),
]


@pytest.mark.parametrize(("key", "overrides"), REFUSED, ids=[" ".join(o) for _, o in REFUSED])
def test_a_config_cannot_call_what_its_slot_does_not_hold(payload, key, overrides):
    overrides = [override.replace("{mark}", str(payload)) for override in overrides]
    with pytest.raises(ConfigError) as caught:
        _build(overrides)
    message = str(caught.value)
    assert message.startswith(f"{key}: "), message
    assert "\n" not in message
    target = overrides[0].split("=", 1)[1].strip("[{}'").removeprefix("name='")
    assert target.split("'")[0] in message  # the target is named
    assert not payload.exists(), "the refused target ran"


def test_the_refusal_names_the_rule():
    with pytest.raises(ConfigError) as caught:
        _build(["experiment.model=subprocess:getoutput"])
    assert "standard-library module" in str(caught.value)
    assert "subclass of torch.nn.Module" in str(caught.value)
    assert "trusted_modules" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        _build(["training.losses.CE=numpy:mean"])
    assert "function of the module 'numpy'" in str(caught.value)
    assert "function of a declared module (epochal*, torch.nn.functional" in str(caught.value)


def test_standard_library_modules_cannot_be_trusted():
    with pytest.raises(ConfigError, match=r"experiment.trusted_modules: 'os' is a Python"):
        load_config(None, ["experiment.trusted_modules=['os']"])
    with pytest.raises(ConfigError, match=r"experiment.trusted_modules: 'a b' is not a module"):
        load_config(None, ["experiment.trusted_modules=['a b']"])


def test_what_the_slots_hold_is_accepted(payload, tmp_path):
    """A Module subclass from any package, torch's functional losses, and a function of a
    module the job lists itself: built, and (for the losses) trained with for an epoch."""
    experiment, trainer = _build(
        [
            "experiment.model=payloadmod:Net",
            "model={}",
            "training.losses.CE=torch.nn.functional:cross_entropy",
            "training.optimizer_cls=torch.optim:SGD",
            "training.lr_scheduler_cls=torch.optim.lr_scheduler:StepLR",
            "training.lr_scheduler_params={step_size=1}",
        ]
    )
    assert type(trainer.module).__name__ == "Net"
    experiment.run(num_epochs=1, run_dir=str(tmp_path / "run"))
    assert experiment.last_run.summary["status"] == "done"
    assert not payload.exists()
    listed = experiment_from_config(
        load_config(
            None,
            [
                "experiment.trusted_modules=['payloadmod']",
                "training.metrics.accuracy=payloadmod:run",
            ],
        )
    )
    assert listed.trainer_kwargs()["metrics"]["accuracy"].__name__ == "run"
    mirror = "batchgenerators.transforms.spatial_transforms:MirrorTransform"
    with_transform = load_config(None, [f"data.transforms=[{{name='{mirror}', axes=[1]}}]"])
    train, _ = build_data(with_transform, 0)
    assert type(train.transforms.transforms[0]).__name__ == "MirrorTransform"


# -- the CLI, and run folders edited by someone else --------------------------------------


@pytest.mark.slow
def test_cli_refuses_a_command_in_the_config(tmp_path):
    mark = tmp_path / "MARK"
    result = run_epochal(
        "train", "--epochs", "1", *QUICK, "--set", "experiment.model=os:system",
        "--set", f"model.command='touch {mark}'", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("epochal:")]
    assert errors == [errors[0]] and errors[0].startswith("epochal: error: experiment.model: ")
    assert "Traceback" not in result.stderr
    assert not mark.exists() and not (tmp_path / "runs").exists()


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("trust")
    result = run_epochal("train", "--epochs", "1", *QUICK, "--run-dir", "run", cwd=root)
    assert result.returncode == 0, result.stderr
    return root / "run"


@pytest.mark.slow
@pytest.mark.parametrize(
    "edit",
    [
        {"experiment": {"model": "subprocess:getoutput"}, "model": {"cmd": "touch {mark}"}},
        {"training": {"losses": {"CE": "os:system"}}},
    ],
    ids=["model", "loss"],
)
def test_an_edited_run_folder_cannot_run_code(trained_run, tmp_path, edit):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    mark = tmp_path / "MARK"
    config = tomllib.loads((run / "config.toml").read_text())
    for table, values in edit.items():
        if table == "model":
            config["model"] = {k: v.replace("{mark}", str(mark)) for k, v in values.items()}
        else:
            for key, value in values.items():
                config[table][key] = value
    (run / "config.toml").write_text(tomli_w.dumps(config))
    key = "experiment.model" if "experiment" in edit else "training.losses.CE"
    for command in (
        ["predict", str(run), "--data", "digits", "--out", str(tmp_path / "p.csv")],
        ["resume", str(run), "--epochs", "2"],
    ):
        result = run_epochal(*command, cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert f"epochal: error: {key}: " in result.stderr, result.stderr
        assert not mark.exists(), f"{command[0]} ran the run folder's command"
