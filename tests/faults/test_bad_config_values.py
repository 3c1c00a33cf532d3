"""Config values that exited 1 or blamed the wrong key (issue 13): each now exits 2 with one
line that names the key (or file) and what is allowed, before a run folder is made.

Layer sizes the model refuses (``hidden = [-1]``, ``[2**63-1]``, ``[10**9]``: refused before
anything is allocated), NUL bytes, output folders that cannot hold a run (a file on the way,
``/proc``, ``/sys``, a read-only mount, a folder this user cannot write), nesting thousands of
levels deep (a bare ``RecursionError`` before), seeds outside ``0 .. 2**32 - 1`` (blamed on
``data.val_split`` before) and ``--set KEY VALUE`` with a space. Most run through
``epochal.cli.main`` in this process; a few as real ``epochal`` processes.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from epochal.errors import ConfigError
from epochal.job.config import load_config
from epochal.job.limits import MAX_PARAMETERS, check_output_dir, cnn_channels, mlp_widths
from epochal.runs.experiment import Experiment
from epochal.testing import epochal_command, epochal_in_process, run_epochal, user_env

torch = pytest.importorskip("torch")

DEEP = 5000
QUICK = ["--epochs", "1", "--set", "callbacks.tensorboard=false",
         "--set", "callbacks.learning_curves=false"]  # fmt: skip


def one_error(code: Any, stderr: str) -> str:
    """The one ``epochal: error:`` line of an exit-2 run (and no traceback)."""
    assert code == 2, f"exit {code}\n{stderr}"
    errors = [line for line in stderr.splitlines() if line.startswith("epochal: error:")]
    assert len(errors) == 1, stderr
    assert "Traceback" not in stderr, stderr
    return errors[0]


def nested(opening: str, closing: str, depth: int, inner: str = "") -> str:
    return opening * depth + inner + closing * depth


# -- in this process: exit 2, one line naming the key ------------------------------------------

FILE_IN_THE_WAY = "a_file"  # created by the test; a run folder cannot go under it

CASES = {
    "hidden=[-1]": (
        ["--set", "model.hidden=[-1]"],
        ["model.hidden: MLP(", "hidden[0] must be a positive integer", "got -1"],
    ),
    "hidden=[2**63-1]": (
        ["--set", f"model.hidden=[{2**63 - 1}]"],
        ["model.hidden: MLP(", "parameters", f"at most {MAX_PARAMETERS:,}"],
    ),
    "hidden=[10**9]": (
        ["--set", "model.hidden=[1000000000]"],
        ["model.hidden: MLP(", "75,000,000,010 parameters", "(2**30)"],
    ),
    "in_features=0": (["--set", "model.in_features=0"], ["model.in_features", "positive"]),
    "dropout=1.5": (["--set", "model.dropout=1.5"], ["model.dropout: MLP(", "1.5"]),
    "NUL in name": (
        ["--set", 'experiment.name="run\\u0000x"'],
        ["experiment.name = 'run\\x00x' contains a NUL byte"],
    ),
    "NUL in a nested value": (
        ["--set", 'data.dataset_params.path="a\\u0000"'],
        ["data.dataset_params.path = 'a\\x00' contains a NUL byte"],
    ),
    "save_path is a file": (
        ["--set", f"experiment.save_path={FILE_IN_THE_WAY}"],
        [f"experiment.save_path {FILE_IN_THE_WAY} is a file, not a folder"],
    ),
    "save_path under a file": (
        ["--set", f"experiment.save_path={FILE_IN_THE_WAY}/runs"],
        [f"experiment.save_path {FILE_IN_THE_WAY}/runs: ", "is a file, not a folder"],
    ),
    "save_path /proc": (
        ["--set", "experiment.save_path=/proc"],
        ["experiment.save_path /proc is under /proc, a system file system"],
    ),
    "run-dir under /proc/self": (
        ["--run-dir", "/proc/self/run"],
        ["--run-dir /proc/self/run (/proc/", "is under /proc"],
    ),
    "run-dir under /sys": (["--run-dir", "/sys/run"], ["--run-dir /sys/run is under /sys"]),
    "run-dir under /dev": (["--run-dir", "/dev/run"], ["--run-dir /dev/run is under /dev"]),
    "deep list by --set": (
        ["--set", "model.hidden=" + nested("[", "]", DEEP)],
        ["--set model.hidden: the value nests lists or inline tables far more than 32 deep"],
    ),
    "deep inline table by --set": (
        ["--set", "model.x=" + nested("{a=", "}", DEEP, "1")],
        ["--set model.x: the value nests"],
    ),
    "deep dotted key by --set": (
        ["--set", "model" + ".a" * DEEP + "=1"],
        ["model.a.a.a", "nests tables or lists more than 32 deep"],
    ),
    "40 deep by --set": (
        ["--set", "model.hidden=" + nested("[", "]", 40)],
        ["model.hidden[0][0]", "nests tables or lists more than 32 deep"],
    ),
    "seed -1": (["--seed", "-1"], ["experiment.seed (--seed) must be an integer from 0 to"]),
    "seed 2**63-1": (
        ["--seed", str(2**63 - 1)],
        ["experiment.seed (--seed)", "4294967295", str(2**63 - 1)],
    ),
    "seed of 23 digits": (
        ["--seed", "1" * 23],
        ["experiment.seed (--seed)", "4294967295", "1" * 23],
    ),
    "seed by --set": (["--set", "experiment.seed=-5"], ["experiment.seed", "got -5"]),
    "--set KEY VALUE": (
        ["--set", "training.optimizer_params.lr", "0.01"],
        ["write the value after an = sign", "--set training.optimizer_params.lr=0.01"],
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_value_exits_2_with_one_line_naming_the_key(name, tmp_path, monkeypatch):
    args, expected = CASES[name]
    monkeypatch.chdir(tmp_path)
    (tmp_path / FILE_IN_THE_WAY).write_text("not a folder\n")
    started = time.perf_counter()
    code, _, stderr = epochal_in_process("train", *QUICK, *args)
    seconds = time.perf_counter() - started
    line = one_error(code, stderr)
    for text in expected:
        assert text in line, line
    assert "val_split" not in line  # seeds were blamed on data.val_split
    assert sorted(os.listdir(tmp_path)) == [FILE_IN_THE_WAY]  # no run folder, nothing written
    assert seconds < 60, f"{name}: {seconds:.1f} s"  # refused at once: nothing allocated


def _job(tmp_path: Path, text: str) -> str:
    path = tmp_path / "job.toml"
    path.write_text(textwrap.dedent(text))
    return str(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[experiment]\nmodel = "mlp"\nname = "a\\u0000b"\n',
            "experiment.name = 'a\\x00b' contains a NUL byte",
        ),
        ('[model]\n"in\\u0000" = 1\n', "the key 'model.in\\x00' contains a NUL byte"),
        (
            "[experiment]\nseed = 1  # [[[\n[model]\nhidden = " + nested("[", "]", DEEP) + "\n",
            "job.toml line 4: the value of model.hidden nests lists or inline tables far more",
        ),
        (
            "[model.deep]\nx = { y = " + nested("{a=", "}", DEEP, "1") + " }\n",
            "job.toml line 2: the value of model.deep.x nests",
        ),
    ],
    ids=["NUL value", "NUL key", "deep list", "deep inline table"],
)
def test_bad_values_in_a_toml_file_name_the_key(tmp_path, text, expected):
    code, _, stderr = epochal_in_process("train", _job(tmp_path, text), *QUICK)
    assert expected in one_error(code, stderr)


def test_seed_range_is_one_rule_for_configs_and_the_api(tmp_path):
    assert load_config(None, ["experiment.seed=4294967295"])["experiment"]["seed"] == 2**32 - 1
    assert load_config(None, ["experiment.seed=0"])["experiment"]["seed"] == 0
    for bad in ("-1", str(2**32), "true"):
        with pytest.raises(ConfigError, match=r"experiment\.seed"):
            load_config(None, [f"experiment.seed={bad}"])
    params = {"model": {"in_features": 64}, "training": {"num_epochs": 1}}
    for bad in (-1, 2**32, 10**22, True, 1.5):
        with pytest.raises(ConfigError, match=r"seed must be an integer from 0 to 4294967295"):
            Experiment(params, "mlp", seed=bad)
    experiment = Experiment.from_config(None, ["model.hidden=[4]"])
    with pytest.raises(ConfigError, match="random_seed must be"):
        experiment.kfold(random_seed=-1, run_dir=tmp_path / "k")
    assert not (tmp_path / "k").exists()


def test_api_model_errors_name_the_model_keys_before_a_run_folder(tmp_path):
    config = load_config(None, ["model.hidden=[16, 0]", "training.num_epochs=1"])
    config["experiment"]["save_path"] = str(tmp_path / "runs")
    with pytest.raises(ConfigError) as info:
        Experiment.from_config(config).run()
    assert str(info.value).startswith("model.hidden: MLP(in_features=64, hidden=[16, 0]")
    assert "hidden[1] must be a positive integer (a layer size), got 0" in str(info.value)
    assert not (tmp_path / "runs").exists()
    deep: list = []
    for _ in range(DEEP):  # a dict from the API: refused before deepcopy would recurse
        deep = [deep]
    with pytest.raises(ConfigError, match=r"model.x\[0\]\[0\].* more than 32 deep"):
        Experiment.from_config({"model": {"x": deep}})


def test_ready_made_models_check_their_sizes_before_allocating():
    from epochal_torch.models import MLP, SmallCNN

    assert mlp_widths("MLP", 64, [32, 16], 10) == [64, 32, 16, 10]
    net = MLP(64, (32, 16), 10)
    assert sum(p.numel() for p in net.parameters()) == 65 * 32 + 33 * 16 + 17 * 10
    cnn = SmallCNN(1, 10, (16, 32))
    count = sum(p.numel() for p in cnn.parameters())
    assert count == 9 * 16 + 2 * 16 + 9 * 16 * 32 + 2 * 32 + 33 * 10  # what the bound counts
    assert cnn_channels("SmallCNN", 1, 10, (16, 32)) == [1, 16, 32]
    bad = [
        (lambda: MLP(64, [-1]), "hidden[0] must be a positive integer"),
        (lambda: MLP(64, [True]), "hidden[0] must be a positive integer"),
        (lambda: MLP(64, [2.5]), "hidden[0] must be a positive integer"),
        (lambda: MLP(0, [4]), "in_features must be a positive integer"),
        (lambda: MLP(64, [4], num_classes=-3), "num_classes must be a positive integer"),
        (lambda: MLP(64, [2**63 - 1]), "hidden=[9223372036854775807] gives the MLP"),
        (lambda: MLP(64, [2**15, 2**15]), "hidden=[32768, 32768] gives the MLP 1,076,232,202"),
        (lambda: MLP(10**9, [4]), "in_features=1000000000 gives the MLP"),
        (lambda: SmallCNN(channels=(16, 0)), "channels[1] must be a positive integer"),
        (lambda: SmallCNN(channels=(2**15, 2**13)), "channels=(32768, 8192) gives the SmallCNN"),
    ]
    for build, message in bad:
        started = time.perf_counter()
        with pytest.raises(ValueError, match=re.escape(message)):
            build()
        assert time.perf_counter() - started < 1  # nothing was allocated


def test_tf_models_apply_the_same_checks():
    models = pytest.importorskip("epochal_tf.models")
    assert models.MLP(64, [8], 10).count_params() == 65 * 8 + 9 * 10
    for build, message in [
        (lambda: models.MLP(64, [-1]), r"hidden\[0\] must be a positive integer"),
        (lambda: models.MLP(64, [True]), r"hidden\[0\] must be a positive integer"),  # Keras: 1
        (lambda: models.MLP(64, [10**9]), r"hidden=\[1000000000\] gives the MLP"),
        (lambda: models.SmallCNN(channels=(0, 4)), r"channels\[0\] must be a positive"),
    ]:
        with pytest.raises(ValueError, match=message):
            build()


# -- output folders -------------------------------------------------------------------------


def test_output_dir_checks_on_real_paths(tmp_path):
    check_output_dir(tmp_path / "new" / "deeper", "--run-dir")  # a folder to make: fine
    check_output_dir(tmp_path, "--run-dir")
    if os.path.isdir("/dev/shm"):
        check_output_dir("/dev/shm/epochal-run", "--run-dir")  # a tmpfs meant for files
    (tmp_path / "file").write_text("x")
    for path, message in [
        (tmp_path / "file", "is a file, not a folder"),
        (tmp_path / "file" / "run", f"{tmp_path / 'file'} is a file"),
        ("/proc/self", "is under /proc"),
        ("/proc/self/fd/run", "is under /proc"),
        ("/sys/kernel/run", "is under /sys"),
        ("/dev/null", "is under /dev"),
        ("run\x00x", "contains a NUL byte"),
    ]:
        with pytest.raises(ConfigError, match="--run-dir") as info:
            check_output_dir(path, "--run-dir")
        assert message in str(info.value), (path, str(info.value))
    link = tmp_path / "link"
    link.symlink_to("/proc/self")
    with pytest.raises(ConfigError, match="is under /proc"):
        check_output_dir(link / "run", "--run-dir")  # followed, not trusted by name
    assert sorted(os.listdir(tmp_path)) == ["file", "link"]  # nothing was created


def _can_unshare_mount(tmp_path: Path) -> bool:
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o ro,size=1m tmpfs {tmp_path}"],
        capture_output=True,
        timeout=30,
    )
    return probe.returncode == 0


@pytest.mark.slow
def test_run_dir_on_a_read_only_mount_is_refused(tmp_path):
    """A read-only tmpfs in a private mount namespace (``unshare -rm``: no root needed where
    user namespaces are allowed); ``epochal train`` and ``resume`` exit 2 naming it."""
    mount = tmp_path / "ro"
    mount.mkdir()
    if not shutil.which("unshare") or not _can_unshare_mount(mount):
        pytest.skip("cannot mount a read-only file system here (unshare -rm)")
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.toml").write_text(load_config_text())
    script = (
        f"mount -t tmpfs -o ro,size=1m tmpfs {mount} && "
        f"mount --bind {run} {run} && mount -o remount,bind,ro {run} && "
        f"{shlex.join(epochal_command('train', '--run-dir', str(mount / 'run'), *QUICK))}; "
        f"echo train-exit=$?; {shlex.join(epochal_command('resume', str(run)))}; "
        "echo resume-exit=$?"
    )
    result = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env=user_env(),
    )
    assert "train-exit=2" in result.stdout and "resume-exit=2" in result.stdout, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("epochal: error")]
    assert errors == [
        f"epochal: error: --run-dir {mount / 'run'}: {mount} is on a read-only file system; "
        "choose a writable folder",
        f"epochal: error: RUN_DIR {run} is on a read-only file system; choose a writable folder",
    ], result.stderr
    assert os.listdir(mount) == [] and os.listdir(run) == ["config.toml"]


def load_config_text() -> str:
    import tomli_w

    return tomli_w.dumps(load_config(None, ["callbacks.tensorboard=false"]))


def test_a_folder_this_user_cannot_write_is_refused(tmp_path):
    """Root passes every permission check (``os.access`` says yes), so as root the check runs
    as the user nobody (``setpriv``); otherwise in this process."""
    base = Path(tempfile_dir())
    locked = base / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        if os.geteuid() != 0:
            with pytest.raises(ConfigError, match="is not writable by this user"):
                check_output_dir(locked / "run", "--run-dir")
            return
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv: cannot test as an unprivileged user")
        code = (
            "from epochal.job.limits import check_output_dir\n"
            "from epochal.errors import ConfigError\n"
            f"try:\n    check_output_dir({str(locked / 'run')!r}, '--run-dir')\n"
            "except ConfigError as exc:\n    print(exc)\n"
        )
        result = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
             sys.executable, "-c", code],
            capture_output=True, text=True, timeout=60, env=user_env(),
        )  # fmt: skip
        if result.returncode != 0:
            pytest.skip(f"the user nobody cannot run this Python: {result.stderr[-300:]}")
        assert result.stdout.strip() == (
            f"--run-dir {locked / 'run'}: {locked} is not writable by this user; choose a "
            "folder you can write to"
        )
    finally:
        locked.chmod(0o755)
        shutil.rmtree(base)


def tempfile_dir() -> str:
    """A folder every user may enter (pytest's tmp_path is private to its owner)."""
    import tempfile

    folder = tempfile.mkdtemp(prefix="epochal-perm-")
    os.chmod(folder, 0o755)
    return folder


# -- a few as real processes ----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--set", "model.hidden=[-1]"], "epochal: error: model.hidden: MLP(in_features=64, "),
        (["--seed", "1" * 23], "epochal: error: experiment.seed (--seed) must be an integer"),
        (["--set", "training.optimizer_params.lr", "0.01"], "--set training.optimizer_params"),
    ],
    ids=["hidden", "seed", "set-space"],
)
def test_as_real_processes(tmp_path, args, expected):
    result = run_epochal("train", *QUICK, *args, cwd=tmp_path, timeout=120)
    line = one_error(result.returncode, result.stderr)
    assert line.startswith(expected) or expected in line, line
    assert os.listdir(tmp_path) == []
