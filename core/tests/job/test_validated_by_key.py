"""Every error of a job is attributed to its key when the job is validated, by a declared
check (a model's ``check_arguments``, a backend's ``config_keys``), before any model or trainer
is built; and a config value goes from the typed job to the trainer's constructor without
delira's ``Parameters`` (which stay the Python API's)."""

from __future__ import annotations

import functools

import pytest

from epochal.errors import ConfigError
from epochal.job.config import load_config
from epochal.job.limits import ArgumentError
from epochal.job.params import Parameters
from epochal.job.ready_models import check_model_arguments, mlp_layout
from epochal.runs.experiment import Experiment

pytest.importorskip("epochal_torch.trainer")

QUICK = ["training.num_epochs=1", "model.hidden=[8]"]


def _counting(monkeypatch, cls, method="__init__"):
    """Counts the calls of ``cls.method`` (the real one still runs)."""
    calls = []
    original = getattr(cls, method)

    @functools.wraps(original)  # the signature stays the class's
    def counted(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(cls, method, counted)
    return calls


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.hidden=[16, 0]", "model.hidden: MLP(in_features=64, hidden=[16, 0]"),
        ("model.dropout=1.5", "model.dropout: MLP("),
        ("model.in_features=0", "model.in_features: MLP(in_features=0"),
        ("training.gpu_ids=[7]", "training.gpu_ids: gpu_ids=[7] but this machine's CUDA devices"),
        ("training.on_nonfinite='skip'", "training.on_nonfinite: on_nonfinite must be one of"),
        ("training.dist_backend='mpi'", "training.dist_backend: dist_backend must be one of"),
        ("training.dist_timeout=0", "training.dist_timeout: dist_timeout must be a positive"),
        ("training.mixed_precision_kwargs={scale=2}", "training.mixed_precision_kwargs: unknown"),
    ],
)
def test_errors_name_their_key_when_the_job_is_validated(monkeypatch, override, message):
    from epochal_torch.models import MLP
    from epochal_torch.trainer import PyTorchNetworkTrainer

    built = _counting(monkeypatch, MLP) + _counting(monkeypatch, PyTorchNetworkTrainer)
    config = load_config(None, [*QUICK, override])
    with pytest.raises(ConfigError) as info:
        Experiment.from_config(config)  # validation: nothing is built or run yet
    assert str(info.value).startswith(message), str(info.value)
    assert built == []


def test_the_python_api_gets_the_same_errors_before_building(monkeypatch):
    from epochal_torch.models import MLP
    from epochal_torch.trainer import PyTorchNetworkTrainer

    built = _counting(monkeypatch, MLP) + _counting(monkeypatch, PyTorchNetworkTrainer)
    params = {"model": {"in_features": 64, "hidden": [-1]}, "training": {}}
    with pytest.raises(ConfigError, match=r"^model\.hidden: MLP\(in_features=64, hidden=\[-1\]"):
        Experiment(params, "mlp").build_network()
    experiment = Experiment({"model": {"in_features": 64}, "training": {}}, "mlp", gpu_ids=[7])
    with pytest.raises(ConfigError, match=r"^training\.gpu_ids: gpu_ids=\[7\] but this machine"):
        experiment.trainer_kwargs()
    assert built == []


def test_a_model_without_declared_checks_is_refused_under_model_as_a_whole():
    class Picky:
        def __init__(self, width: int = 2) -> None:
            if width % 2:
                raise ValueError("width must be even")

    class Declared(Picky):
        check_arguments = staticmethod(lambda width: Picky(width))  # a plain ValueError

    experiment = Experiment({"model": {"width": 3}, "training": {}}, Picky)
    with pytest.raises(ConfigError, match=r"^model: .*Picky\(width=3\) failed: width must be even"):
        experiment.build_network()
    with pytest.raises(ConfigError, match=r"^model: .*Declared\(width=3\) failed: width must"):
        check_model_arguments(Declared, {"width": 3})
    check_model_arguments(Declared, {"width": 4})
    with pytest.raises(ArgumentError) as info:
        mlp_layout(64, [8], 10, 2.0)
    assert info.value.argument == "dropout"


def test_the_trainer_is_built_from_the_typed_job_without_parameters(monkeypatch):
    from epochal_torch.trainer import PyTorchNetworkTrainer

    made = _counting(monkeypatch, Parameters)
    received = []
    original = PyTorchNetworkTrainer.__init__

    @functools.wraps(original)
    def constructor(self, *args, **kwargs):
        received.append(kwargs)
        original(self, *args, **kwargs)

    monkeypatch.setattr(PyTorchNetworkTrainer, "__init__", constructor)
    experiment = Experiment.from_config(None, [*QUICK, "training.optimizer_params.lr=0.0125"])
    trainer = experiment.setup()
    assert made == []  # the config's path: Job.training -> trainer_kwargs -> the constructor
    assert received[0]["optimizer_params"] == {"lr": 0.0125}
    assert trainer.optimizers["default"].param_groups[0]["lr"] == 0.0125
    # delira's Parameters are still there for the Python API, made from the same job ...
    assert experiment.params.training_kwargs["optimizer_params"] == {"lr": 0.0125}
    assert made != []
    # ... and, once set or changed, they are what the experiment trains with (as in delira)
    experiment.params = Parameters(
        {
            "model": experiment.params.model_kwargs,
            "training": {**experiment.params.training_kwargs, "optimizer_params": {"lr": 0.5}},
        }
    )
    assert experiment.trainer_kwargs()["optimizer_params"] == {"lr": 0.5}


def test_variable_parameters_still_vary_the_trainer():
    config = load_config(None, QUICK)
    config["variable"] = {"training": {"optimizer_params": {"lr": 0.25}}, "model": {"hidden": [4]}}
    experiment = Experiment.from_config(config)
    assert experiment.trainer_kwargs()["optimizer_params"] == {"lr": 0.25}
    assert next(p.shape[0] for p in experiment.build_network().parameters()) == 4
    with_params = Experiment(
        Parameters(
            {
                "model": {"in_features": 64},
                "training": {"optimizer_cls": "SGD", "losses": {"CE": "cross_entropy"}},
            },
            {"training": {"optimizer_params": {"lr": 0.5}}},
        ),
        "mlp",
    )
    assert with_params.trainer_kwargs()["optimizer_params"] == {"lr": 0.5}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("training.gpu_ids=[7]", "training.gpu_ids: gpu_ids=[7] but TensorFlow sees these GPUs"),
        ("training.strategy='ring'", "training.strategy: strategy must be one of"),
        ("training.mixed_precision_kwargs={init_scale=2}", "training.mixed_precision_kwargs:"),
    ],
)
def test_the_tf_backend_declares_its_keys_too(monkeypatch, override, message):
    pytest.importorskip("epochal_tf.trainer")
    from epochal_tf.models import MLP
    from epochal_tf.trainer import TfNetworkTrainer

    built = _counting(monkeypatch, MLP) + _counting(monkeypatch, TfNetworkTrainer)
    config = load_config(None, [*QUICK, "experiment.backend='tf'", override])
    with pytest.raises(ConfigError) as info:
        Experiment.from_config(config)
    assert str(info.value).startswith(message), str(info.value)
    assert built == []


@pytest.mark.parametrize("backend", ["torch", "tf"])
def test_an_unknown_training_key_is_named_with_did_you_mean(backend):
    pytest.importorskip(f"epochal_{backend}.trainer")
    config = load_config(
        None, [*QUICK, f"experiment.backend='{backend}'", "training.optimiser_cls='SGD'"]
    )
    experiment = Experiment.from_config(config)
    # the network (a plain MLP) has no closure to read extra arguments: nothing would use it
    with pytest.raises(
        ConfigError, match=r"^training\.optimiser_cls: .* \(did you mean 'optimizer_cls'\?\)"
    ):
        experiment.trainer_kwargs()
