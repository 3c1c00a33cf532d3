"""The backend conformance suite: what every epochal backend must do, run against yours.

A backend's test module imports the suite and names its backend::

    from epochal.testing.conformance import *  # noqa: F403  (the suite's tests and fixtures)
    from epochal.testing.conformance import conformance_backend

    epochal_backend = conformance_backend("mybackend", make_trainer, unstable={"lr": 5.0})

``make_trainer(save_path=None, *, seed=0, network="default", **kwargs)`` returns a new trainer
of your backend: it seeds your framework with ``seed``, builds a network for the 8x8 digits (64
float inputs, 10 classes, labels ``int``) with the loss ``"CE"`` and the metric ``"accuracy"``,
and passes ``save_path`` and ``kwargs`` (``save_freq``, ``callbacks``, ``on_nonfinite``, ...) to
the trainer. ``network`` is ``"default"``, ``"random"`` (a network that draws random numbers while
training, e.g. dropout; the default one if yours has none) or ``"other"`` (another architecture:
other weight shapes). The suite trains for real on digits, in this process, through the public
API only (the registered name, ``train``, ``save_state``/``load_state``/``update_state``,
``predict``, ``epochal plugins``); it never imports a framework.

``unstable`` are trainer arguments for a learning rate so high that the validation loss jumps
(the best epoch is not the last); the other options are :class:`ConformanceBackend`'s. The
non-finite loss tests run where the trainer takes ``on_nonfinite``. What a backend's own tests
keep: its checkpoint format (crafted and foreign files), its mixed precision, anything about its
framework's internals.
"""

from __future__ import annotations

import inspect
import os
import random
import re
import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from epochal.errors import CheckpointError, EpochalError, NonFiniteLossError, PluginError

__all__ = [
    "ConformanceBackend",
    "EpochBatches",
    "conformance_backend",
    "conformance_data",
    "differences",
    "half_run",
    "network_weights",
    "resumed_run",
    "straight_run",
    "test_a_lost_checkpoint_best_leaves_the_last_weights",
    "test_a_nonfinite_loss_raises_naming_epoch_batch_and_key",
    "test_a_refused_state_keeps_the_previous_checkpoint",
    "test_an_epoch_of_only_bad_batches_raises_and_changes_nothing",
    "test_another_architecture_is_refused_and_changes_nothing",
    "test_checkpoint_files_and_contents",
    "test_discovered_through_its_entry_point_and_listed",
    "test_on_nonfinite_is_checked",
    "test_predict_merges_batches_and_returns_labels_and_metrics",
    "test_resume_is_bitwise_equal_to_an_uninterrupted_run",
    "test_resume_restores_the_numpy_and_python_random_states",
    "test_skip_batch_skips_exactly_the_bad_batches",
    "test_the_same_seed_trains_the_same_checkpoint",
    "test_train_returns_the_best_epochs_weights",
    "test_unreadable_checkpoints_are_refused_naming_the_file",
    "test_weights_only_checkpoint_restores_the_network",
    "with_nan",
]

EPOCHS = 4  # the uninterrupted run; the resumed one stops after half of it
BATCH = 32
N_BATCHES = 6  # of the hand-made epochs (non-finite losses); the last one is partial


@dataclass(frozen=True)
class ConformanceBackend:
    """A backend under test: its registered name and how to build one of its trainers."""

    #: the name the backend registers (``epochal_register_trainers``), as configs say it
    name: str
    #: ``make_trainer(save_path=None, *, seed=0, network="default", **kwargs)`` (module docstring)
    make_trainer: Callable[..., Any]
    #: trainer arguments for a learning rate so high that the validation loss jumps around
    unstable: Mapping[str, Any] = field(default_factory=dict)
    #: the distribution that installs the backend (``epochal plugins`` names it); None: unchecked
    distribution: str | None = None
    #: trainer arguments of each code path the non-finite tests run through (e.g. a fast path)
    paths: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: {"default": {}})
    #: whether a resume restores numpy's and Python's random states (``training_state``);
    #: False only for a backend whose training draws no random numbers
    random_state: bool = True


def conformance_backend(
    name: str,
    make_trainer: Callable[..., Any],
    *,
    unstable: Mapping[str, Any] | None = None,
    distribution: str | None = None,
    paths: Mapping[str, Mapping[str, Any]] | None = None,
    random_state: bool = True,
) -> Any:
    """The ``epochal_backend`` fixture (module-scoped) that runs the suite against ``name``;
    the options are :class:`ConformanceBackend`'s."""
    backend = ConformanceBackend(
        name,
        make_trainer,
        dict(unstable or {}),
        distribution,
        dict(paths) if paths is not None else {"default": {}},
        random_state,
    )

    @pytest.fixture(scope="module", name="epochal_backend")
    def epochal_backend() -> ConformanceBackend:
        return backend

    return epochal_backend


# -- helpers -------------------------------------------------------------------------------


def _leaves(value: Any, path: str = "state") -> Iterable[tuple[str, Any]]:
    """``(path, leaf)`` of a nested checkpoint state, in a stable order."""
    if isinstance(value, Mapping):
        for key in sorted(value, key=repr):
            yield from _leaves(value[key], f"{path}[{key!r}]")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _leaves(item, f"{path}[{index}]")
    else:
        yield path, value


def _array(value: Any) -> np.ndarray | None:
    """A framework's tensor or array as numpy (a copy), or None for plain values."""
    if isinstance(value, np.ndarray | np.generic) or hasattr(value, "__array__"):
        return np.asarray(value).copy()  # a copy: a tensor's array shares its memory
    return None


def differences(left: Any, right: Any) -> list[str]:
    """Where two checkpoint states differ (structure, types, numbers and arrays bit for bit);
    [] if equal. Strings are names, not results: two networks built in one process get other
    automatic names (Keras), so they are compared as present, not by value."""
    ours, theirs = dict(_leaves(left)), dict(_leaves(right))
    found = [f"{path}: only in one" for path in sorted(set(ours) ^ set(theirs))]
    for path in sorted(set(ours) & set(theirs)):
        a, b = _array(ours[path]), _array(theirs[path])
        if a is None or b is None:
            if not (a is None and b is None and type(ours[path]) is type(theirs[path])):
                found.append(
                    f"{path}: {type(ours[path]).__name__} vs {type(theirs[path]).__name__}"
                )
            elif ours[path] != theirs[path] and not isinstance(ours[path], str):
                found.append(f"{path}: {ours[path]!r} != {theirs[path]!r}")
        elif a.dtype != b.dtype or a.shape != b.shape or a.tobytes() != b.tobytes():
            found.append(f"{path}: arrays differ")
    return found


def network_weights(trainer: Any) -> Any:
    """A copy of the trainer's network weights as numpy arrays (``network_state()`` where the
    backend has it, else the network's ``state_dict()`` or ``get_weights()``)."""
    if hasattr(trainer, "network_state"):
        state = trainer.network_state()
    elif hasattr(trainer.module, "state_dict"):
        state = trainer.module.state_dict()
    else:
        state = trainer.module.get_weights()
    arrays = ((path, _array(leaf)) for path, leaf in _leaves(state))
    return [(path, array) for path, array in arrays if array is not None]


def _same_weights(left: Any, right: Any) -> bool:
    return len(left) == len(right) and all(
        lp == rp and a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
        for (lp, a), (rp, b) in zip(left, right, strict=True)
    )


def _finite(state: Any) -> list[str]:
    """Paths of the float arrays in ``state`` that hold a NaN or an Inf."""
    bad = []
    for path, leaf in _leaves(state):
        array = _array(leaf)
        if array is not None and array.dtype.kind == "f" and not np.isfinite(array).all():
            bad.append(path)
    return bad


def _files(folder: str | os.PathLike[str]) -> list[str]:
    return sorted(os.listdir(folder))


def _suffix(folder: str | os.PathLike[str]) -> str:
    """The backend's checkpoint suffix, read off ``checkpoint_last``'s file name."""
    (last,) = [name for name in _files(folder) if name.startswith("checkpoint_last")]
    return last[len("checkpoint_last") :]


def _takes(trainer_cls: type, argument: str) -> bool:
    return argument in inspect.signature(trainer_cls).parameters


def with_nan(batches: list[dict], bad: set[int]) -> list[dict]:
    """A copy of ``batches`` where the batches at the indices ``bad`` hold one NaN input: their
    loss is NaN, and an update from them would make every weight NaN."""
    out = []
    for index, batch in enumerate(batches):
        batch = {key: value.copy() for key, value in batch.items()}
        if index in bad:
            batch["data"][3, 7] = np.nan
        out.append(batch)
    return out


class EpochBatches:
    """Training data for ``trainer.train``: epoch ``e`` gets the batches ``per_epoch[e - 1]``."""

    def __init__(self, *per_epoch: list[dict]) -> None:
        self.per_epoch = per_epoch

    def get_batchgen(self, seed: int | None = None) -> list[dict]:
        return list(self.per_epoch[(seed or 1) - 1])


class _EpochEnd:
    """A callback that keeps each epoch's training metrics and the trainer's state at its end."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.metrics: dict[int, dict[str, float]] = {}
        self.states: dict[int, dict[str, Any]] = {}

    def at_epoch_begin(self, trainer: Any, **kwargs: Any) -> dict:
        return {}

    def at_epoch_end(self, trainer: Any, epoch: int, metrics_train: dict, **kwargs: Any) -> dict:
        self.metrics[epoch] = dict(metrics_train)
        path = trainer.save_state(str(self.folder / f"epoch_end_{id(self)}_{epoch}"), epoch=epoch)
        self.states[epoch] = type(trainer).load_state(path)
        return {}


class _Snapshot:
    """A callback that copies the network weights at the end of every epoch."""

    def __init__(self) -> None:
        self.weights: dict[int, Any] = {}

    def at_epoch_begin(self, trainer: Any, **kwargs: Any) -> dict:
        return {}

    def at_epoch_end(self, trainer: Any, epoch: int, **kwargs: Any) -> dict:
        self.weights[epoch] = network_weights(trainer)
        return {}


# -- fixtures --------------------------------------------------------------------------------


@dataclass
class _Data:
    train: Any
    valid: Any

    def managers(self, workers: int = 0) -> tuple[Any, Any]:
        from epochal.data import DataManager, RandomSampler

        return (
            DataManager(self.train, 64, workers, sampler_cls=RandomSampler, seed=0),
            DataManager(self.valid, 128, 0),
        )

    def batches(self) -> list[dict]:
        """Six batches of 32 digits (the last one of 20): one hand-made epoch."""
        batches = [
            self.train.get_batch(range(i * BATCH, (i + 1) * BATCH)) for i in range(N_BATCHES)
        ]
        batches[-1] = {key: value[:20] for key, value in batches[-1].items()}
        return batches


@pytest.fixture(scope="module")
def conformance_data() -> _Data:
    """Digits: 448 training and 256 validation samples of a stratified 80/20 split (seed 0);
    ``.managers(workers)``, ``.batches()``."""
    from epochal.plugins.registry import get_dataset

    train, valid = get_dataset("digits").train_test_split(
        test_size=0.2, random_state=0, stratify="label"
    )
    # 7 training batches of 64 and 2 validation batches per epoch: enough to learn, quick
    return _Data(train.get_subset(range(448)), valid.get_subset(range(256)))


@dataclass
class _Run:
    trainer: Any
    folder: Path


@pytest.fixture(scope="module")
def straight_run(
    epochal_backend: ConformanceBackend, conformance_data: _Data, tmp_path_factory
) -> _Run:
    """4 epochs uninterrupted, seed 1, a network that draws random numbers, ``save_freq=2``."""
    folder = tmp_path_factory.mktemp("straight")
    trainer = epochal_backend.make_trainer(folder, seed=1, network="random", save_freq=2)
    trainer.train(EPOCHS, *conformance_data.managers(), val_score_key="accuracy")
    return _Run(trainer, folder)


@pytest.fixture(scope="module")
def half_run(
    epochal_backend: ConformanceBackend, conformance_data: _Data, tmp_path_factory
) -> Path:
    """The straight run's first 2 epochs, as a run of its own: its run folder."""
    folder = tmp_path_factory.mktemp("half")
    first = epochal_backend.make_trainer(folder, seed=1, network="random", save_freq=2)
    first.train(EPOCHS // 2, *conformance_data.managers(), val_score_key="accuracy")
    return folder


@pytest.fixture(scope="module", params=[0, 2], ids=["0-workers", "2-workers"])
def resumed_run(
    epochal_backend: ConformanceBackend,
    conformance_data: _Data,
    half_run: Path,
    tmp_path_factory,
    request,
) -> _Run:
    """:func:`half_run` resumed by a new trainer (seed 99, so other initial weights and RNG
    states, as in a new process) from its ``checkpoint_last`` to epoch 4, with 0 or 2 data
    worker processes (the batches are the same)."""
    folder = tmp_path_factory.mktemp(f"resumed-{request.param}")
    shutil.copytree(half_run, folder, dirs_exist_ok=True)
    train, valid = conformance_data.managers(workers=request.param)
    resumed = epochal_backend.make_trainer(folder, seed=99, network="random", save_freq=2)
    resumed.update_state(str(folder / "checkpoint_last"))
    assert resumed.start_epoch == EPOCHS // 2 + 1
    resumed.train(EPOCHS, train, valid, val_score_key="accuracy")
    return _Run(resumed, folder)


# -- checkpoints and resume ------------------------------------------------------------------


def test_checkpoint_files_and_contents(straight_run: _Run) -> None:
    trainer, folder = straight_run.trainer, straight_run.folder
    suffix = _suffix(folder)
    assert _files(folder) == [
        f"checkpoint_best{suffix}",
        f"checkpoint_epoch_2{suffix}",
        f"checkpoint_epoch_4{suffix}",
        f"checkpoint_last{suffix}",
    ]  # and no temporary file left behind
    declared = getattr(type(trainer), "checkpoint_suffix", None)
    assert declared in (None, suffix)
    state = type(trainer).load_state(str(folder / "checkpoint_last"))  # the suffix left off
    assert state["epoch"] == EPOCHS and state["best_val_score"] == trainer.best_val_score
    assert state["best_epoch"] == trainer.best_epoch and "callbacks" in state
    best = type(trainer).load_state(str(folder / f"checkpoint_best{suffix}"))
    assert best["epoch"] == trainer.best_epoch


def test_the_same_seed_trains_the_same_checkpoint(straight_run: _Run, half_run: Path) -> None:
    load = type(straight_run.trainer).load_state
    ours = load(str(straight_run.folder / "checkpoint_epoch_2"))
    theirs = load(str(half_run / "checkpoint_epoch_2"))  # seed 1 for 2 epochs too
    assert differences(ours, theirs) == []  # weights, optimizers, RNG states: bit for bit


def test_resume_is_bitwise_equal_to_an_uninterrupted_run(
    straight_run: _Run, resumed_run: _Run
) -> None:
    load = type(straight_run.trainer).load_state
    last = [load(str(run.folder / "checkpoint_last")) for run in (straight_run, resumed_run)]
    assert differences(*last) == []  # weights, optimizers, RNG states: bit for bit
    straight, resumed = straight_run.trainer, resumed_run.trainer
    assert (resumed.best_epoch, resumed.best_val_score) == (
        straight.best_epoch,
        straight.best_val_score,
    )
    # both hold the best epoch's weights at the end (the resumed one from checkpoint_best)
    assert _same_weights(network_weights(resumed), network_weights(straight))


def test_a_lost_checkpoint_best_leaves_the_last_weights(
    epochal_backend: ConformanceBackend, straight_run: _Run, conformance_data: _Data, tmp_path: Path
) -> None:
    """A resumed run whose ``checkpoint_best`` is gone trains on and returns the weights it
    ended with (those of its ``checkpoint_last``), instead of failing at the end."""
    folder = tmp_path / "run"
    shutil.copytree(straight_run.folder, folder)
    (folder / f"checkpoint_best{_suffix(folder)}").unlink()
    trainer = epochal_backend.make_trainer(folder, seed=7, network="random", save_freq=2)
    trainer.update_state(str(folder / "checkpoint_last"))
    network = trainer.train(EPOCHS + 1, *conformance_data.managers(), val_score_key="accuracy")
    assert network is trainer.module
    last = epochal_backend.make_trainer(seed=8, network="random")
    last.update_state(str(folder / "checkpoint_last"))
    assert type(trainer).load_state(str(folder / "checkpoint_last"))["epoch"] == EPOCHS + 1
    assert _same_weights(network_weights(trainer), network_weights(last))


@pytest.mark.parametrize("where", ["run folder", "memory"])
def test_train_returns_the_best_epochs_weights(
    epochal_backend: ConformanceBackend, conformance_data: _Data, tmp_path: Path, where: str
) -> None:
    # a learning rate so high that the validation loss jumps around: the best is not the last
    snapshot = _Snapshot()
    trainer = epochal_backend.make_trainer(
        tmp_path if where == "run folder" else None,
        callbacks=[snapshot],
        **epochal_backend.unstable,
    )
    network = trainer.train(
        6, *conformance_data.managers(), val_score_key="CE", val_score_mode="lowest"
    )
    assert trainer.best_epoch is not None and trainer.best_epoch != 6, trainer.best_epoch
    assert network is trainer.module  # train returns the network, holding the best weights
    assert _same_weights(network_weights(trainer), snapshot.weights[trainer.best_epoch])


def test_weights_only_checkpoint_restores_the_network(
    epochal_backend: ConformanceBackend, straight_run: _Run, tmp_path: Path
) -> None:
    trainer = straight_run.trainer
    path = trainer.save_state(str(tmp_path / "weights"), epoch=3, weights_only=True)
    assert os.path.basename(path) == "weights" + _suffix(straight_run.folder)
    small = type(trainer).load_state(path)
    full = type(trainer).load_state(str(straight_run.folder / "checkpoint_last"))
    assert small["epoch"] == 3 and set(small) <= set(full)
    other = epochal_backend.make_trainer(seed=5, network="random")
    other.update_state(path)
    assert _same_weights(network_weights(other), network_weights(trainer))


def test_unreadable_checkpoints_are_refused_naming_the_file(
    straight_run: _Run, tmp_path: Path
) -> None:
    load = type(straight_run.trainer).load_state
    suffix = _suffix(straight_run.folder)
    data = (straight_run.folder / f"checkpoint_last{suffix}").read_bytes()
    (tmp_path / f"truncated{suffix}").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"truncated\S*' cannot be read|truncated or not"):
        load(str(tmp_path / "truncated"))
    notes = tmp_path / f"notes{suffix}"
    notes.write_text("these are my notes")
    with pytest.raises(CheckpointError, match=r"notes" + suffix.replace(".", r"\.") + "'?"):
        load(str(notes))
    with pytest.raises(CheckpointError, match="does not exist"):
        load(str(tmp_path / "missing"))


def test_another_architecture_is_refused_and_changes_nothing(
    epochal_backend: ConformanceBackend, straight_run: _Run
) -> None:
    other = epochal_backend.make_trainer(network="other")
    before = network_weights(other)
    with pytest.raises(CheckpointError, match="does not fit this network"):
        other.update_state(str(straight_run.folder / "checkpoint_last"))
    assert _same_weights(network_weights(other), before)


def test_a_refused_state_keeps_the_previous_checkpoint(
    epochal_backend: ConformanceBackend, tmp_path: Path
) -> None:
    class NotPlainData:
        def __init__(self) -> None:
            self.broken = False

        def at_epoch_begin(self, trainer: Any, **kwargs: Any) -> dict:
            return {}

        def at_epoch_end(self, trainer: Any, **kwargs: Any) -> dict:
            return {}

        def state_dict(self) -> dict:
            return {"callback": object() if self.broken else 1}

        def load_state_dict(self, state: dict) -> None:
            pass

    callback = NotPlainData()
    trainer = epochal_backend.make_trainer(callbacks=[callback])
    path = trainer.save_state(str(tmp_path / "checkpoint_last"), epoch=1)
    before = Path(path).read_bytes()
    callback.broken = True  # refused before the file is touched, naming the callback
    with pytest.raises(PluginError, match=r"'NotPlainData' .* at state\['callback'\]: object"):
        trainer.save_state(str(tmp_path / "checkpoint_last"), epoch=2)
    assert Path(path).read_bytes() == before
    assert _files(tmp_path) == [os.path.basename(path)]  # no temporary file left
    assert type(trainer).load_state(path)["epoch"] == 1


def test_resume_restores_the_numpy_and_python_random_states(
    epochal_backend: ConformanceBackend, tmp_path: Path
) -> None:
    if not epochal_backend.random_state:
        pytest.skip(f"{epochal_backend.name} draws no random numbers (random_state=False)")
    trainer = epochal_backend.make_trainer()
    path = trainer.save_state(str(tmp_path / "state"), epoch=1)
    drawn = (np.random.rand(3), random.random())
    trainer.update_state(path)
    again = (np.random.rand(3), random.random())
    assert np.array_equal(drawn[0], again[0]) and drawn[1] == again[1]


def test_predict_merges_batches_and_returns_labels_and_metrics(
    straight_run: _Run, conformance_data: _Data
) -> None:
    trainer = straight_run.trainer
    batches = conformance_data.batches()
    labels = np.concatenate([batch["label"] for batch in batches])
    predictions, returned, metrics = trainer.predict(batches, batch_size=64)
    assert np.shape(predictions) == (len(labels), 10)
    assert len(returned) == 1 and np.array_equal(np.asarray(returned[0]).reshape(-1), labels)
    assert {"CE", "accuracy"} <= set(metrics) and all(np.isfinite(list(metrics.values())))
    one_by_one = trainer.predict(batches)
    np.testing.assert_allclose(one_by_one[0], predictions, rtol=1e-5, atol=1e-6)
    assert one_by_one[2] == pytest.approx(metrics, rel=1e-5)  # weighted by batch size


# -- non-finite losses -----------------------------------------------------------------------


def _needs_on_nonfinite(backend: ConformanceBackend) -> type:
    trainer_cls = type(backend.make_trainer())
    if not _takes(trainer_cls, "on_nonfinite"):
        pytest.skip(f"{backend.name} has no on_nonfinite argument")
    return trainer_cls


def test_a_nonfinite_loss_raises_naming_epoch_batch_and_key(
    epochal_backend: ConformanceBackend, conformance_data: _Data, tmp_path: Path
) -> None:
    _needs_on_nonfinite(epochal_backend)
    clean = conformance_data.batches()
    for name, path in epochal_backend.paths.items():
        folder = tmp_path / name
        trainer = epochal_backend.make_trainer(folder, **path)
        assert trainer.on_nonfinite == "raise"  # the default
        data = EpochBatches(clean, with_nan(clean, {3, 5}))
        with pytest.raises(NonFiniteLossError) as caught:
            trainer.train(
                3, data, conformance_data.managers()[1], val_score_key="CE", val_score_mode="lowest"
            )
        message = str(caught.value)
        # "of 6": the count is known at the epoch's end; a fast path may stop at the batch
        where = rf"epoch 2, batch 4( of {N_BATCHES})? \(counting from 1\): loss 'CE' is nan"
        assert re.search(where, message), message
        assert "learning rate" in message and "skip_batch" in message
        assert isinstance(caught.value, EpochalError)
        assert isinstance(caught.value, FloatingPointError)
        suffix = _suffix(folder)
        assert _files(folder) == [
            f"checkpoint_best{suffix}",
            f"checkpoint_epoch_1{suffix}",
            f"checkpoint_last{suffix}",
        ]  # nothing of epoch 2
        for stem in ("checkpoint_last", "checkpoint_best"):
            state = type(trainer).load_state(str(folder / stem))
            assert state["epoch"] == 1 and _finite(state) == [], (name, stem)
        trainer.update_state(str(folder / "checkpoint_last"))  # and it loads back
        assert _finite(dict(network_weights(trainer))) == []


def test_skip_batch_skips_exactly_the_bad_batches(
    epochal_backend: ConformanceBackend, conformance_data: _Data, tmp_path: Path
) -> None:
    """Epoch 1 clean, epoch 2 with two bad batches (one the partial last): the same weights,
    optimizer state (moments, step counts) and means as a run that never saw them."""
    _needs_on_nonfinite(epochal_backend)
    clean = conformance_data.batches()
    bad = {1, N_BATCHES - 1}
    good = [batch for index, batch in enumerate(clean) if index not in bad]
    valid = conformance_data.managers()[1]
    for name, path in epochal_backend.paths.items():
        runs = {}
        for run, on_nonfinite, second in (
            ("skipping", "skip_batch", with_nan(clean, bad)),
            ("reference", "raise", good),
        ):
            callback = _EpochEnd(tmp_path)
            trainer = epochal_backend.make_trainer(
                callbacks=[callback], on_nonfinite=on_nonfinite, **path
            )  # the same seed: the same initial weights
            trainer.train(2, EpochBatches(clean, second), valid, val_score_key="CE")
            runs[run] = callback
        skipping, reference = runs["skipping"], runs["reference"]
        assert skipping.metrics[1].pop("nonfinite_batches") == 0, name  # a clean epoch: 0
        assert skipping.metrics[2].pop("nonfinite_batches") == len(bad), name
        for epoch in (1, 2):
            reference.metrics[epoch].pop("nonfinite_batches", None)
            # the means leave the NaNs out
            assert skipping.metrics[epoch] == pytest.approx(reference.metrics[epoch], rel=1e-6)
        # weights and optimizer state (Adam's moments and step count) as if never seen
        assert differences(skipping.states[2], reference.states[2]) == [], name


def test_an_epoch_of_only_bad_batches_raises_and_changes_nothing(
    epochal_backend: ConformanceBackend, conformance_data: _Data, tmp_path: Path
) -> None:
    trainer_cls = _needs_on_nonfinite(epochal_backend)
    all_bad = with_nan(conformance_data.batches(), set(range(N_BATCHES)))
    valid = conformance_data.managers()[1]
    for name, path in epochal_backend.paths.items():
        trainer = epochal_backend.make_trainer(on_nonfinite="skip_batch", **path)
        before = trainer_cls.load_state(trainer.save_state(str(tmp_path / f"{name}-before")))
        with pytest.raises(
            NonFiniteLossError, match=f"epoch 1: the loss was non-finite in all {N_BATCHES} "
        ):
            trainer.train(1, EpochBatches(all_bad), valid, val_score_key="CE")
        after = trainer_cls.load_state(trainer.save_state(str(tmp_path / f"{name}-after")))
        assert differences(before, after) == [], name  # weights; the optimizer never stepped


def test_on_nonfinite_is_checked(epochal_backend: ConformanceBackend) -> None:
    _needs_on_nonfinite(epochal_backend)
    with pytest.raises(ValueError, match=r"on_nonfinite must be one of \('raise', 'skip_batch'\)"):
        epochal_backend.make_trainer(on_nonfinite="skip")


# -- discovery -------------------------------------------------------------------------------


def test_discovered_through_its_entry_point_and_listed(epochal_backend: ConformanceBackend) -> None:
    from epochal.plugins.manager import build_plugin_manager
    from epochal.plugins.registry import trainers
    from epochal.testing import epochal_in_process

    manager = build_plugin_manager(environ={})  # entry points, as `epochal` finds plugins
    registry = trainers(manager)
    assert epochal_backend.name in registry, registry.names()
    entry = registry.entry(epochal_backend.name)
    assert registry.get(epochal_backend.name) is type(epochal_backend.make_trainer())
    if epochal_backend.distribution is not None:
        assert manager.plugin_distribution(entry.plugin) == epochal_backend.distribution
    assert not manager.broken
    code, out, err = epochal_in_process("plugins")
    assert code in (0, None), err
    listed = [line for line in out.splitlines() if line.startswith(f"{entry.plugin} ")]
    assert listed, out
