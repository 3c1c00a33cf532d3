"""PyTorchNetworkTrainer: delira's PyTorch trainer on epochal's loop, with torch.amp.

The core (``AbstractNetworkTrainer.train``) runs the epochs, validation, best-model tracking,
checkpoint scheduling and hooks; this class does one epoch (:mod:`epochal_torch.training`),
prediction and checkpoint I/O, and DDP under torchrun (:mod:`epochal_torch.distributed`).
Per training batch it does the step and nothing else: losses and metrics stay on the device
and are read once per epoch.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np
import torch

from epochal.data.batching import batch_length, rebatch
from epochal.errors import NonFiniteLossError
from epochal.job.keys import SUPERVISED_KEYS, ConfigKey
from epochal.loop.distributed import Collective
from epochal.loop.supervised import MixedPrecisionArgs
from epochal.loop.trainer import AbstractNetworkTrainer
from epochal_torch.distributed import join_processes
from epochal_torch.epoch import epoch_means
from epochal_torch.io import (
    check_fits,
    read_checkpoint,
    restore_rng_state,
    rng_state,
    save_checkpoint,
)
from epochal_torch.networks import (
    AbstractPyTorchNetwork,
    prepare_batch,
)
from epochal_torch.optim import AMP_OPTIONS, AmpConfig, attach_amp, create_optims_default_pytorch
from epochal_torch.training import train_epoch

__all__ = ["PyTorchNetworkTrainer"]


def _device_for(gpu_ids: list[int]) -> torch.device:
    if not gpu_ids:
        return torch.device("cpu")
    if len(gpu_ids) > 1:
        raise ValueError(
            f"gpu_ids={gpu_ids}: one trainer drives one GPU; for several GPUs run "
            "`torchrun --nproc-per-node N` with one id per process"
        )
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if not isinstance(gpu_ids[0], int) or not 0 <= gpu_ids[0] < count:
        available = f"ids 0..{count - 1}" if count else "none"
        raise ValueError(
            f"gpu_ids={gpu_ids} but this machine's CUDA devices are: {available}; "
            "pass gpu_ids=[] to train on the CPU"
        )
    return torch.device(f"cuda:{gpu_ids[0]}")


class PyTorchNetworkTrainer(AbstractNetworkTrainer):
    """Trains a ``torch.nn.Module`` (delira's ``PyTorchNetworkTrainer`` API, name for name).

    Args:
        network: an :class:`AbstractPyTorchNetwork` (its ``closure`` is the training step) or
            any ``torch.nn.Module`` (the default supervised step: ``data`` -> network -> every
            criterion on ``label``, summed).
        save_path: run folder for checkpoints (``None``: keep the best weights in memory).
        criterions: ``{name: loss module}``; losses are reported under these names.
        optimizer_cls, optimizer_params: the optimizer class and its arguments.
        metrics: ``{name: fn(predictions, labels) -> tensor}``, computed without gradients.
        lr_scheduler_cls, lr_scheduler_params: a ``torch.optim.lr_scheduler`` class (or its
            name) and arguments (plus ``step_on``/``monitor``), run by the callback
            ``torch_lr_scheduler`` (:mod:`epochal_torch.schedulers`).
        gpu_ids: ``[]`` for the CPU, ``[i]`` for CUDA device ``i``.
        save_freq: write ``checkpoint_epoch_<n>.pt`` every ``save_freq`` epochs.
        optim_fn: ``optim_fn(network, optimizer_cls, **optimizer_params) -> {name: optimizer}``.
        fold, callbacks, start_epoch: as in :class:`AbstractNetworkTrainer`.
        mixed_precision: train with ``torch.amp`` (float16 + GradScaler on CUDA, bfloat16 on CPU).
        mixed_precision_kwargs: ``dtype``, ``init_scale``, ``growth_interval``, ``enabled``.
        on_nonfinite: what a NaN or infinite training loss does: ``"raise"`` (stop with
            :class:`~epochal.errors.NonFiniteLossError`, keeping earlier checkpoints) or
            ``"skip_batch"`` (no update for that batch; counted as the train metric
            ``nonfinite_batches``). See :mod:`epochal_torch.nonfinite`.
        distributed: under torchrun, train with ``DistributedDataParallel`` (``None``: when
            torchrun started several processes; ``False``: each process trains alone).
        dist_backend: ``"auto"`` (gloo on the CPU, nccl on CUDA), ``"gloo"`` or ``"nccl"``.
        dist_timeout: seconds a rank waits for the others in a collective before it fails.
        **kwargs: passed to the network's ``closure``.
    """

    #: What configs may name for this backend (:mod:`epochal.job.components`); any other object
    #: is named by its ``"module:attr"`` path.
    components: ClassVar[dict[str, dict[str, str]]] = {
        "models": {"mlp": "epochal_torch.models:MLP", "cnn": "epochal_torch.models:SmallCNN"},
        "losses": {
            "cross_entropy": "torch.nn:CrossEntropyLoss",
            "nll": "torch.nn:NLLLoss",
            "bce_with_logits": "torch.nn:BCEWithLogitsLoss",
            "mse": "torch.nn:MSELoss",
            "l1": "torch.nn:L1Loss",
            "smooth_l1": "torch.nn:SmoothL1Loss",
        },
        "metrics": {"accuracy": "epochal_torch.metrics:accuracy"},
        "optimizers": {
            name: f"torch.optim:{name}"
            for name in (
                "Adam",
                "AdamW",
                "SGD",
                "RMSprop",
                "Adagrad",
                "Adadelta",
                "Adamax",
                "NAdam",
                "RAdam",
            )
        },
    }
    #: Modules whose loss and metric functions a config may name by path (:mod:`epochal.job.trust`).
    function_modules: ClassVar[tuple[str, ...]] = ("torch.nn.functional",)
    #: Plugin and callback state may hold tensors and bytes too (``torch.load(weights_only)``).
    checkpoint_value_types: ClassVar[tuple[type, ...]] = (torch.Tensor, bytes)

    @classmethod
    def component_bases(cls, kind: str) -> tuple[type, ...]:
        """The classes a config's ``"module:attr"`` path must subclass in a ``kind`` slot."""
        from torch.optim import lr_scheduler

        return {
            "models": (torch.nn.Module,),
            "losses": (torch.nn.Module,),
            "metrics": (torch.nn.Module,),
            "optimizers": (torch.optim.Optimizer,),
            "lr_schedulers": (lr_scheduler.LRScheduler, lr_scheduler.ReduceLROnPlateau),
        }.get(kind, ())

    single_process_kwargs: ClassVar[Mapping[str, Any]] = MappingProxyType({"distributed": False})
    #: The ``training.`` keys a config may set for this trainer, checked when it is loaded.
    config_keys: ClassVar[Mapping[str, ConfigKey]] = SUPERVISED_KEYS

    @classmethod
    def distributed_collective(cls, **trainer_kwargs: Any) -> Collective:
        """Under torchrun: this process joined to the others (:mod:`epochal_torch.distributed`)."""
        return join_processes(
            gpu_ids=trainer_kwargs.get("gpu_ids"),
            distributed=trainer_kwargs.get("distributed"),
            dist_backend=trainer_kwargs.get("dist_backend", "auto"),
            dist_timeout=trainer_kwargs.get("dist_timeout", 600.0),
        )

    @classmethod
    def launch_processes(cls, nproc: int, argv: Sequence[str]) -> int:
        """``epochal train --nproc N``: torchrun's launcher on this machine."""
        from epochal_torch.launch import launch_processes

        return launch_processes(nproc, argv)

    @staticmethod
    def set_seed(seed: int) -> None:
        """Seed torch's generators (CPU and every GPU); the experiment seeds numpy and random."""
        torch.manual_seed(seed)

    def __init__(
        self,
        network: torch.nn.Module,
        save_path: str | os.PathLike[str] | None,
        criterions: dict[str, Callable[..., torch.Tensor]],
        optimizer_cls: type[torch.optim.Optimizer],
        optimizer_params: dict[str, Any] | None = None,
        metrics: dict[str, Callable[..., Any]] | None = None,
        lr_scheduler_cls: Any = None,
        lr_scheduler_params: dict[str, Any] | None = None,
        gpu_ids: list[int] | None = None,
        save_freq: int = 1,
        optim_fn: Callable[..., dict[str, torch.optim.Optimizer]] = create_optims_default_pytorch,
        fold: int = 0,
        callbacks: Iterable[object] | None = None,
        start_epoch: int = 1,
        mixed_precision: bool = False,
        mixed_precision_kwargs: dict[str, Any] | None = None,
        on_nonfinite: str = "raise",
        distributed: bool | None = None,
        dist_backend: str = "auto",
        dist_timeout: float = 600.0,
        **kwargs: Any,
    ) -> None:
        self.on_nonfinite = NonFiniteLossError.check_policy(on_nonfinite)
        self._join = {
            "gpu_ids": list(gpu_ids or []),
            "distributed": distributed,
            "dist_backend": dist_backend,
            "dist_timeout": dist_timeout,
        }
        super().__init__(
            fold,
            callbacks,
            save_path=save_path,
            save_freq=save_freq,
            start_epoch=start_epoch,
            plugin_manager=kwargs.pop("plugin_manager", None),
        )
        if not isinstance(network, torch.nn.Module):
            raise TypeError(f"network must be a torch.nn.Module, got {type(network).__name__}")
        self.criterions = dict(criterions or {})
        self.metrics = dict(metrics or {})
        self.optimizer_cls = optimizer_cls
        self.optimizer_params = dict(optimizer_params or {})
        self.closure_kwargs = kwargs
        self._labels_checked = False
        self._setup(
            network,
            optim_fn,
            lr_scheduler_cls,
            dict(lr_scheduler_params or {}),
            list(gpu_ids or []),
            mixed_precision,
            mixed_precision_kwargs,
        )

    def _setup(
        self,
        network: torch.nn.Module,
        optim_fn: Callable[..., dict[str, torch.optim.Optimizer]],
        lr_scheduler_cls: Any,
        lr_scheduler_params: dict[str, Any],
        gpu_ids: list[int],
        mixed_precision: bool,
        mixed_precision_kwargs: dict[str, Any] | None,
    ) -> None:
        self.collective = join_processes(**self._join)
        if self.collective.distributed:  # one GPU a process: gpu_ids[LOCAL_RANK]
            device = self.collective.device
            _device_for([device.index] if device.type == "cuda" else [])  # checks it exists
        else:
            device = _device_for(gpu_ids)
        self.input_device = self.output_device = device
        self.use_gpu = device.type == "cuda"
        self.module = network.to(device)
        optimizers = optim_fn(self.module, self.optimizer_cls, **self.optimizer_params)
        if not isinstance(optimizers, dict) or not all(
            isinstance(opt, torch.optim.Optimizer) for opt in optimizers.values()
        ):
            raise TypeError("optim_fn must return a dict {name: torch.optim.Optimizer}")
        self.optimizers = optimizers
        self.amp = AmpConfig.from_args(
            MixedPrecisionArgs.parse(
                mixed_precision, mixed_precision_kwargs, AMP_OPTIONS, type(self).__name__
            ),
            device,
        )
        self.scaler = self.amp.make_scaler()
        for optimizer in self.optimizers.values():
            attach_amp(optimizer, self.scaler)
        custom = isinstance(network, AbstractPyTorchNetwork) and (
            type(network).closure is not AbstractPyTorchNetwork.closure
        )
        self._closure = type(network).closure if custom else None
        if custom and self.on_nonfinite == "skip_batch":
            raise ValueError(
                f"on_nonfinite='skip_batch' needs the default training step, but "
                f"{type(network).__name__} has its own closure, which takes its optimizer steps "
                "itself; in your closure, skip the step yourself when the loss is not finite "
                "(on_nonfinite='raise' works with closures)"
            )
        if self.collective.distributed and self.on_nonfinite == "skip_batch":
            raise ValueError(
                "on_nonfinite='skip_batch' is not supported in distributed training: every rank "
                "would have to agree on each skipped batch. Use on_nonfinite='raise'"
            )
        #: What trains: the network, or its DistributedDataParallel wrapper (which averages
        #: gradients over the ranks). ``module`` stays the bare network: checkpoints, predict
        #: and the best model use it, so a checkpoint loads with any number of processes.
        self.train_module: torch.nn.Module = self.module
        if self.collective.distributed:
            from torch.nn.parallel import DistributedDataParallel

            self.train_module = DistributedDataParallel(
                self.module, device_ids=[device.index] if device.type == "cuda" else None
            )
        if not custom and "default" not in self.optimizers:
            raise ValueError(
                f"the default training step uses optimizers['default'], but optim_fn returned "
                f"{sorted(self.optimizers)}; write a closure for several optimizers"
            )
        if not custom and self.closure_kwargs:
            raise TypeError(
                f"PyTorchNetworkTrainer got unexpected arguments {sorted(self.closure_kwargs)}: "
                "extra keyword arguments go to the network's closure, and "
                f"{type(network).__name__} has none (subclass AbstractPyTorchNetwork to write one)"
            )
        if not custom and not self.criterions:
            raise ValueError(
                "criterions is empty: e.g. criterions={'CE': torch.nn.CrossEntropyLoss()}"
            )
        self._prepare = (
            type(network).prepare_batch
            if isinstance(network, AbstractPyTorchNetwork)
            else prepare_batch
        )
        if lr_scheduler_cls is not None:
            self.register_callback(_scheduler_callback(lr_scheduler_cls, lr_scheduler_params))
        super()._setup()

    # -- training ------------------------------------------------------------------------

    def _train_single_epoch(self, batchgen: Iterable[dict], epoch: int) -> dict[str, float]:
        """One epoch (the loops: :mod:`epochal_torch.training`); the epoch's means."""
        return train_epoch(self, batchgen, epoch)

    def predict(
        self, batchgen: Iterable[dict], batch_size: int | None = None
    ) -> tuple[np.ndarray, list[np.ndarray], dict[str, float]]:
        """Eval mode, ``torch.inference_mode``, autocast with AMP; batches merged up to
        ``batch_size`` samples. Returns ``(predictions, [labels], mean losses and metrics)``."""
        model = self.module
        was_training = model.training
        model.eval()
        outputs, labels, sizes = [], [], []
        history: dict[str, list[Any]] = {}
        try:
            with torch.inference_mode(), self.amp.autocast():
                for batch in rebatch(batchgen, batch_size):
                    data_dict = self._prepare(batch, self.input_device, self.output_device)
                    predictions = model(data_dict["data"])
                    outputs.append(predictions)
                    sizes.append(batch_length(batch))
                    if "label" not in data_dict:
                        continue
                    label = data_dict["label"]
                    labels.append(np.asarray(batch["label"]))
                    for name, criterion in self.criterions.items():
                        history.setdefault(name, []).append(criterion(predictions, label).float())
                    for name, metric in self.metrics.items():
                        history.setdefault(name, []).append(metric(predictions, label))
        finally:
            model.train(was_training)
        if not outputs:
            raise ValueError("predict received no batches")
        predictions = torch.cat([out.float() for out in outputs]).cpu().numpy()
        return (
            predictions,
            ([np.concatenate(labels)] if labels else []),
            epoch_means(history, sizes),
        )

    # -- checkpoint primitives (epochal.loop.backend): the core does the rest ------------

    checkpoint_suffix: ClassVar[str] = ".pt"
    checkpoint_suffix_aliases: ClassVar[tuple[str, ...]] = (".pth",)  # delira's
    write_checkpoint = staticmethod(save_checkpoint)
    read_checkpoint = staticmethod(read_checkpoint)  # weights_only; map_location (CPU)

    def network_state(self) -> dict[str, Any]:
        return {"model": self.module.state_dict()}

    def load_network_state(self, state: Mapping[str, Any]) -> None:
        check_fits(self.module.state_dict(), state["model"])
        self.module.load_state_dict(state["model"])

    def training_state(self) -> dict[str, Any]:
        return {
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": rng_state(),
        }

    def load_training_state(self, state: Mapping[str, Any]) -> None:
        for name, optimizer in self.optimizers.items():
            if name in state.get("optimizers", {}):
                optimizer.load_state_dict(state["optimizers"][name])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        if state.get("rng"):
            restore_rng_state(state["rng"])


def _scheduler_callback(scheduler_cls: Any, params: dict[str, Any]) -> object:
    """delira's ``lr_scheduler_cls``: served by this package's ``TorchLRScheduler``."""
    from epochal_torch.schedulers import TorchLRScheduler

    return TorchLRScheduler(scheduler_cls, **params)
