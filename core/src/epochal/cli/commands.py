"""``epochal train | resume | predict | kfold``: jobs from TOML configs.

Exit codes: 0 done, 1 the training failed, 2 a usage or config error (one message, no
traceback; ``--debug`` or ``EPOCHAL_DEBUG=1`` shows it), 130 / 143 stopped by Ctrl-C / SIGTERM
(at a batch boundary, with ``checkpoint_last`` to resume from).
"""

from __future__ import annotations

import contextlib
import functools
import os
import shlex
import sys
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import click

from epochal.errors import ConfigError, DataError, EpochalError
from epochal.loop.distributed import is_main_process, process_role
from epochal.loop.interrupt import TrainingInterrupted
from epochal.runs.prediction_files import check_out, load_inputs, write_predictions

__all__ = ["register_commands"]

EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


def _debug_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--debug", is_flag=True, envvar="EPOCHAL_DEBUG", help="Show tracebacks of errors."
    )(command)


@contextlib.contextmanager
def _phase(debug: bool, exit_code: int) -> Iterator[None]:
    """Turn errors into one line on stderr and ``exit_code`` (2: set-up, 1: training)."""
    try:
        yield
    except TrainingInterrupted as stop:
        if is_main_process():  # every rank stops at the same batch; one says so
            click.echo(f"epochal: {stop}.", err=True)
        if stop.checkpoint and is_main_process():
            run_dir = _quote(os.path.dirname(stop.checkpoint))
            click.echo(
                f"epochal: checkpoint_last holds the run; continue it with: "
                f"epochal resume {run_dir}{_processes_hint()}",
                err=True,
            )
        sys.exit(stop.exit_code)
    except KeyboardInterrupt:
        click.echo(f"{_me()}: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:  # noqa: BLE001 - every error becomes one line and an exit code
        if debug:
            traceback.print_exc()
        setup_error = isinstance(exc, (EpochalError, ImportError)) and exit_code == EXIT_USAGE
        bad_input = isinstance(exc, (ConfigError, DataError))  # found late, still bad input
        code = EXIT_USAGE if setup_error or bad_input else exit_code
        label = "error" if code == EXIT_USAGE else "training failed"
        message = str(exc) if isinstance(exc, EpochalError) else f"{type(exc).__name__}: {exc}"
        click.echo(f"{_me()}: {label}: {message}", err=True)
        if not debug and is_main_process():
            click.echo("(run again with --debug for the traceback)", err=True)
        sys.exit(code)


def _me() -> str:
    """``epochal``, with the process's role and number in a distributed run."""
    role = process_role()
    return f"epochal[{role[0]} {role[1]}]" if role else "epochal"


def _echo(message: str) -> None:
    """Rank 0 (or the only process) talks to the user; the other ranks only report errors."""
    if is_main_process():
        click.echo(message)


def _launched(experiment: Any, nproc: int | None) -> None:
    """``--nproc N``: run this very command in N processes through the backend's launcher,
    then exit with its code (the config was checked here first)."""
    if not nproc or nproc == 1 or os.environ.get("WORLD_SIZE"):
        return
    argv, skip = [], False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            argv.append(arg)
    sys.exit(experiment.trainer_cls.launch_processes(nproc, argv))


def _processes_hint(processes: Any = None) -> str:
    """What to add to ``epochal resume`` to continue in as many processes: ``--nproc N``
    under a launcher; workers the user started resume each with its own settings."""
    role = process_role()
    if role and role[0] == "worker":
        return "  (on every worker, each with its TF_CONFIG)"
    world = processes or (os.environ.get("WORLD_SIZE") if role else None)
    return f" --nproc {world}" if world and str(world) != "1" else ""


def _quote(path: str) -> str:
    relative = os.path.relpath(path)
    return shlex.quote(os.path.abspath(path) if relative.startswith("..") else relative)


def _report(experiment: Any, next_steps: bool = True) -> None:
    if not is_main_process():
        return
    result = experiment.last_run
    summary = result.summary
    key = summary.get("val_score_key")
    if summary.get("best_epoch") is not None:
        click.echo(
            f"best val_{key.removeprefix('val_')} {summary['best_val_score']:.4f} at epoch "
            f"{summary['best_epoch']} of {summary['epochs_run']} "
            f"({summary['wall_seconds']:.1f} s, {summary['status']})"
        )
    else:
        click.echo(f"trained {summary['epochs_run']} epochs ({summary['wall_seconds']:.1f} s)")
    run_dir = _quote(result.run_dir)
    click.echo(f"run folder: {run_dir}")
    if next_steps:
        more = summary["num_epochs"] * 2
        nproc = _processes_hint(summary.get("processes"))
        dataset = (experiment.config or {}).get("data", {}).get("dataset", "DATA")
        click.echo("next:")
        click.echo(f"  epochal predict {run_dir} --data {dataset} --out predictions.csv")
        click.echo(f"  epochal resume {run_dir} --epochs {more}{nproc}    # on to {more} epochs")
        for step in _callback_next_steps(experiment):
            click.echo(f"  {step.format(run_dir=run_dir)}")


def _callback_next_steps(experiment: Any) -> list[str]:
    """What the job's callbacks suggest after a run (their class's ``next_steps``, with
    ``{run_dir}`` for the run folder), in the config's order."""
    from epochal.plugins.registry import callbacks

    registry = callbacks()
    steps: list[str] = []
    for name, params in ((experiment.config or {}).get("callbacks") or {}).items():
        if params is False or name not in registry:
            continue
        try:
            steps += [str(step) for step in getattr(registry.get(name), "next_steps", ()) or ()]
        except ImportError:
            continue  # it trained, so it imports; a hint is never worth a failure
    return steps


def _nproc_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--nproc",
        type=click.IntRange(min=1),
        help="Train in N processes on this machine (the backend's launcher; docs/distributed.md).",
    )(command)


def _config_options(command: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--backend", help="Backend to train with (`epochal plugins` lists them)."),
        click.option("--epochs", type=click.IntRange(min=1), help="Number of epochs."),
        click.option(
            "--set",
            "overrides",
            multiple=True,
            metavar="KEY=VALUE",
            help="Override a config value, e.g. --set training.optimizer_params.lr=0.01",
        ),
        click.option("--seed", type=int, help="Seed for weights, data order and augmentation."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _load(
    config: str | None,
    backend: str | None,
    epochs: int | None,
    seed: int | None,
    overrides: tuple[str, ...],
) -> Any:
    from epochal.runs.experiment import Experiment

    # `--set key value`: click took the value for the CONFIG argument, which does not exist
    stray = config and not config.endswith(".toml") and not os.path.exists(config)
    for override in overrides:
        if stray and "=" not in override:
            raise ConfigError(
                f"--set {override} {config}: write the value after an = sign, without "
                f"spaces: --set {override}={config}"
            )
    extra = list(overrides)
    if backend:
        extra.append(f"experiment.backend={backend}")
    if epochs:
        extra.append(f"training.num_epochs={epochs}")
    if seed is not None:
        extra.append(f"experiment.seed={seed}")
    return Experiment.from_config(config, extra)


def _is_epochal_scratch(name: str) -> bool:
    """The run folder's lock, or a temporary file of an atomic write (which a killed writer
    leaves): nothing a run saved."""
    from epochal.runs.folder import LOCK_FILE

    return name == LOCK_FILE or (name.startswith(".") and name.endswith(".tmp"))


def _check_new_run_dir(run_dir: str) -> bool:
    """May ``train --run-dir`` use ``run_dir``? A new or empty folder (but for a lock and
    temporary files), or a run that saved no checkpoint (``True``: it restarts there); a
    folder with checkpoints belongs to ``epochal resume``; anything else is refused."""
    if not os.path.isdir(run_dir):
        return False
    names = [name for name in os.listdir(run_dir) if not _is_epochal_scratch(name)]
    if not names:
        return False
    has_config = "config.toml" in names
    from epochal.runs.checkpoints import is_checkpoint_name

    if any(is_checkpoint_name(name) for name in names):
        if has_config:
            raise ConfigError(
                f"--run-dir {run_dir} is not empty: it holds a run with checkpoints; continue "
                f"it with `epochal resume {_quote(run_dir)}`, or choose a new folder"
            )
        raise ConfigError(
            f"--run-dir {run_dir} is not empty: it holds checkpoints but no config.toml; "
            "choose a new folder"
        )
    if not has_config:
        raise ConfigError(
            f"--run-dir {run_dir} is not empty and is not an epochal run folder (no "
            "config.toml); choose a new or an empty folder"
        )
    return True


def _announce_restart(run_dir: str, message: str) -> None:
    """Say that a run without a checkpoint starts again from epoch 1, once its folder is
    known to be free (a run in its first epoch holds it: that error comes first)."""
    if process_role() is None:  # one process; ranks would take the lock from each other
        from epochal.runs.folder import run_lock

        with run_lock(run_dir):
            pass
    _echo(f"epochal: {message}")


def _run_dir_config(run_dir: str) -> str:
    config = os.path.join(run_dir, "config.toml")
    if not os.path.isdir(run_dir):
        raise ConfigError(f"run folder {run_dir!r} does not exist")
    from epochal.runs.files import check_run_file

    check_run_file(config)  # a link or FIFO as config.toml: refused by name, never read
    if not os.path.isfile(config):
        raise ConfigError(f"{run_dir} has no config.toml: it is not an epochal run folder")
    return config


def train_command(
    config: str | None,
    backend: str | None,
    epochs: int | None,
    seed: int | None,
    overrides: tuple[str, ...],
    run_dir: str | None,
    print_config: bool,
    debug: bool,
    nproc: int | None = None,
) -> None:
    """Train a model from CONFIG (a TOML file); without CONFIG, the default job: an MLP on
    the digits data set."""
    with _phase(debug, EXIT_USAGE):
        experiment = _load(config, backend, epochs, seed, overrides)
        if print_config:
            import tomli_w

            click.echo(tomli_w.dumps(experiment.config), nl=False)
            return
        # before the data are built and before a run folder is made
        experiment._check_output_dir(run_dir, "--run-dir")
        restart = bool(run_dir) and _check_new_run_dir(run_dir)
        _launched(experiment, nproc)
        if restart:
            _announce_restart(
                run_dir,
                f"{run_dir} holds a run that saved no checkpoint (it stopped in its first "
                "epoch): training in it from epoch 1",
            )
        train, val = experiment._data(None, None)
    source = config or "the default job (MLP on digits)"
    processes = os.environ.get("WORLD_SIZE", "1") if process_role() else "1"
    where = f" in {processes} processes" if processes != "1" else ""
    _echo(f"epochal: training {source} with the {experiment.backend} backend{where}")
    with _phase(debug, EXIT_FAILED):
        experiment.run(train, val, run_dir=run_dir, handle_signals=True)
    _report(experiment)


def resume_command(run_dir: str, epochs: int | None, debug: bool, nproc: int | None = None) -> None:
    """Continue the run in RUN_DIR from its last checkpoint."""
    with _phase(debug, EXIT_USAGE):
        from epochal.runs.experiment import Experiment

        experiment = Experiment.from_config(_run_dir_config(run_dir))
        experiment._check_output_dir(run_dir, "RUN_DIR")
        _launched(experiment, nproc)
        from epochal.runs import checkpoints

        if checkpoints.for_resume(run_dir) is None:
            _announce_restart(
                run_dir,
                f"{run_dir} has no checkpoint_last (the run stopped before its first epoch "
                "ended): training it from epoch 1 in the same folder",
            )
        train, val = experiment._data(None, None)
    with _phase(debug, EXIT_FAILED):
        experiment.resume(run_dir, train, val, num_epochs=epochs, handle_signals=True)
    _report(experiment)


def predict_command(run_dir: str, data: str, out: str, checkpoint: str, debug: bool) -> None:
    """Predict DATA (a data set name or a .npy/.npz/.csv file) with the best model of RUN_DIR
    and write the outputs to OUT (.npy: raw outputs; .csv: class, label, outputs)."""
    with _phase(debug, EXIT_USAGE):
        check_out(out, data)  # before anything is loaded: a bad --out costs no prediction
        from epochal.data import DataManager
        from epochal.data.batching import closing_batchgen
        from epochal.runs.experiment import Experiment

        experiment = Experiment.from_config(_run_dir_config(run_dir))
        # checked against the run's training samples, before the model sees it
        dataset = load_inputs(data, experiment.config)
        trainer = experiment.restore(run_dir, checkpoint)
        batch_size = experiment.config["data"]["val_batch_size"]
        manager = DataManager(dataset, min(batch_size, len(dataset)), 0)
    with _phase(debug, EXIT_FAILED):
        with closing_batchgen(manager.get_batchgen()) as batchgen:
            predictions, labels, scores = trainer.predict(batchgen)
        write_predictions(out, predictions, labels)
    click.echo(f"wrote {len(predictions)} predictions to {out}")
    for key, value in scores.items():
        click.echo(f"  {key} {value:.4f}")


def kfold_command(
    config: str | None,
    folds: int,
    backend: str | None,
    epochs: int | None,
    seed: int | None,
    overrides: tuple[str, ...],
    stratified: bool,
    run_dir: str | None,
    debug: bool,
    nproc: int | None = None,
) -> None:
    """Cross-validate CONFIG: train and test on each of --folds folds, then mean and std."""
    with _phase(debug, EXIT_USAGE):
        experiment = _load(config, backend, epochs, seed, overrides)
        experiment._check_output_dir(run_dir, "--run-dir")
        _launched(experiment, nproc)
        from epochal.job.build import build_dataset

        dataset = build_dataset(experiment.config)
    with _phase(debug, EXIT_FAILED):
        result = experiment.kfold(
            dataset,
            num_splits=folds,
            split_type="stratified" if stratified else "random",
            val_split=experiment.config["data"]["val_split"] or None,
            run_dir=run_dir,
        )
    if not is_main_process():
        return
    keys = sorted(result.mean)
    rows = [["fold", "best epoch", *keys]]
    for fold in result.folds:
        rows.append(
            [
                str(fold["fold"]),
                str(fold["best_epoch"] or "-"),
                *(f"{fold['test'].get(key, float('nan')):.4f}" for key in keys),
            ]
        )
    rows.append(["mean", "", *(f"{result.mean[key]:.4f}" for key in keys)])
    rows.append(["std", "", *(f"{result.std[key]:.4f}" for key in keys)])
    widths = [max(len(row[col]) for row in rows) for col in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))
    root = os.path.dirname(result.folds[0]["run_dir"]) if result.folds else run_dir
    click.echo(f"run folder: {_quote(root)} (kfold.json, one folder per fold)")


def register_commands(cli: click.Group) -> None:
    """Add the job commands to the ``epochal`` group."""
    path = click.Path(dir_okay=False)

    @cli.command("train")
    @click.argument("config", required=False, type=path)
    @_config_options
    @click.option("--run-dir", type=click.Path(file_okay=False), help="Folder for this run.")
    @click.option("--print-config", is_flag=True, help="Print the resolved config and exit.")
    @_nproc_option
    @_debug_option
    @functools.wraps(train_command)
    def train(**kwargs: Any) -> None:
        train_command(**kwargs)

    @cli.command("resume")
    @click.argument("run_dir", type=click.Path(file_okay=False))
    @click.option("--epochs", type=click.IntRange(min=1), help="Train up to this many epochs.")
    @_nproc_option
    @_debug_option
    @functools.wraps(resume_command)
    def resume(**kwargs: Any) -> None:
        resume_command(**kwargs)

    @cli.command("predict")
    @click.argument("run_dir", type=click.Path(file_okay=False))
    @click.option("--data", required=True, help="Data set name, or a .npy/.npz/.csv file.")
    @click.option("--out", required=True, type=path, help="Output file (.npy or .csv).")
    @click.option(
        "--checkpoint",
        type=click.Choice(["best", "last"]),
        default="best",
        show_default=True,
        help="Which checkpoint to predict with.",
    )
    @_debug_option
    @functools.wraps(predict_command)
    def predict(**kwargs: Any) -> None:
        predict_command(**kwargs)

    @cli.command("kfold")
    @click.argument("config", required=False, type=path)
    @click.option("--folds", type=click.IntRange(min=2), default=5, show_default=True)
    @_config_options
    @click.option("--stratified", is_flag=True, help="Keep each class's share in every fold.")
    @click.option("--run-dir", type=click.Path(file_okay=False), help="Folder for the folds.")
    @_nproc_option
    @_debug_option
    @functools.wraps(kfold_command)
    def kfold(**kwargs: Any) -> None:
        kfold_command(**kwargs)
