"""Files in a run folder are never followed through a link, waited on, or written outside it.

A run folder may come from someone else. A symbolic link named ``.epochal.lock`` or
``metrics.csv`` would make epochal truncate the file it points to or copy a secret into the
run; a FIFO named ``checkpoint_last.pt`` would block ``resume`` and ``predict`` forever; a
callback's ``file_name = "../../x.csv"`` would write outside the run folder, and one that
cannot be written would fail only after the first epoch. Each is refused with exit 2 and one
line naming the file (or the callback's key), before anything is read or written.

One 2-epoch run is trained once; each CLI case works on its own copy. The in-process cases
drive ``epochal.runs.files``, ``epochal.runs.folder`` and the callbacks directly.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
import types
from pathlib import Path

import pytest

from epochal.errors import ConfigError
from epochal.runs.files import atomic_write, check_run_file, open_run_file
from epochal.runs.folder import LOCK_FILE, checkpoint_file, read_summary, run_lock
from epochal.testing import run_epochal

pytest.importorskip("torch")

QUICK = ["--set", "callbacks.tensorboard=false", "--set", "callbacks.learning_curves=false"]


def epochal(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    # A FIFO that is waited on would hang the command: the timeout turns that into a failure.
    return run_epochal(*args, cwd=cwd, timeout=180)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """Exit 2 (bad input), one ``epochal: ...`` line, no traceback, no epoch trained."""
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert result.returncode == 2, output
    lines = [line for line in result.stderr.splitlines() if line.startswith("epochal: ")]
    assert len(lines) == 1, result.stderr
    assert "epoch 1/" not in result.stdout and "epoch 3/" not in result.stdout, result.stdout
    return lines[0]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A finished 2-epoch torch run (checkpoints, metrics.csv, summary.json, the lock file)."""
    root = tmp_path_factory.mktemp("trained")
    result = epochal("train", "--epochs", "2", *QUICK, "--run-dir", "run", cwd=root)
    assert result.returncode == 0, result.stderr
    return root / "run"


def copy_run(trained_run: Path, tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(trained_run, target, symlinks=True)
    return target


def every_file_in(folder: Path) -> bytes:
    """The bytes of every regular file under ``folder`` (links not followed)."""
    found = b""
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            found += path.read_bytes()
    return found


# -- the command line ----------------------------------------------------------------------


@pytest.mark.slow
def test_a_linked_lock_file_is_refused_and_its_target_kept(trained_run, tmp_path):
    run = copy_run(trained_run, tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (run / LOCK_FILE).unlink()
    (run / LOCK_FILE).symlink_to(victim)

    line = one_error_line(epochal("resume", "run", "--epochs", "3", cwd=tmp_path))
    assert f"run/{LOCK_FILE} is a symbolic link" in line, line
    assert "does not follow links in a run folder" in line, line
    assert victim.read_text() == "precious\n"  # not truncated, no pid written into it
    assert (run / LOCK_FILE).is_symlink()


@pytest.mark.slow
def test_a_linked_metrics_csv_is_refused_and_the_secret_not_copied(trained_run, tmp_path):
    run = copy_run(trained_run, tmp_path)
    secret = tmp_path / "secret.csv"
    secret.write_text("epoch,password\n1,hunter2\n")
    (run / "metrics.csv").unlink()
    (run / "metrics.csv").symlink_to(secret)
    last = (run / "checkpoint_last.pt").read_bytes()

    line = one_error_line(epochal("resume", "run", "--epochs", "3", cwd=tmp_path))
    assert "run/metrics.csv is a symbolic link" in line, line
    assert b"hunter2" not in every_file_in(run)  # nothing read through the link was written
    assert secret.read_text() == "epoch,password\n1,hunter2\n"
    assert (run / "metrics.csv").is_symlink()  # nor was the link replaced
    assert (run / "checkpoint_last.pt").read_bytes() == last


COMMANDS = {
    "resume": ["resume", "run", "--epochs", "3"],
    "predict": ["predict", "run", "--data", "digits", "--out", "p.csv", "--checkpoint"],
}


@pytest.mark.slow
@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("stem", ["checkpoint_last", "checkpoint_best"])
def test_a_fifo_as_a_checkpoint_is_refused_at_once(trained_run, tmp_path, stem, command):
    """``torch.load`` of a FIFO would wait for a writer forever; the command exits 2."""
    run = copy_run(trained_run, tmp_path)
    (run / f"{stem}.pt").unlink()
    os.mkfifo(run / f"{stem}.pt")
    args = COMMANDS[command] + ([stem.removeprefix("checkpoint_")] if command == "predict" else [])

    started = time.monotonic()
    line = one_error_line(epochal(*args, cwd=tmp_path))
    assert f"run/{stem}.pt is a FIFO (named pipe), not a regular file" in line, line
    assert time.monotonic() - started < 120
    assert not (tmp_path / "p.csv").exists()


CALLBACK_PATHS = {
    "a file name that leaves the run folder": (
        'callbacks.csv_logger.file_name="../../x.csv"',
        "callbacks.csv_logger: CSVLogger: file_name = '../../x.csv' leaves the run folder",
    ),
    "a log_dir under /proc": (
        'callbacks.tensorboard.log_dir="/proc/self/x"',
        "callbacks.tensorboard: log_dir /proc/self/x",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CALLBACK_PATHS))
def test_a_bad_callback_path_is_refused_before_training(tmp_path, case):
    setting, message = CALLBACK_PATHS[case]
    result = epochal("train", "--epochs", "1", "--run-dir", "run", "--set", setting, cwd=tmp_path)
    line = one_error_line(result)
    assert message in line, line
    assert not (tmp_path / "run").exists()  # refused before the run folder was made
    assert not (tmp_path.parent / "x.csv").exists()


# -- in process ------------------------------------------------------------------------------


@pytest.mark.timeout(30)  # a FIFO that is waited on would hang here
def test_open_run_file_refuses_what_is_not_a_regular_file(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("secret\n")
    cases = {
        "link": "a symbolic link",
        "dangling": "a symbolic link",
        "fifo": "a FIFO (named pipe)",
        "folder": "a folder",
        "socket": "a socket",
    }
    (tmp_path / "link").symlink_to(secret)
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "folder").mkdir()
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(tmp_path / "socket"))
        for name, kind in cases.items():
            path = tmp_path / name
            for mode, create in (("rb", False), ("r", False), ("r+", True)):
                with pytest.raises(ConfigError, match=re.escape(f"{path} is {kind}")):
                    open_run_file(path, mode, create=create)
            with pytest.raises(ConfigError, match=re.escape(f"{path} is {kind}")):
                check_run_file(path)
    assert secret.read_text() == "secret\n"
    assert not (tmp_path / "nowhere").exists()  # a dangling link is not created through
    with open_run_file(secret, "r") as handle:  # a regular file opens as usual
        assert handle.read() == "secret\n"
    with pytest.raises(FileNotFoundError):
        open_run_file(tmp_path / "missing")
    check_run_file(tmp_path / "missing")  # missing is fine


def test_the_lock_is_never_taken_through_a_link_or_a_hard_link(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_FILE).symlink_to(victim)
    with pytest.raises(ConfigError, match="is a symbolic link"), run_lock(str(run)):
        pass
    (run / LOCK_FILE).unlink()
    os.link(victim, run / LOCK_FILE)
    hard_link = r"is a hard link \(one file with 2 names\)"
    with pytest.raises(ConfigError, match=hard_link), run_lock(str(run)):
        pass
    assert victim.read_text() == "precious\n"
    (run / LOCK_FILE).unlink()
    with run_lock(str(run)):  # a plain lock file is made and held
        assert f"epochal process {os.getpid()}" in (run / LOCK_FILE).read_text()


def test_run_folder_readers_refuse_links(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    secret = tmp_path / "secret.json"
    secret.write_text('{"started": "secret"}')
    (run / "summary.json").symlink_to(secret)
    with pytest.raises(ConfigError, match=r"summary\.json is a symbolic link"):
        read_summary(str(run))
    (run / "checkpoint_last.pt").symlink_to(secret)
    with pytest.raises(ConfigError, match=r"checkpoint_last\.pt is a symbolic link"):
        checkpoint_file(str(run), "checkpoint_last")
    (run / "summary.json").unlink()
    (run / "summary.json").write_text("[1, 2]")  # JSON, but not a summary
    assert read_summary(str(run)) == {}
    from epochal.cli.commands import _run_dir_config

    (run / "config.toml").symlink_to(tmp_path / "elsewhere.toml")  # dangling, too
    with pytest.raises(ConfigError, match=r"config\.toml is a symbolic link"):
        _run_dir_config(str(run))
    (run / "config.toml").unlink()
    os.mkfifo(run / "config.toml")
    with pytest.raises(ConfigError, match=r"config\.toml is a FIFO"):
        _run_dir_config(str(run))


def test_atomic_write_replaces_a_link_and_never_writes_through_it(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    victim.chmod(0o600)
    link = tmp_path / "metrics.csv"
    link.symlink_to(victim)
    with atomic_write(link, "w") as handle:
        handle.write("epoch\n1\n")
    assert victim.read_text() == "precious\n"
    assert not link.is_symlink() and link.read_text() == "epoch\n1\n"
    umask = os.umask(0o022)
    os.umask(umask)
    assert link.stat().st_mode & 0o777 == 0o666 & ~umask  # not the victim's 0o600


def test_callback_files_inside_the_run_folder_are_not_followed(tmp_path):
    """At training begin: a folder on the way that is a link, or a file that is one, is
    refused; relative paths stay inside the run folder; absolute ones are used as given."""
    from epochal_callbacks.csv_logger import CSVLogger
    from epochal_callbacks.plots import LearningCurvePlot
    from epochal_callbacks.tensorboard import TensorBoardLogger

    run = tmp_path / "run"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run.mkdir()
    trainer = types.SimpleNamespace(save_path=str(run), start_epoch=1)

    (run / "tensorboard").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(ConfigError, match=r"run/tensorboard is a symbolic link"):
        TensorBoardLogger().at_training_begin(trainer)
    (run / "logs").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(ConfigError, match=r"run/logs is a symbolic link"):
        CSVLogger(path="logs").at_training_begin(trainer)
    (run / "curves.png").symlink_to(elsewhere / "x.png")
    with pytest.raises(ConfigError, match=r"run/curves\.png is a symbolic link"):
        LearningCurvePlot().at_training_begin(trainer)
    assert not list(elsewhere.iterdir())

    logger = CSVLogger(path="csv", file_name="sub/metrics.csv")  # inside: folders are made
    logger.at_training_begin(trainer)
    assert logger.file == str(run / "csv" / "sub" / "metrics.csv")
    assert (run / "csv" / "sub").is_dir()
    absolute = CSVLogger(file_name=str(elsewhere / "m.csv"))  # outside, on purpose
    absolute.at_training_begin(trainer)
    assert absolute.file == str(elsewhere / "m.csv")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda c: c.CSVLogger(file_name="../../x.csv"), "leaves the run folder"),
        (lambda c: c.CSVLogger(path="a/../.."), "leaves the run folder"),
        (lambda c: c.CSVLogger(file_name="config.toml"), "would replace epochal's own"),
        (lambda c: c.CSVLogger(file_name="checkpoint_best.pt"), "would replace epochal's own"),
        (lambda c: c.CSVLogger(path="/proc/self"), r"path /proc/self .*is under /proc"),
        (lambda c: c.LearningCurvePlot(file_name="/proc/self/x.png"), "its folder /proc/self"),
        (lambda c: c.LearningCurvePlot(path="../plots"), "leaves the run folder"),
        (lambda c: c.TensorBoardLogger(log_dir="/sys/x"), "is under /sys"),
        (lambda c: c.TensorBoardLogger(log_dir=".."), "leaves the run folder"),
    ],
)
def test_a_bad_callback_path_is_refused_when_the_callback_is_made(make, message):
    import epochal_callbacks.csv_logger
    import epochal_callbacks.plots
    import epochal_callbacks.tensorboard

    callbacks = types.SimpleNamespace(
        CSVLogger=epochal_callbacks.csv_logger.CSVLogger,
        LearningCurvePlot=epochal_callbacks.plots.LearningCurvePlot,
        TensorBoardLogger=epochal_callbacks.tensorboard.TensorBoardLogger,
    )
    with pytest.raises(ConfigError, match=message):
        make(callbacks)
