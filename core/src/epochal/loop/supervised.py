"""SupervisedTrainer: delira's supervised trainer, written once for every framework.

A backend's trainer (``PyTorchNetworkTrainer``, ``TfNetworkTrainer``) subclasses
:class:`SupervisedTrainer` and declares only what differs: the name of the losses argument
(``criterions`` or ``losses``), its own parameters (:attr:`SupervisedTrainer.options_type`), the
default ``optim_fn``, and the framework primitives of :class:`epochal.loop.backend.TrainingBackend`
(place the network, build optimizers, one evaluation step, read values from the device...).
Everything else is here, once: delira's constructor and its checks, the parsing of
``mixed_precision_kwargs``, the custom-closure detection, the LR-scheduler hook-up, and
``predict``'s batching and sample-weighted means.

The per-step extension point is :meth:`SupervisedTrainer.train_step`: a subclass overrides it to
change what one training batch does (distillation, GANs, several optimizers), and both backends'
epochs call it (eagerly in a general loop, or inside a compiled step).
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import os
import warnings
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np

from epochal.data.batching import batch_length, rebatch
from epochal.errors import NonFiniteLossError
from epochal.job.keys import ConfigKey
from epochal.loop.trainer import AbstractNetworkTrainer

__all__ = [
    "APEX_KEYS",
    "SUPERVISED_KEYS",
    "MixedPrecisionArgs",
    "NoOptions",
    "SupervisedTrainer",
    "component_table",
    "supervised_keys",
]

#: delira's apex options: accepted with a warning (epochal uses the framework's own AMP).
APEX_KEYS = frozenset({"allow_banned", "enable_caching", "verbose", "opt_level"})
_DTYPES = {"float16": "float16", "half": "float16", "bfloat16": "bfloat16"}


@dataclasses.dataclass(frozen=True)
class MixedPrecisionArgs:
    """``mixed_precision`` and ``mixed_precision_kwargs``, checked and resolved: what a backend
    builds its framework objects from (autocast and a GradScaler, Keras dtype policies).

    Attributes:
        enabled: whether to compute in 16 bits.
        dtype: ``"float16"`` or ``"bfloat16"``; ``None`` when not given (the backend picks by
            device: float16 on a GPU, bfloat16 on the CPU).
        options: the backend's own options (e.g. ``init_scale``), defaults filled in.
    """

    enabled: bool
    dtype: str | None
    options: Mapping[str, float]

    @classmethod
    def parse(
        cls,
        mixed_precision: bool,
        kwargs: Mapping[str, Any] | None,
        options: Mapping[str, float],
        owner: str = "epochal",
    ) -> MixedPrecisionArgs:
        """Check ``kwargs`` against ``dtype``, ``enabled`` and ``options`` (name -> default,
        whose type each value is converted to); apex's keys warn and are ignored, others raise
        ``ValueError`` naming the allowed keys. ``owner`` names the trainer in the warning."""
        kwargs = dict(kwargs or {})
        allowed = sorted({"dtype", "enabled", *options})
        apex = sorted(APEX_KEYS & set(kwargs))
        if apex:
            warnings.warn(
                f"mixed_precision_kwargs {apex} are apex options (delira's PyTorch trainer); "
                f"{owner} uses its framework's mixed precision and ignores them. Its options "
                f"are {allowed}.",
                UserWarning,
                stacklevel=4,
            )
        unknown = sorted(set(kwargs) - APEX_KEYS - set(allowed))
        if unknown:
            raise ValueError(f"unknown mixed_precision_kwargs {unknown}; allowed: {allowed}")
        dtype = kwargs.get("dtype")
        if dtype is not None:
            # "float16", "half", "mixed_float16", a framework's dtype object or its dotted name
            name = dtype if isinstance(dtype, str) else getattr(dtype, "name", None) or str(dtype)
            name = name.rpartition(".")[2].removeprefix("mixed_")
            if name not in _DTYPES:
                raise ValueError(
                    f"mixed_precision_kwargs dtype {dtype!r} is not supported: use 'float16' or "
                    "'bfloat16'"
                )
            dtype = _DTYPES[name]
        return cls(
            enabled=bool(mixed_precision) and bool(kwargs.get("enabled", True)),
            dtype=dtype,
            options={
                key: type(default)(kwargs.get(key, default)) for key, default in options.items()
            },
        )


#: The ``training.`` keys of delira's supervised trainer arguments that a config may set, each
#: checked by name when the config loads (:class:`~epochal.job.keys.ConfigKey`);
#: :func:`supervised_keys` adds a backend's checks and its own keys.
SUPERVISED_KEYS: Mapping[str, ConfigKey] = MappingProxyType(
    {
        "lr_scheduler_cls": ConfigKey("string"),
        "lr_scheduler_params": ConfigKey(
            "table",
            requires="lr_scheduler_cls",
            fix="name the scheduler, e.g. lr_scheduler_cls = 'StepLR', or drop the parameters",
        ),
        "mixed_precision": ConfigKey("boolean"),
        "mixed_precision_kwargs": ConfigKey("table"),
        "gpu_ids": ConfigKey(
            "list",
            items="integer",
            minimum=0,
            meaning="a list of CUDA device numbers (integers >= 0; [] for the CPU)",
        ),
        "on_nonfinite": ConfigKey("string", check_value=NonFiniteLossError.check_policy),
    }
)


def supervised_keys(
    mixed_precision_options: Mapping[str, float] | None = None,
    device_check: Callable[[Any], object] | None = None,
    **own: ConfigKey,
) -> Mapping[str, ConfigKey]:
    """A backend's ``config_keys``: :data:`SUPERVISED_KEYS` with ``mixed_precision_kwargs``
    checked against the backend's ``mixed_precision_options``, ``gpu_ids`` by ``device_check``
    (e.g. that each device exists here; a ``ValueError`` naming the ids), and its ``own``
    keys (those of its :attr:`SupervisedTrainer.options_type`)."""
    keys = dict(SUPERVISED_KEYS)
    if mixed_precision_options is not None:
        options = MappingProxyType(dict(mixed_precision_options))

        def check_precision(kwargs: Mapping[str, Any]) -> None:
            with warnings.catch_warnings():  # the trainer warns about apex's keys itself
                warnings.simplefilter("ignore")
                MixedPrecisionArgs.parse(True, kwargs, options)

        keys["mixed_precision_kwargs"] = dataclasses.replace(
            keys["mixed_precision_kwargs"], check_value=check_precision
        )
    if device_check is not None:
        keys["gpu_ids"] = dataclasses.replace(keys["gpu_ids"], check_value=device_check)
    return MappingProxyType({**keys, **own})


def component_table(**kinds: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """A backend's ``components`` (what configs may name, :mod:`epochal.job.components`),
    written compactly: for each kind, ``{module: "name=attr name=attr attr"}`` (an ``attr``
    alone is also its name). E.g. ``component_table(optimizers={"mypkg.optim": "Adam SGD"})``
    is ``{"optimizers": {"Adam": "mypkg.optim:Adam", "SGD": "mypkg.optim:SGD"}}``."""
    table: dict[str, dict[str, str]] = {}
    for kind, modules in kinds.items():
        entries = table.setdefault(kind, {})
        for module, names in modules.items():
            for entry in names.split():
                name, _, attr = entry.rpartition("=")
                entries[name or attr] = f"{module}:{attr}"
    return table


@dataclasses.dataclass(frozen=True)
class NoOptions:
    """A backend without parameters of its own (see :attr:`SupervisedTrainer.options_type`)."""


def _no_optimizers(network: Any, optimizer_cls: Any, **optimizer_params: Any) -> dict[str, Any]:
    raise NotImplementedError("the backend's trainer must set default_optim_fn")


class SupervisedTrainer(AbstractNetworkTrainer):
    """delira's supervised trainer: a network, losses, optimizers, metrics; framework-neutral.

    Args:
        network: the framework's model; a subclass of :attr:`network_base` brings its own
            ``closure`` (the training step, delira's way) and ``prepare_batch``.
        save_path: run folder for checkpoints (``None``: keep the best weights in memory).
        losses: ``{name: loss}``; losses are reported under these names (a backend may name
            this argument as delira does, e.g. ``criterions``: :attr:`losses_parameter`).
        optimizer_cls, optimizer_params: the optimizer class and its arguments.
        metrics: ``{name: fn(predictions, labels) -> scalar}``.
        lr_scheduler_cls, lr_scheduler_params: an LR scheduler and its arguments, run by the
            callback the backend's :meth:`scheduler_callback` builds.
        gpu_ids: ``[]`` for the CPU, ``[i]`` for GPU ``i``.
        save_freq: write ``checkpoint_epoch_<n>`` every ``save_freq`` epochs.
        optim_fn: ``optim_fn(network, optimizer_cls, **optimizer_params) -> {name: optimizer}``
            (``None``: the backend's :attr:`default_optim_fn`).
        fold, callbacks, start_epoch: as in :class:`AbstractNetworkTrainer`.
        mixed_precision, mixed_precision_kwargs: compute in 16 bits; ``dtype``, ``enabled``
            and the backend's :attr:`mixed_precision_options` (:class:`MixedPrecisionArgs`).
        on_nonfinite: ``"raise"`` or ``"skip_batch"`` (:class:`~epochal.errors.NonFiniteLossError`).
        **kwargs: the backend's own parameters (fields of :attr:`options_type`, kept in
            :attr:`options`), keys of :attr:`backend_kwargs_names` (kept in
            :attr:`backend_kwargs`); the rest is passed to the network's ``closure``.

    A backend's subclass declares :attr:`losses_parameter`, :attr:`options_type` and
    :attr:`default_optim_fn`; its constructor is then generated with this one's parameters
    (those three changed, the options' fields before ``**kwargs``), so that
    ``inspect.signature`` and positional calls see delira's exact signature.
    """

    #: The name of the losses argument (delira's: ``criterions`` or ``losses``, per backend).
    losses_parameter: ClassVar[str] = "losses"
    #: A frozen dataclass: its fields (name, type, default) become the backend's own
    #: parameters, after ``on_nonfinite``; their values arrive in :attr:`options`.
    options_type: ClassVar[type] = NoOptions
    #: ``optim_fn``'s default: ``(network, optimizer_cls, **optimizer_params) -> {name: opt}``.
    default_optim_fn: ClassVar[Callable[..., dict[str, Any]]] = staticmethod(_no_optimizers)
    #: delira's network base class (its ``closure`` and ``prepare_batch`` are the defaults a
    #: subclass overrides), or ``None``.
    network_base: ClassVar[type | None] = None
    #: The framework's default closure, delira's signature: ``(model, data_dict, optimizers,
    #: losses, metrics, fold, **kwargs) -> (metric_vals, loss_vals, predictions)``.
    default_closure: ClassVar[Callable[..., tuple[Any, Any, Any]]]
    #: The backend's ``mixed_precision_kwargs`` besides ``dtype`` and ``enabled``, with defaults.
    mixed_precision_options: ClassVar[Mapping[str, float]] = MappingProxyType({})
    #: Keys of ``**kwargs`` the backend reads itself (they do not go to the closure).
    backend_kwargs_names: ClassVar[frozenset[str]] = frozenset()
    #: An example of the losses argument, for the error an empty one gets.
    losses_example: ClassVar[str] = "{'CE': ...}"

    #: The ``training.`` keys a config may set for this trainer, checked by name when a job is
    #: validated (:mod:`epochal.job.keys`); a backend declares its own (:func:`supervised_keys`).
    config_keys: ClassVar[Mapping[str, ConfigKey]] = SUPERVISED_KEYS

    @classmethod
    def options_of(cls, trainer_kwargs: Mapping[str, Any]) -> Any:
        """The :attr:`options_type` the keyword arguments ``trainer_kwargs`` would give."""
        fields = dataclasses.fields(cls.options_type)
        return cls.options_type(
            **{f.name: trainer_kwargs[f.name] for f in fields if f.name in trainer_kwargs}
        )

    @classmethod
    def precision_of(cls, trainer_kwargs: Mapping[str, Any]) -> MixedPrecisionArgs:
        """The mixed-precision arguments of ``trainer_kwargs``, checked (without the warnings
        the trainer itself gives): for checks before a trainer is built."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return MixedPrecisionArgs.parse(
                trainer_kwargs.get("mixed_precision", False),
                trainer_kwargs.get("mixed_precision_kwargs"),
                cls.mixed_precision_options,
            )

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        declares = {"losses_parameter", "options_type", "default_optim_fn"} & set(vars(cls))
        if "mixed_precision_options" in vars(cls) and "config_keys" not in vars(cls):
            cls.config_keys = supervised_keys(cls.mixed_precision_options)  # checked by name
        if declares and "__init__" not in vars(cls):
            cls.__init__ = _constructor(cls)  # type: ignore[method-assign]
        name = cls.losses_parameter
        if name != "losses" and not hasattr(cls, name):  # delira's ``trainer.criterions``
            setattr(cls, name, property(lambda self: self.losses, doc="delira's name of losses"))

    def __init__(
        self,
        network: Any,
        save_path: str | os.PathLike[str] | None,
        losses: Mapping[str, Callable[..., Any]] | None,
        optimizer_cls: Any,
        optimizer_params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Callable[..., Any]] | None = None,
        lr_scheduler_cls: Any = None,
        lr_scheduler_params: Mapping[str, Any] | None = None,
        gpu_ids: list[int] | None = None,
        save_freq: int = 1,
        optim_fn: Callable[..., dict[str, Any]] | None = None,
        fold: int = 0,
        callbacks: Iterable[object] | None = None,
        start_epoch: int = 1,
        mixed_precision: bool = False,
        mixed_precision_kwargs: Mapping[str, Any] | None = None,
        on_nonfinite: str = "raise",
        **kwargs: Any,
    ) -> None:
        #: The backend's own parameters (an instance of :attr:`options_type`).
        self.options = self.options_of(kwargs)
        for field in dataclasses.fields(self.options_type):
            kwargs.pop(field.name, None)
        #: The keys of :attr:`backend_kwargs_names` given in ``**kwargs``.
        self.backend_kwargs = {k: kwargs.pop(k) for k in self.backend_kwargs_names if k in kwargs}
        self.on_nonfinite = NonFiniteLossError.check_policy(on_nonfinite)
        super().__init__(
            fold,
            callbacks,
            save_path=save_path,
            save_freq=save_freq,
            start_epoch=start_epoch,
            plugin_manager=kwargs.pop("plugin_manager", None),
        )
        self.losses = dict(losses or {})
        self.metrics = dict(metrics or {})
        self.check_arguments(network)
        self.optimizer_cls = optimizer_cls
        self.optimizer_params = dict(optimizer_params or {})
        self.closure_kwargs = kwargs
        #: ``mixed_precision`` and ``mixed_precision_kwargs``, checked.
        self.precision = MixedPrecisionArgs.parse(
            mixed_precision,
            mixed_precision_kwargs,
            self.mixed_precision_options,
            type(self).__name__,
        )
        self._setup(
            network,
            optim_fn or type(self).default_optim_fn,
            lr_scheduler_cls,
            dict(lr_scheduler_params or {}),
            list(gpu_ids or []),
        )

    def _setup(
        self,
        network: Any,
        optim_fn: Callable[..., dict[str, Any]],
        lr_scheduler_cls: Any,
        lr_scheduler_params: dict[str, Any],
        gpu_ids: list[int],
        *args: Any,
        **kwargs: Any,
    ) -> None:
        """Place the network, build the optimizers, find the training step, check it all."""
        self.module = self.place_network(network, gpu_ids)
        #: What trains (a backend may wrap the network, e.g. in DDP); ``module`` stays bare.
        self.train_module: Any = self.module
        optimizers = self.create_optimizers(optim_fn)
        bases = self.component_bases("optimizers") if hasattr(self, "component_bases") else ()
        if not isinstance(optimizers, dict) or not all(
            isinstance(opt, bases or object) for opt in optimizers.values()
        ):
            kind = " | ".join(f"{base.__module__}.{base.__qualname__}" for base in bases)
            raise TypeError(
                f"optim_fn must return a dict {{name: {kind or 'optimizer'}}}, got "
                f"{type(optimizers).__name__}"
            )
        self.optimizers = self.wrap_optimizers(optimizers)
        self._find_step(network)
        if lr_scheduler_cls is not None:
            self.register_callback(self.scheduler_callback(lr_scheduler_cls, lr_scheduler_params))
        self.prepare_training()
        super()._setup()

    @classmethod
    def takes_step_kwargs(cls, network_cls: Any) -> bool:
        """Whether a network of ``network_cls`` trained by this class has a step that reads
        extra keyword arguments (``**kwargs``): its own closure, or this class's own
        :meth:`train_step`. A config's unknown ``[training]`` key is refused by name otherwise."""
        base = cls.network_base
        if cls.train_step is not SupervisedTrainer.train_step:
            return True
        if base is None or not isinstance(network_cls, type) or not issubclass(network_cls, base):
            return not isinstance(network_cls, type)  # a factory: its network decides
        return network_cls.closure is not base.closure

    def _find_step(self, network: Any) -> None:
        """The training step (a closure, an overridden :meth:`train_step`, or the default) and
        the checks that depend on it."""
        base = self.network_base
        custom = base is not None and isinstance(network, base)
        closure = type(network).closure if custom else None
        custom_closure = closure is not None and closure is not base.closure  # type: ignore[union-attr]
        #: The training step's closure: the network's own, or the backend's default.
        self.closure = closure if custom_closure else type(self).default_closure
        prepare = type(network).prepare_batch if custom else None
        #: The network's own ``prepare_batch`` when it overrides the default, else ``None``.
        self.network_prepare_batch = (
            prepare if prepare is not None and prepare is not base.prepare_batch else None  # type: ignore[union-attr]
        )
        own_step = type(self).train_step is not SupervisedTrainer.train_step
        #: Whether each batch runs the backend's default supervised step (its fast paths).
        self.uses_default_step = not (custom_closure or own_step)
        if self.uses_default_step:
            if "default" not in self.optimizers:
                raise ValueError(
                    "the default training step uses optimizers['default'], but optim_fn "
                    f"returned {sorted(self.optimizers)}; write a closure for several optimizers"
                )
            if self.closure_kwargs:
                raise TypeError(
                    f"{type(self).__name__} got unexpected arguments "
                    f"{sorted(self.closure_kwargs)}: extra keyword arguments go to the "
                    f"network's closure, and {type(network).__name__} has none (subclass "
                    f"{getattr(base, '__name__', 'the network base')} to write one)"
                )
            if not self.losses:
                name = self.losses_parameter
                raise ValueError(f"{name} is empty: e.g. {name}={self.losses_example}")
        elif self.on_nonfinite == "skip_batch":
            which = (
                f"{type(network).__name__} has its own closure"
                if custom_closure
                else f"{type(self).__name__} overrides train_step"
            )
            raise ValueError(
                f"on_nonfinite='skip_batch' needs the default training step, but {which}, "
                "which takes its optimizer steps itself; skip the step yourself there when the "
                "loss is not finite (on_nonfinite='raise' works with custom steps)"
            )

    # -- the per-step extension point --------------------------------------------------

    def train_step(self, data_dict: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """One training batch: forward, losses, backward, optimizer steps; returns
        ``(losses, metrics)``, each ``{name: the batch's value}`` (framework scalars: they are
        averaged over the epoch, weighted by batch size, without a host read per batch).

        Override it in a subclass to change what a batch does (distillation, GANs, several
        optimizers); ``data_dict`` is the prepared batch (``data``, ``label``... on the
        device), and ``self.train_module``, ``self.optimizers``, ``self.losses`` and
        ``self.metrics`` are the trainer's. The default runs :attr:`closure` (the network's,
        delira's way, or the backend's default step). Every supervised backend's epoch calls it:
        an eager one in its general loop (under its mixed-precision autocast), a compiling one
        inside its compiled step (so write it with the framework's graph ops). With
        an overridden step the backend's fast path for the default step is not taken, and
        ``on_nonfinite="skip_batch"`` is refused (the step takes its own updates).
        """
        metric_vals, loss_vals, _ = self.closure(
            self.train_module,
            data_dict,
            self.optimizers,
            self.losses,
            self.metrics,
            self.fold,
            **self.closure_kwargs,
        )
        return loss_vals, metric_vals

    # -- prediction ------------------------------------------------------------------------

    def predict(
        self, batchgen: Iterable[dict], batch_size: int | None = None
    ) -> tuple[np.ndarray, list[np.ndarray], dict[str, float]]:
        """The network in inference mode over ``batchgen``, batches merged up to ``batch_size``
        samples. Returns ``(predictions, [labels], mean losses and metrics)``: the means are
        weighted by batch size, over the batches that hold a ``label``."""
        outputs: list[Any] = []
        labels: list[np.ndarray] = []
        sizes: list[int] = []
        history: dict[str, list[Any]] = {}
        with self.evaluating():
            for batch in rebatch(batchgen, batch_size):
                predictions, values = self.eval_step(batch)
                outputs.append(predictions)
                if values is None:  # no label: predictions only
                    continue
                labels.append(np.asarray(batch["label"]))
                sizes.append(batch_length(batch))
                for name, value in values.items():
                    history.setdefault(name, []).append(value)
        if not outputs:
            raise ValueError("predict received no batches")
        means: dict[str, float] = {}
        if history:
            weights = np.asarray(sizes, dtype=np.float64)
            stacked = np.asarray(self.stack_values(list(history.values())), dtype=np.float64)
            means = dict(zip(history, (stacked @ weights / weights.sum()).tolist(), strict=True))
        return self.stack_batches(outputs), ([np.concatenate(labels)] if labels else []), means

    # -- primitives (epochal.loop.backend.TrainingPrimitives): a backend implements these --

    def check_arguments(self, network: Any) -> None:
        """Refuse a network, loss or metric the framework cannot train (a clear error)."""

    def place_network(self, network: Any, gpu_ids: list[int]) -> Any:
        """Choose the device(s), join the processes, move the network; return it."""
        raise NotImplementedError(f"{type(self).__name__} must implement place_network")

    def eval_step(self, batch: Mapping[str, Any]) -> tuple[Any, dict[str, Any] | None]:
        """One inference batch: ``(predictions, {loss and metric name: value})``, or
        ``(predictions, None)`` for a batch without ``label``."""
        raise NotImplementedError(f"{type(self).__name__} must implement eval_step")

    def evaluating(self) -> AbstractContextManager[Any]:
        """The context ``predict`` runs in (inference mode, device); default: none."""
        return contextlib.nullcontext()

    def stack_values(self, values: list[list[Any]]) -> np.ndarray:
        """``values[k][i]`` (key ``k``, batch ``i``) as one float64 array, read at once."""
        return np.asarray(values, dtype=np.float64)

    def stack_batches(self, outputs: list[Any]) -> np.ndarray:
        """The batches' predictions as one array (concatenated on the first axis)."""
        return np.concatenate([np.asarray(output) for output in outputs])

    def create_optimizers(self, optim_fn: Callable[..., dict[str, Any]]) -> dict[str, Any]:
        """``optim_fn(network, optimizer_cls, **optimizer_params)``; a backend may run it in a
        device or strategy scope, or resolve an optimizer's name first."""
        return optim_fn(self.module, self.optimizer_cls, **self.optimizer_params)

    def wrap_optimizers(self, optimizers: dict[str, Any]) -> dict[str, Any]:
        """The optimizers as the step uses them (e.g. with loss scaling); default: as built."""
        return optimizers

    def prepare_training(self) -> None:
        """Last of the setup: the backend's own checks, compiled steps...; default: nothing."""

    @staticmethod
    def scheduler_callback(scheduler_cls: Any, params: dict[str, Any]) -> object:
        """The callback that runs ``lr_scheduler_cls`` (delira's argument) with ``params``."""
        raise TypeError("this backend takes no lr_scheduler_cls")


def _constructor(cls: type[SupervisedTrainer]) -> Callable[..., None]:
    """``cls.__init__``: :class:`SupervisedTrainer`'s parameters with the losses argument
    renamed, ``optim_fn``'s default set and the options' fields added before ``**kwargs``;
    calls are bound against that signature (positional calls included) and passed on."""
    core = inspect.signature(SupervisedTrainer.__init__)
    losses_name = cls.losses_parameter
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    parameters = []
    for parameter in core.parameters.values():
        if parameter.name == "losses":
            parameter = parameter.replace(name=losses_name)
        elif parameter.name == "optim_fn":
            parameter = parameter.replace(default=cls.default_optim_fn)
        elif parameter.kind is inspect.Parameter.VAR_KEYWORD:
            parameters += [
                inspect.Parameter(field.name, kind, default=field.default, annotation=field.type)
                for field in dataclasses.fields(cls.options_type)
            ]
        parameters.append(parameter)
    signature = core.replace(parameters=parameters)

    def __init__(self: SupervisedTrainer, *args: Any, **kwargs: Any) -> None:
        arguments = signature.bind(self, *args, **kwargs).arguments
        del arguments["self"]
        extra = arguments.pop("kwargs", {})
        if losses_name in arguments:
            arguments["losses"] = arguments.pop(losses_name)
        SupervisedTrainer.__init__(self, **arguments, **extra)

    __init__.__signature__ = signature  # type: ignore[attr-defined]
    __init__.__qualname__ = f"{cls.__qualname__}.__init__"
    __init__.__doc__ = f"{cls.__name__}'s constructor: see the class's docstring."
    return __init__
