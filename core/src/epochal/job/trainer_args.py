"""A training group (delira's ``Parameters.training``) as a trainer's keyword arguments.

Names are resolved for the backend (:mod:`epochal.job.components`), delira's aliases are accepted
(``lr_sched_cls``, ``train_metrics``/``val_metrics``, ``criterions`` for ``losses``), and the
result is checked against the trainer's declared keys (its ``config_keys``' own checks) and its
signature, so a typo, a missing argument or a device that is not there is a :class:`ConfigError`
naming the ``training.`` key rather than a ``TypeError`` from the trainer.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from epochal.errors import ConfigError
from epochal.job.backends import trainer_config_keys
from epochal.job.components import KINDS, build_component, check_kwargs, resolve_component
from epochal.job.trust import import_checked

__all__ = ["TRAINING_KEYS", "build_named", "trainer_kwargs"]

#: Training-group keys the experiment itself reads (delira's names and ours).
TRAINING_KEYS = {
    "num_epochs",
    "n_epochs",
    "batch_size",
    "val_batch_size",
    "val_score_key",
    "val_score_mode",
    "num_workers",
}


def build_named(
    trainer_cls: type, group: str, kind: str, specs: Any, trusted: Iterable[str] = ()
) -> dict[str, Any]:
    """``{name: object}`` from a training-group table of names (``losses``, ``metrics``);
    ``trusted``: the job's ``trusted_modules`` (:mod:`epochal.job.trust`)."""
    if specs is None:
        return {}
    if not isinstance(specs, Mapping):
        raise ConfigError(
            f"training.{group} must be a table name -> {KINDS[kind]}, e.g. "
            f"{{CE = 'cross_entropy'}}, got {specs!r}"
        )
    return {
        name: build_component(trainer_cls, kind, spec, f"training.{group}.{name}", trusted)
        for name, spec in specs.items()
    }


def trainer_kwargs(
    trainer_cls: type,
    training: Mapping[str, Any],
    save_freq: int = 1,
    optim_fn: Callable[..., Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    trusted: Iterable[str] = (),
    network_cls: Any = None,
) -> dict[str, Any]:
    """``trainer_cls``' keyword arguments from a training group (names resolved for the
    backend; ``"module:attr"`` paths checked by :mod:`epochal.job.trust`, with ``trusted`` the
    job's ``trusted_modules``), plus ``save_freq``, ``optim_fn`` (when given) and ``extra``.

    Only what the training group gives is passed; a key the trainer does not take, or a
    required trainer argument the group lacks, is a :class:`ConfigError` naming it. A trainer
    whose ``**kwargs`` go to the network's training step takes extra keys only when
    ``network_cls`` has a step that reads them (its ``takes_step_kwargs(network_cls)``).
    """
    training = dict(training)
    for alias, name in (
        ("lr_sched_cls", "lr_scheduler_cls"),
        ("lr_sched_params", "lr_scheduler_params"),
    ):
        if alias in training:
            training.setdefault(name, training.pop(alias))
    metrics = {
        **(training.pop("train_metrics", None) or {}),
        **(training.pop("val_metrics", None) or {}),
    }
    metrics.update(training.pop("metrics", None) or {})
    kwargs: dict[str, Any] = {"save_freq": save_freq}
    if "losses" in training:
        losses = training.pop("losses")
        kwargs["losses"] = build_named(trainer_cls, "losses", "losses", losses, trusted)
    if metrics:
        kwargs["metrics"] = build_named(trainer_cls, "metrics", "metrics", metrics, trusted)
    if "optimizer_cls" in training:
        optimizer = resolve_component(
            trainer_cls,
            "optimizers",
            training.pop("optimizer_cls"),
            "training.optimizer_cls",
            trusted,
        )
        kwargs["optimizer_cls"] = optimizer
        kwargs["optimizer_params"] = dict(training.pop("optimizer_params", None) or {})
        check_kwargs(optimizer, kwargs["optimizer_params"], "training.optimizer_params")
    scheduler = training.get("lr_scheduler_cls")
    if isinstance(scheduler, str) and ":" in scheduler:  # names are the backend's to look up
        training["lr_scheduler_cls"] = import_checked(
            scheduler, "lr_schedulers", "training.lr_scheduler_cls", trainer_cls, trusted
        )
    if optim_fn is not None:
        kwargs["optim_fn"] = optim_fn
    for key in TRAINING_KEYS:  # read by the experiment, not by the trainer
        training.pop(key, None)
    kwargs.update(training)
    kwargs.update(extra or {})
    for key, declared in trainer_config_keys(trainer_cls).items():
        if key in kwargs:  # e.g. that the devices exist: named here, not by the trainer
            declared.check_given(f"training.{key}", kwargs[key])
    signature = inspect.signature(trainer_cls).parameters
    if "losses" not in signature and "criterions" in signature and "losses" in kwargs:
        kwargs["criterions"] = kwargs.pop("losses")  # delira's PyTorch name
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.values())
    step_kwargs = getattr(trainer_cls, "takes_step_kwargs", None)
    if takes_any and network_cls is not None and callable(step_kwargs):
        takes_any = bool(step_kwargs(network_cls))  # nothing would read them: refuse by key
    own = set(getattr(trainer_cls, "backend_kwargs_names", ()))
    internal = {"self", "kwargs", "network", "save_path"}
    for key in kwargs:
        if key not in signature and key not in own and not takes_any:
            allowed = sorted((set(TRAINING_KEYS) | set(signature) | own) - internal)
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"training.{key}: {trainer_cls.__name__} takes no argument {key!r}{hint}; "
                f"allowed: {', '.join(allowed)}"
            )
    for name, parameter in signature.items():
        required = parameter.default is inspect.Parameter.empty and parameter.kind in (
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            inspect.Parameter.KEYWORD_ONLY,
        )
        if required and name not in internal and name not in kwargs:
            key = "losses" if name == "criterions" else name
            raise ConfigError(
                f"training.{key} is missing: {trainer_cls.__name__} needs it "
                f"(e.g. optimizer_cls = 'Adam', losses = {{CE = 'cross_entropy'}})"
            )
    return kwargs
