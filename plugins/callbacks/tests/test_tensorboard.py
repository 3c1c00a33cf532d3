"""TensorBoardLogger on real runs, read back with TensorBoard's own event reader."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from epochal.loop.callbacks import AbstractCallback
from epochal_callbacks.tensorboard import BATCH_RUN, TensorBoardLogger


class Recorder(AbstractCallback):
    """Keeps each epoch's metrics and each batch's losses and metrics."""

    def __init__(self) -> None:
        self.epochs: dict[int, dict[str, float]] = {}
        self.batches: list[dict[str, float]] = []

    def at_epoch_end(self, trainer, epoch=0, metrics_train=None, metrics_val=None, **kwargs):
        self.epochs[epoch] = {**metrics_train, **metrics_val}

    def at_batch_end(self, trainer, losses=None, metrics=None, **kwargs):
        self.batches.append({**losses, **metrics})


def read_scalars(folder) -> dict[str, list[tuple[int, float]]]:
    """Every scalar TensorBoard would show for the run in ``folder``: tag -> [(step, value)].

    Read with the accumulator TensorBoard's server uses (``--load_fast=false``): it applies
    the restart markers, as the Rust data server's per-series step preemption does.
    """
    from tensorboard.backend.event_processing.plugin_event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    accumulator = EventAccumulator(str(folder), size_guidance={"tensors": 0})
    accumulator.Reload()
    return {
        tag: [
            (event.step, float(tensor_util.make_ndarray(event.tensor_proto)))
            for event in accumulator.Tensors(tag)
        ]
        for tag in accumulator.Tags()["tensors"]
    }


def event_files(folder) -> list[str]:
    return sorted(name for name in os.listdir(folder) if "tfevents" in name)


def test_epoch_scalars_equal_the_metrics(managers, make_trainer, tmp_path):
    train, valid = managers()
    recorder = Recorder()
    trainer = make_trainer(save_path=tmp_path, callbacks=[recorder, TensorBoardLogger()])
    trainer.train(3, train, valid, val_score_key="accuracy")

    folder = tmp_path / "tensorboard"
    assert len(event_files(folder)) == 1 and not (folder / BATCH_RUN).exists()
    scalars = read_scalars(folder)
    metric_tags = {"CE", "accuracy", "val_CE", "val_accuracy"}
    assert set(scalars) == metric_tags | {"lr", "epoch_seconds"}
    for tag in metric_tags:
        assert [step for step, _ in scalars[tag]] == [1, 2, 3]
        expected = [recorder.epochs[epoch][tag] for epoch in (1, 2, 3)]
        np.testing.assert_allclose([value for _, value in scalars[tag]], expected, rtol=1e-6)
    assert scalars["lr"] == [(1, 1.0), (2, 1.0), (3, 1.0)]
    assert all(0 < seconds < 60 for _, seconds in scalars["epoch_seconds"])


def test_resume_continues_the_steps_and_replaces_epochs_trained_again(
    managers, make_trainer, tmp_path
):
    train, valid = managers()
    make_trainer(save_path=tmp_path, callbacks=[TensorBoardLogger(per_batch=True)]).train(
        3, train, valid
    )
    # Resume from epoch 2, as after a crash between epoch 3's logging and its checkpoint.
    # Another learning rate makes the new epoch 3 differ from the stale one.
    # Callback state is keyed by registration order: the logger stays first, as before.
    recorder = Recorder()
    resumed = make_trainer(
        save_path=tmp_path, lr=0.5, callbacks=[TensorBoardLogger(per_batch=True), recorder]
    )
    resumed.update_state(str(tmp_path / "checkpoint_epoch_2"))
    resumed.train(4, train, valid)

    folder = tmp_path / "tensorboard"
    assert len(event_files(folder)) == 2  # one file per training session
    scalars = read_scalars(folder)
    for tag in ("CE", "accuracy", "val_CE", "val_accuracy"):
        steps = [step for step, _ in scalars[tag]]
        assert steps == [1, 2, 3, 4]  # continuous, each step once
        for step, value in scalars[tag][2:]:
            assert value == pytest.approx(recorder.epochs[step][tag], rel=1e-6)  # the new run's
    assert scalars["lr"] == [(1, 1.0), (2, 1.0), (3, 0.5), (4, 0.5)]

    # The new file itself never steps backwards: it starts where the resumed run starts.
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    newest = os.path.join(folder, event_files(folder)[-1])
    events = list(EventFileLoader(newest).Load())
    assert events[1].session_log.status == events[1].session_log.START and events[1].step == 3
    assert sorted({e.step for e in events if e.HasField("summary")}) == [3, 4]

    # Per-batch steps count batches across sessions: 2 epochs from the checkpoint, then 2 more.
    n = train.n_batches
    batch_scalars = read_scalars(folder / BATCH_RUN)
    assert set(batch_scalars) == {"batch/CE", "batch/accuracy"}
    assert [step for step, _ in batch_scalars["batch/CE"]] == list(range(1, 4 * n + 1))
    resumed_values = [value for step, value in batch_scalars["batch/CE"] if step > 2 * n]
    np.testing.assert_allclose(resumed_values, [b["CE"] for b in recorder.batches], rtol=1e-6)


def test_every_nth_batch_and_custom_folder(managers, make_trainer, tmp_path):
    train, _ = managers()
    logger = TensorBoardLogger(log_dir=tmp_path / "tb", per_batch=5)
    make_trainer(callbacks=[logger]).train(2, train)  # no save_path needed with a log_dir
    assert logger.folder == str(tmp_path / "tb")
    steps = [step for step, _ in read_scalars(tmp_path / "tb" / BATCH_RUN)["batch/CE"]]
    assert steps == list(range(5, 2 * train.n_batches + 1, 5))
    assert set(read_scalars(tmp_path / "tb")) == {"CE", "accuracy", "lr", "epoch_seconds"}


def test_clear_errors(make_trainer, managers):
    with pytest.raises(ValueError, match="per_batch must be False, True or a positive number"):
        TensorBoardLogger(per_batch=-1)
    train, _ = managers()
    with pytest.raises(ValueError, match="TensorBoardLogger needs a folder: give it a path"):
        make_trainer(callbacks=[TensorBoardLogger()]).train(1, train)


def test_writing_does_not_import_tensorflow(tmp_path):
    """TensorBoard's own DirectoryOutput would import all of TensorFlow (tf.io.gfile)."""
    script = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        from epochal_callbacks.tensorboard import TensorBoardLogger
        from epochal_numpy.network import SoftmaxRegression
        from epochal_numpy.trainer import NumpyNetworkTrainer

        class Batches:
            def get_batchgen(self, seed=None):
                rng = np.random.default_rng(seed)
                return [{{"data": rng.normal(size=(8, 4)), "label": rng.integers(0, 3, size=8)}}]

        logger = TensorBoardLogger({str(tmp_path)!r}, per_batch=True)
        NumpyNetworkTrainer(SoftmaxRegression(4, 3), callbacks=[logger]).train(2, Batches())
        assert "tensorflow" not in sys.modules, "tensorflow was imported"
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    assert [step for step, _ in read_scalars(tmp_path)["CE"]] == [1, 2]


def test_torch_tensors_and_several_optimizers(torch_trainer, managers, tmp_path):
    """Batch losses arrive as torch tensors; each optimizer's rate gets its own tag."""
    train, valid = managers()
    trainer = torch_trainer(
        save_path=tmp_path, callbacks=[TensorBoardLogger(per_batch=True)], split_optimizers=True
    )
    trainer.train(2, train, valid)
    scalars = read_scalars(tmp_path / "tensorboard")
    assert scalars["lr/weight"] == [(1, pytest.approx(0.1)), (2, pytest.approx(0.1))]
    assert scalars["lr/bias"] == [(1, pytest.approx(0.2)), (2, pytest.approx(0.2))]
    batches = read_scalars(tmp_path / "tensorboard" / BATCH_RUN)["batch/CE"]
    assert len(batches) == 2 * train.n_batches and all(np.isfinite(v) for _, v in batches)
