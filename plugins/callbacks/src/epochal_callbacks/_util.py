"""Helpers the callbacks share: learning rates, host floats, paths in the run folder.

Metric lookup and score directions are the core's (:mod:`epochal.loop.callbacks`): the
backends' LR schedulers use them too.
"""

from __future__ import annotations

import contextlib
import numbers
import os
import stat
from typing import Any

from epochal.errors import ConfigError
from epochal.loop.callbacks import TrainerView
from epochal.runs.files import check_run_file, run_file_error


def host_float(value: Any) -> float:
    """A Python float from a number, numpy scalar or device tensor (for a tensor: a host sync)."""
    detach = getattr(value, "detach", None)  # torch: no autograd warning for a loss tensor
    return float(detach() if callable(detach) else value)


def current_lrs(trainer: TrainerView) -> dict[str, float]:
    """Learning rate of each of the trainer's optimizers, without importing a framework.

    Backends expose ``trainer.optimizers`` (a dict, delira's convention): torch optimizers
    have ``param_groups``, Keras optimizers ``learning_rate``. A backend without optimizers
    but with a numeric ``trainer.lr`` reports that as ``"default"``.
    """
    rates: dict[str, float] = {}
    for name, optimizer in (getattr(trainer, "optimizers", None) or {}).items():
        groups = getattr(optimizer, "param_groups", None)
        if groups:
            rates[name] = float(groups[0]["lr"])
            continue
        rate = getattr(optimizer, "learning_rate", None)
        if rate is not None:
            try:
                rates[name] = float(rate)
            except (TypeError, ValueError):  # a schedule object: the rate lives per step
                continue
    if not rates and isinstance(getattr(trainer, "lr", None), numbers.Real):
        rates["default"] = float(trainer.lr)
    return rates


#: What epochal itself keeps at the top of a run folder: a callback's file must not replace it.
_RUN_FOLDER_FILES = ("config.toml", "summary.json", ".epochal.lock", "kfold.json")


def check_path(owner: str, key: str, value: str | os.PathLike[str] | None) -> str | None:
    """A callback's path argument (``path``, ``file_name``, ``log_dir``), checked when the
    callback is made, so that a bad one is a config error before training starts (the
    ``[callbacks]`` table's errors exit 2), not a failure after the first epoch.

    A relative path is taken inside the run folder and must stay there (``../x.csv`` is
    refused); an absolute one is used as given, on purpose, and must be writable: not under
    ``/proc``, ``/sys`` or ``/dev``, on a writable file system, in a folder this user may
    write (for a file, its folder). Returns the path as a string (``None`` stays ``None``).
    """
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise ConfigError(f"{owner}: {key} must be a path (a string), got {value!r}")
    text = os.fspath(value)
    if not isinstance(text, str) or not text or "\x00" in text:
        raise ConfigError(f"{owner}: {key} must be a path (a non-empty string), got {value!r}")
    if os.path.isabs(text):
        from epochal.job.limits import check_output_dir

        if key == "file_name":  # the file's folder must take it
            check_output_dir(os.path.dirname(text), f"{key} {text!r}: its folder")
        else:
            check_output_dir(text, key)
        return text
    normal = os.path.normpath(text)
    if normal == os.pardir or normal.startswith(os.pardir + os.sep):
        name = os.path.basename(normal)
        example = f" (e.g. {name!r})" if name != os.pardir else ""
        raise ConfigError(
            f"{owner}: {key} = {text!r} leaves the run folder; give a name inside it"
            f"{example}, or an absolute path to write elsewhere on purpose"
        )
    return text


def check_file_name(owner: str, path: str | None, file_name: str) -> None:
    """A file name (inside ``path`` if that is relative) that names a file and does not
    replace one of epochal's own files in the run folder (``config.toml``, checkpoints...)."""
    if os.path.isabs(file_name) or (path is not None and os.path.isabs(path)):
        return
    relative = os.path.normpath(os.path.join(path or "", file_name))
    if file_name.endswith(("/", os.sep)) or relative == os.curdir:
        raise ConfigError(f"{owner}: file_name must name a file, got {file_name!r}")
    if relative in _RUN_FOLDER_FILES or relative.startswith("checkpoint_"):
        raise ConfigError(
            f"{owner}: file_name = {file_name!r} would replace epochal's own {relative} in the "
            "run folder; choose another name"
        )


def output_path(
    owner: str,
    trainer: TrainerView,
    path: str | os.PathLike[str] | None,
    file_name: str | None = None,
    default: str | None = None,
) -> str:
    """Where a callback writes: the folder ``path`` (else ``default`` inside the run folder,
    else the run folder itself), or the file ``file_name`` in it; the folders are made.

    Relative paths are taken inside the trainer's ``save_path`` (the run folder), and there
    nothing on the way is followed: a symbolic link, or a file where a folder should be, is
    refused (:class:`ConfigError` naming it), and so is an existing ``file_name`` that is not
    a regular file (a link to a secret, a FIFO). Absolute paths are used as given. Without a
    ``save_path``, a relative ``path`` is taken from the working directory, as before.
    """
    save_path = getattr(trainer, "save_path", None)
    folder = os.fspath(path) if path is not None else default
    if path is None and save_path is None:
        raise ValueError(f"{owner} needs a folder: give it a path, or give the trainer a save_path")
    if folder is not None:
        check_path(owner, "path", folder)  # attributes may have changed since construction
    parts = [part for part in (folder, file_name) if part is not None]
    target = os.path.join(*parts) if parts else ""
    if save_path is None or os.path.isabs(target):
        os.makedirs((os.path.dirname(target) if file_name else target) or os.curdir, exist_ok=True)
        return target
    base = os.fspath(save_path)
    os.makedirs(base, exist_ok=True)
    relative = os.path.normpath(target) if target else os.curdir
    if relative == os.pardir or relative.startswith(os.pardir + os.sep):
        raise ConfigError(f"{owner}: {relative!r} leaves the run folder {base}")
    parts = [] if relative == os.curdir else relative.split(os.sep)
    current = base
    for part in parts[:-1] if file_name else parts:
        current = os.path.join(current, part)
        try:
            info = os.lstat(current)
        except FileNotFoundError:
            with contextlib.suppress(FileExistsError):  # made meanwhile: looked at below
                os.mkdir(current)
            info = os.lstat(current)
        if stat.S_ISLNK(info.st_mode):
            raise run_file_error(current, "a symbolic link")
        if not stat.S_ISDIR(info.st_mode):
            raise ConfigError(
                f"{owner}: {current} is in the way: {owner} needs a folder there; remove it "
                "or choose another path"
            )
    if not file_name:
        return current
    check_run_file(os.path.join(current, parts[-1]))
    return os.path.join(current, parts[-1])
