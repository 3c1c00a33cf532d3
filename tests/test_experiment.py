"""Experiment, Parameters and configs through the Python API, on the torch backend and digits."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tomllib

import numpy as np
import pytest

from epochal.errors import ConfigError
from epochal.job.config import apply_override, load_config
from epochal.job.params import Parameters
from epochal.runs.experiment import Experiment

torch = pytest.importorskip("torch")

PARAMS = {
    "model": {"in_features": 64, "hidden": [32], "num_classes": 10},
    "training": {
        "num_epochs": 3,
        "optimizer_cls": "Adam",
        "optimizer_params": {"lr": 0.005},
        "losses": {"CE": "cross_entropy"},
        "metrics": {"accuracy": "accuracy"},
        "batch_size": 64,
    },
}


def _config(tmp_path, epochs=3, **sections):
    config = load_config(None, [f"training.num_epochs={epochs}", "model.hidden=[32]"])
    config["experiment"]["save_path"] = str(tmp_path / "runs")
    config["callbacks"] = {"csv_logger": {}, "tensorboard": {}, "learning_curves": {}}
    for key, value in sections.items():
        config[key].update(value)
    return config


def _weights(network):
    return {key: value.clone() for key, value in network.state_dict().items()}


# -- Parameters -------------------------------------------------------------------------------


def test_parameters_hierarchy_lookup_and_toml_round_trip(tmp_path):
    params = Parameters(
        fixed_params={"model": {"width": 8}, "training": {"lr": 0.1, "opt": {"beta": 0.9}}},
        variable_params={"training": {"lr": 0.01}},
    )
    assert params.variability_on_top and params.fixed["model"] == {"width": 8}
    params.permute_training_on_top()
    assert params.training_on_top
    assert params.training == {"fixed": {"lr": 0.1, "opt": {"beta": 0.9}}, "variable": {"lr": 0.01}}
    with pytest.raises(AttributeError, match="groups are"):
        params.fixed  # noqa: B018 - not on top any more
    assert params.permute_hierarchy().variability_on_top
    assert params.nested_get("lr") == 0.01  # the variable value wins, as in delira
    assert params.nested_get("opt.beta") == 0.9
    assert params.nested_get("missing", None) is None
    with pytest.raises(KeyError):
        params.nested_get("missing")
    assert params.training_kwargs == {"lr": 0.01, "opt": {"beta": 0.9}}
    path = params.save(tmp_path / "params")
    assert path.endswith(".toml")
    assert Parameters.load(path) == params
    with pytest.raises(ConfigError, match="unknown group"):
        Parameters({"modle": {}})
    with pytest.raises(ConfigError, match="does not exist"):
        Parameters.load(tmp_path / "nope.toml")


# -- configs ----------------------------------------------------------------------------------


def test_overrides_parse_toml_values_and_bare_words():
    config: dict = {}
    apply_override(config, "training.optimizer_params.lr=0.01")
    apply_override(config, "model.hidden=[64, 32]")
    apply_override(config, "experiment.name=my-run")
    apply_override(config, "data.stratify=false")
    assert config == {
        "training": {"optimizer_params": {"lr": 0.01}},
        "model": {"hidden": [64, 32]},
        "experiment": {"name": "my-run"},
        "data": {"stratify": False},
    }
    for bad in ("novalue", "=3", "a..b=1"):
        with pytest.raises(ConfigError, match="KEY=VALUE"):
            apply_override(config, bad)
    with pytest.raises(ConfigError, match="is a value, not a table"):
        apply_override(config, "experiment.name.x=1")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.datset=digits", "unknown key data.datset (did you mean 'dataset'?)"),
        ("data.batch_size=abc", "data.batch_size must be an integer, got string 'abc'"),
        ("data.batch_size=0", "data.batch_size must be at least 1"),
        ("data.val_split=1.5", "data.val_split must be in [0, 1)"),
        ("experiment.val_score_mode=up", "'highest' or 'lowest'"),
        ("trainning.num_epochs=3", "unknown key trainning (did you mean 'training'?)"),
        ("callbacks.progress_bar=3", "callbacks.progress_bar must be a table"),
        ("data.stratify=1", "data.stratify must be a boolean"),
    ],
)
def test_config_errors_name_the_key(override, message):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    assert message in str(info.value)


def test_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[data\nbatch_size = 3\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config(bad)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "experiment.model=mlpp",
            "unknown model 'mlpp' for the backend PyTorchNetworkTrainer. Did you mean 'mlp'?",
        ),
        ("training.losses.CE=crossentropy", "Did you mean 'cross_entropy'?"),
        ("training.optimizer_cls=Adamm", "unknown optimizer 'Adamm'"),
        ("training.optimizer_params.lrr=0.1", "Adam has no parameter 'lrr' (did you mean 'lr'?)"),
        ("model.hiden=[3]", "model.hiden: MLP has no parameter 'hiden' (did you mean 'hidden'?)"),
        ("training.foo=1", "training.foo: PyTorchNetworkTrainer takes no argument 'foo'"),
        ("experiment.backend=jax", "unknown backend 'jax'; installed backends:"),
        ("data.dataset=digitz", "Did you mean 'digits'?"),
        ("data.sampler=randm", "data.sampler: unknown sampler 'randm'"),
        ("callbacks.early_stoping={}", "callbacks.early_stoping: unknown callback"),
        ("callbacks.early_stopping.patience=0", "patience must be an integer >= 1"),
        ("training.gpu_ids=[7]", "gpu_ids=[7] but this machine's CUDA devices are"),
    ],
)
def test_names_are_checked_before_a_run_folder_exists(tmp_path, override, message):
    config = _config(tmp_path)
    apply_override(config, override)
    with pytest.raises(ConfigError) as info:
        Experiment.from_config(config).run()
    assert message in str(info.value)
    assert not (tmp_path / "runs").exists()


# -- running ----------------------------------------------------------------------------------


def test_run_fills_the_run_folder(tmp_path):
    experiment = Experiment.from_config(
        _config(tmp_path, epochs=3, experiment={"checkpoint_freq": 3})
    )
    network = experiment.run()
    result = experiment.last_run
    assert isinstance(network, torch.nn.Module)
    files = set(os.listdir(result.run_dir))
    assert {"config.toml", "summary.json", "metrics.csv", "curves.png", "tensorboard"} <= files
    assert {"checkpoint_best.pt", "checkpoint_last.pt", "checkpoint_epoch_3.pt"} <= files
    assert "checkpoint_epoch_1.pt" not in files  # checkpoint_freq = 3
    summary = json.loads((open(os.path.join(result.run_dir, "summary.json"))).read())
    assert summary["status"] == "done" and summary["epochs_run"] == 3
    assert summary["best_val_score"] == result.best_val_score > 0.5
    assert summary["versions"]["torch"] == torch.__version__
    with open(os.path.join(result.run_dir, "metrics.csv")) as handle:
        assert [row["epoch"] for row in csv.DictReader(handle)] == ["1", "2", "3"]
    with open(os.path.join(result.run_dir, "config.toml"), "rb") as handle:
        saved = tomllib.load(handle)
    assert saved["training"]["num_epochs"] == 3 and saved["model"]["hidden"] == [32]


def test_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(tmp_path):
    whole = Experiment.from_config(_config(tmp_path / "a", epochs=4))
    expected = _weights(whole.run(run_dir=tmp_path / "whole"))
    last_whole = torch.load(tmp_path / "whole" / "checkpoint_last.pt", weights_only=True)

    part = Experiment.from_config(_config(tmp_path / "b", epochs=2))
    part.run(run_dir=tmp_path / "part")
    again = Experiment.from_config(_config(tmp_path / "b", epochs=4))
    again.resume(tmp_path / "part", num_epochs=4)
    last_part = torch.load(tmp_path / "part" / "checkpoint_last.pt", weights_only=True)
    for key, value in last_whole["model"].items():
        assert torch.equal(value, last_part["model"][key]), key  # bitwise on the CPU
    assert again.last_run.best_epoch == whole.last_run.best_epoch
    assert set(expected) == set(_weights(again.last_run.network))
    with open(tmp_path / "part" / "metrics.csv") as handle:
        assert [row["epoch"] for row in csv.DictReader(handle)] == ["1", "2", "3", "4"]
    summary = json.loads((tmp_path / "part" / "summary.json").read_text())
    assert summary["epochs_run"] == 4 and summary["status"] == "done"
    assert summary["resumed_at_epoch"] == 3  # epochs 1 and 2 were not trained again


def test_resume_without_a_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    experiment = Experiment.from_config(_config(tmp_path))
    with pytest.raises(ConfigError, match=r"has no checkpoint_last and no config\.toml") as info:
        experiment.resume(tmp_path / "empty")
    assert f"epochal train --run-dir {tmp_path / 'empty'}" in str(info.value)
    with pytest.raises(ConfigError, match="does not exist"):
        experiment.resume(tmp_path / "nowhere")
    assert os.listdir(tmp_path / "empty") == [] and not (tmp_path / "nowhere").exists()


def _killed_mid_write(path):
    """What ``kill -9`` during an atomic write leaves: the writer's partial temporary file."""
    code = (
        "import os, signal, sys\n"
        "from epochal.runs.files import atomic_write\n"
        "with atomic_write(sys.argv[1]) as handle:\n"
        "    handle.write(b'partial')\n"
        "    handle.flush()\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    killed = subprocess.run([sys.executable, "-c", code, str(path)], timeout=60)
    assert killed.returncode == -9


def test_resume_of_a_run_killed_in_its_first_checkpoint_write_trains_from_epoch_1(tmp_path):
    """A run folder with config.toml, summary.json "running" and the partial first
    checkpoint_last of a killed writer, but no checkpoint: ``resume`` trains it from epoch 1
    in that folder and ends as the uninterrupted run (bitwise on the CPU)."""
    whole = Experiment.from_config(_config(tmp_path / "a", epochs=2))
    whole.run(run_dir=tmp_path / "whole")
    expected = torch.load(tmp_path / "whole" / "checkpoint_last.pt", weights_only=True)

    killed = tmp_path / "killed"
    killed.mkdir()
    (killed / "config.toml").write_bytes((tmp_path / "whole" / "config.toml").read_bytes())
    (killed / "summary.json").write_text(json.dumps({"status": "running", "pid": 999999}))
    _killed_mid_write(killed / "checkpoint_last.pt")
    (partial,) = [name for name in os.listdir(killed) if name.endswith(".tmp")]
    assert partial.startswith(".checkpoint_last.pt.")

    again = Experiment.from_config(str(killed / "config.toml"))
    again.resume(killed, num_epochs=2)
    resumed = torch.load(killed / "checkpoint_last.pt", weights_only=True)
    assert resumed["epoch"] == 2
    for key, value in expected["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    assert not [name for name in os.listdir(killed) if name.endswith(".tmp")]
    summary = json.loads((killed / "summary.json").read_text())
    assert summary["status"] == "done" and summary["resumed_at_epoch"] == 1
    assert summary["previous_run"] == "ended without a word (pid 999999)"
    with open(killed / "metrics.csv") as handle:
        assert [row["epoch"] for row in csv.DictReader(handle)] == ["1", "2"]


def test_api_with_objects_datasets_test_and_pytorch_experiment(tmp_path, digits_split):
    from epochal_torch import PyTorchExperiment
    from epochal_torch.models import MLP

    train, valid = digits_split
    params = Parameters(fixed_params=PARAMS)
    experiment = PyTorchExperiment(
        params,
        MLP,
        name="api",
        save_path=tmp_path,
        val_score_key="accuracy",
        seed=1,
        checkpoint_freq=2,
    )
    assert experiment.trainer_cls.__name__ == "PyTorchNetworkTrainer"
    network = experiment.run(train, valid)
    run_dir = experiment.last_run.run_dir
    assert run_dir.startswith(str(tmp_path / "api"))
    assert "checkpoint_epoch_2.pt" in os.listdir(run_dir)
    with open(os.path.join(run_dir, "config.toml"), "rb") as handle:
        saved = tomllib.load(handle)
    assert saved["experiment"]["model"] == "epochal_torch.models:MLP"
    predictions, labels, scores = experiment.test(network, valid, {"accuracy": "accuracy"})
    assert predictions.shape == (len(valid), 10)
    accuracy = float(np.mean(predictions.argmax(1) == labels[0]))
    assert scores["accuracy"] == pytest.approx(accuracy, abs=1e-6)
    assert scores["accuracy"] == pytest.approx(experiment.last_run.best_val_score, abs=1e-6)
    with pytest.raises(ValueError, match="trains with torch"):
        PyTorchExperiment(params, MLP, backend="tf")


def test_kfold_trains_and_tests_each_fold(tmp_path):
    experiment = Experiment.from_config(_config(tmp_path, epochs=1))
    result = experiment.kfold(
        num_splits=3, split_type="stratified", val_split=0.2, run_dir=tmp_path / "k"
    )
    assert [fold["fold"] for fold in result.folds] == [0, 1, 2]
    accuracies = [fold["test"]["accuracy"] for fold in result.folds]
    assert result.mean["accuracy"] == pytest.approx(np.mean(accuracies))
    assert result.std["accuracy"] == pytest.approx(np.std(accuracies))
    assert json.loads((tmp_path / "k" / "kfold.json").read_text())["mean"] == result.mean
    assert all((tmp_path / "k" / f"fold_{i}" / "checkpoint_best.pt").exists() for i in range(3))
    with pytest.raises(ConfigError, match="split_type"):
        experiment.kfold(split_type="shuffled")
    with pytest.raises(ConfigError, match="num_splits"):
        experiment.kfold(num_splits=1)


def test_tf_experiment_trains_with_the_same_names(tmp_path, digits_split):
    pytest.importorskip("epochal_tf.trainer")
    from epochal_tf import TfExperiment

    train, valid = digits_split
    experiment = TfExperiment(
        Parameters(fixed_params=PARAMS), "mlp", name="tf", save_path=tmp_path, seed=0
    )
    assert experiment.trainer_cls.__name__ == "TfNetworkTrainer"
    experiment.run(train, valid, num_epochs=2)
    assert experiment.last_run.best_val_score > 0.7
    assert "checkpoint_best.tf.npz" in os.listdir(experiment.last_run.run_dir)
    with pytest.raises(ValueError, match="trains with TensorFlow"):
        TfExperiment(Parameters(fixed_params=PARAMS), "mlp", backend="torch")


def test_resume_puts_back_the_best_checkpoint_a_kill_left_from_a_later_epoch(tmp_path):
    """A kill between the writes of checkpoint_best and checkpoint_last (epoch 3) leaves a best
    file of epoch 3 beside a checkpoint_last of epoch 2: resume restores the best of its history."""
    ahead = Experiment.from_config(_config(tmp_path / "a", epochs=3))
    ahead.run(run_dir=tmp_path / "ahead")
    behind = Experiment.from_config(_config(tmp_path / "b", epochs=2))
    behind.run(run_dir=tmp_path / "run")
    best = tmp_path / "run" / "checkpoint_best.pt"
    assert torch.load(best, weights_only=True)["epoch"] == 2  # digits improve every epoch here
    best.write_bytes((tmp_path / "ahead" / "checkpoint_best.pt").read_bytes())
    assert torch.load(best, weights_only=True)["epoch"] == 3  # the state after the kill

    with pytest.warns(UserWarning, match="already complete"):
        behind.resume(tmp_path / "run", num_epochs=2)
    restored = torch.load(best, weights_only=True)
    last = torch.load(tmp_path / "run" / "checkpoint_last.pt", weights_only=True)
    assert restored["epoch"] == 2
    assert all(torch.equal(restored["model"][k], last["model"][k]) for k in last["model"])
