"""ProgressBar on real numpy-trainer runs: bar updates, summary lines, quiet off a terminal."""

from __future__ import annotations

import io
import os
import re
import select
import subprocess
import sys
import textwrap
import time

import pytest

from epochal.loop.callbacks import AbstractCallback
from epochal_callbacks.progress import ProgressBar, format_epoch_line

SUMMARY = re.compile(
    r"^epoch (\d+)/(\d+)  CE \d\.\d{4}  accuracy \d\.\d{4} \| "
    r"val_CE \d\.\d{4}  val_accuracy (\d\.\d{4})  \(\d+\.\d+ s\)(  \* best)?$"
)


class Recorder(AbstractCallback):
    """Keeps what the trainer reported each epoch."""

    def __init__(self) -> None:
        self.epochs: list[dict] = []

    def at_epoch_end(self, trainer, epoch=0, metrics_train=None, metrics_val=None, **kwargs):
        self.epochs.append(
            {"epoch": epoch, "train": metrics_train, "val": metrics_val, "best": kwargs["is_best"]}
        )


def _screens(text: str) -> list[str]:
    """What a terminal would show in turn: every redraw (\\r) and line (\\n)."""
    return [part.rstrip() for part in re.split(r"[\r\n]", text) if part.strip()]


def test_forced_bar_draws_batches_loss_and_one_summary_line_per_epoch(managers, make_trainer):
    train, valid = managers()
    stream = io.StringIO()
    recorder = Recorder()
    bar = ProgressBar(enabled=True, stream=stream, mininterval=0)
    trainer = make_trainer(callbacks=[recorder, bar])
    trainer.train(3, train, valid, val_score_key="accuracy")

    screens = _screens(stream.getvalue())
    summaries = [line for line in screens if SUMMARY.match(line)]
    assert len(summaries) == 3
    n = train.n_batches
    # Epoch 1 knows no total: a count and a rate; later epochs count against the last one's.
    assert f"epoch 1/3: {n}batch [" in stream.getvalue()
    for epoch in (2, 3):
        assert any(s.startswith(f"epoch {epoch}/3: 100%|") and f"| {n}/{n} [" in s for s in screens)
    # Every batch redrew (mininterval=0) and showed the batch loss: "CE 1.2345]".
    assert sum(bool(re.search(r"batch/s, CE \d\.\d{4}\]$", s)) for s in screens) == 3 * n

    best_so_far = -1.0
    for line, record in zip(summaries, recorder.epochs, strict=True):
        expected = format_epoch_line(record["epoch"], 3, record["train"], record["val"])
        assert line.startswith(expected + "  (")  # the same numbers, then the seconds
        val_accuracy = float(SUMMARY.match(line).group(3))
        is_best = line.endswith("* best")
        assert is_best == record["best"] == (val_accuracy > best_so_far)
        best_so_far = max(best_so_far, val_accuracy)
    assert summaries[0].endswith("* best")  # the first epoch always improves on nothing


def test_n_batches_and_resume_give_a_total_from_the_first_epoch(managers, make_trainer, tmp_path):
    train, valid = managers()
    n = train.n_batches
    given = io.StringIO()
    make_trainer(callbacks=[ProgressBar(enabled=True, stream=given, n_batches=n)]).train(
        1, train, valid
    )
    assert "epoch 1/1:   0%|" in given.getvalue() and f"| 0/{n} [" in given.getvalue()

    make_trainer(
        save_path=tmp_path, callbacks=[ProgressBar(enabled=True, stream=io.StringIO())]
    ).train(1, train, valid)
    resumed_stream = io.StringIO()
    resumed = make_trainer(
        save_path=tmp_path, callbacks=[ProgressBar(enabled=True, stream=resumed_stream)]
    )
    resumed.update_state(str(tmp_path / "checkpoint_last"))  # the count rides in the checkpoint
    resumed.train(2, train, valid)
    assert "epoch 2/2:   0%|" in resumed_stream.getvalue()
    assert f"| 0/{n} [" in resumed_stream.getvalue()


def test_auto_mode_is_silent_and_free_off_a_terminal(managers, make_trainer):
    train, valid = managers()
    stream = io.StringIO()  # not a tty, like a log file or CI
    bar = ProgressBar(stream=stream)
    trainer = make_trainer(callbacks=[bar])
    assert not bar.enabled
    assert trainer._batch_end_hook is None  # no per-batch call at all
    trainer.train(2, train, valid, val_score_key="accuracy")
    assert stream.getvalue() == ""

    off = io.StringIO()
    make_trainer(callbacks=[ProgressBar(enabled=False, stream=off)]).train(1, train, valid)
    assert off.getvalue() == ""


class _CountedLoss:
    """A loss value that counts how often it is read (as a device tensor's sync would)."""

    reads = 0

    def __float__(self) -> float:
        type(self).reads += 1
        return 0.5


@pytest.mark.parametrize(("mininterval", "expected_reads"), [(3600.0, 0), (0.0, 200)])
def test_loss_is_read_only_when_the_bar_redraws(mininterval, expected_reads):
    _CountedLoss.reads = 0
    stream = io.StringIO()
    bar = ProgressBar(enabled=True, stream=stream, mininterval=mininterval)
    bar.at_epoch_begin(None, epoch=1, num_epochs=1)
    for batch_nr in range(200):
        bar.at_batch_end(
            None, epoch=1, batch_nr=batch_nr, losses={"CE": _CountedLoss()}, metrics={}
        )
    bar.at_epoch_end(None, epoch=1, num_epochs=1, metrics_train={"CE": 0.5}, metrics_val={})
    assert _CountedLoss.reads == expected_reads
    assert re.fullmatch(r"epoch 1/1  CE 0\.5000  \(0\.\d\d s\)", _screens(stream.getvalue())[-1])


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="n_batches must be a positive integer"):
        ProgressBar(n_batches=0)
    with pytest.raises(ValueError, match="mininterval must be >= 0"):
        ProgressBar(mininterval=-1)


def test_summary_line_format():
    line = format_epoch_line(
        3,
        10,
        {"CE": 0.41234, "accuracy": 0.9101},
        {"val_CE": 0.43, "val_accuracy": 0.905},
        2.14,
        True,
    )
    assert line == (
        "epoch 3/10  CE 0.4123  accuracy 0.9101 | val_CE 0.4300  val_accuracy 0.9050"
        "  (2.14 s)  * best"
    )
    assert format_epoch_line(1, 1, {"loss": 1.5e-6}, {}) == "epoch 1/1  loss 1.500e-06"


TRAINING_SCRIPT = textwrap.dedent(
    """
    import numpy as np
    from epochal_callbacks.progress import ProgressBar
    from epochal_numpy.network import SoftmaxRegression
    from epochal_numpy.trainer import NumpyNetworkTrainer

    class Batches:
        def get_batchgen(self, seed=None):
            rng = np.random.default_rng(seed)
            return [
                {"data": rng.normal(size=(8, 4)), "label": rng.integers(0, 3, size=8)}
                for _ in range(20)
            ]

    bar = ProgressBar(mininterval=0)  # auto: draws only because stdout is a terminal
    trainer = NumpyNetworkTrainer(SoftmaxRegression(4, 3, seed=0), lr=0.1, callbacks=[bar])
    trainer.train(2, Batches(), Batches(), val_score_key="accuracy")
    print("done, enabled =", bar.enabled)
    """
)


def _run_in_pty(script: str, rows: int, columns: int, timeout: float = 60.0) -> str:
    import fcntl
    import struct
    import termios

    controller, terminal = os.openpty()
    # A bare pty reports 0 x 0; a real terminal has a size. Both must draw.
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdin=terminal, stdout=terminal, stderr=terminal
    )
    os.close(terminal)
    output = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 0.5)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
    finally:
        os.close(controller)
        if process.poll() is None:
            process.kill()
        process.wait()
    assert process.returncode == 0, output.decode(errors="replace")
    return output.decode(errors="replace")


@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")
@pytest.mark.parametrize(("rows", "columns"), [(24, 100), (0, 0), (0, 100)])
def test_auto_mode_draws_a_bar_on_a_real_terminal(rows, columns):
    text = _run_in_pty(TRAINING_SCRIPT, rows, columns)
    screens = _screens(text)
    assert "done, enabled = True" in screens
    assert any(s.startswith("epoch 1/2: 20batch [") for s in screens)  # epoch 1: a count
    assert any(s.startswith("epoch 2/2: 100%|") and "| 20/20 [" in s for s in screens)
    summaries = [s for s in screens if re.match(r"^epoch \d/2  CE .* \| val_CE ", s)]
    assert [s.split("  ")[0] for s in summaries] == ["epoch 1/2", "epoch 2/2"]
    assert summaries[0].endswith("* best")


def test_torch_loss_tensors_are_shown(torch_trainer, managers):
    train, valid = managers()
    stream = io.StringIO()
    bar = ProgressBar(enabled=True, stream=stream, mininterval=0)
    torch_trainer(callbacks=[bar]).train(1, train, valid)
    shown = [s for s in _screens(stream.getvalue()) if re.search(r", CE \d\.\d{4}\]$", s)]
    assert len(shown) == train.n_batches
