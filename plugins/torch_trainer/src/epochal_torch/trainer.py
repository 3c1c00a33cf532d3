"""PyTorchNetworkTrainer: delira's PyTorch trainer on epochal's loop, with torch.amp.

The core (``AbstractNetworkTrainer.train``) runs the epochs, validation, best-model tracking,
checkpoint scheduling and hooks; this class does one epoch (:mod:`epochal_torch.training`),
prediction and checkpoint I/O, and DDP under torchrun (:mod:`epochal_torch.distributed`).
Per training batch it does the step and nothing else: losses and metrics stay on the device
and are read once per epoch.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np
import torch

from epochal.loop.distributed import Collective
from epochal.loop.supervised import SupervisedTrainer, component_table
from epochal_torch.devices import CONFIG_KEYS, device_for
from epochal_torch.distributed import join_processes
from epochal_torch.epoch import stack_batch_values
from epochal_torch.io import (
    check_fits,
    read_checkpoint,
    restore_rng_state,
    rng_state,
    save_checkpoint,
)
from epochal_torch.networks import AbstractPyTorchNetwork, default_closure, prepare_batch
from epochal_torch.optim import AMP_OPTIONS, AmpConfig, attach_amp, create_optims_default_pytorch
from epochal_torch.training import train_epoch

__all__ = ["PyTorchNetworkTrainer", "TorchOptions"]


@dataclass(frozen=True)
class TorchOptions:
    """PyTorchNetworkTrainer's own parameters (see its docstring): DDP under torchrun."""

    distributed: bool | None = None
    dist_backend: str = "auto"
    dist_timeout: float = 600.0


class PyTorchNetworkTrainer(SupervisedTrainer):
    """Trains a ``torch.nn.Module`` (delira's ``PyTorchNetworkTrainer`` API, name for name).

    Args:
        network: an :class:`AbstractPyTorchNetwork` (its ``closure`` is the training step) or
            any ``torch.nn.Module`` (the default supervised step: ``data`` -> network -> every
            criterion on ``label``, summed).
        criterions: ``{name: loss module}``; losses are reported under these names.
        metrics: ``{name: fn(predictions, labels) -> tensor}``, computed without gradients.
        lr_scheduler_cls, lr_scheduler_params: a ``torch.optim.lr_scheduler`` class (or its
            name) and arguments (plus ``step_on``/``monitor``), run by the callback
            ``torch_lr_scheduler`` (:mod:`epochal_torch.schedulers`).
        save_path, optimizer_cls, optimizer_params, gpu_ids (``[i]``: CUDA device ``i``),
            save_freq, optim_fn, fold, callbacks, start_epoch: as in :class:`SupervisedTrainer`.
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

    The training step is :meth:`~epochal.loop.supervised.SupervisedTrainer.train_step`: a
    subclass overrides it to change what a batch does (see ``examples/distillation.py``).
    """

    losses_parameter: ClassVar[str] = "criterions"
    options_type: ClassVar[type] = TorchOptions
    default_optim_fn = staticmethod(create_optims_default_pytorch)
    network_base: ClassVar[type] = AbstractPyTorchNetwork
    default_closure = staticmethod(default_closure)
    mixed_precision_options: ClassVar[Mapping[str, float]] = AMP_OPTIONS
    losses_example: ClassVar[str] = "{'CE': torch.nn.CrossEntropyLoss()}"
    config_keys: ClassVar[Mapping[str, Any]] = CONFIG_KEYS  # checked when a job is validated

    #: What configs may name for this backend (:mod:`epochal.job.components`); any other object
    #: is named by its ``"module:attr"`` path.
    components: ClassVar[dict[str, dict[str, str]]] = component_table(
        models={"epochal_torch.models": "mlp=MLP cnn=SmallCNN"},
        losses={
            "torch.nn": "cross_entropy=CrossEntropyLoss nll=NLLLoss mse=MSELoss l1=L1Loss"
            " bce_with_logits=BCEWithLogitsLoss smooth_l1=SmoothL1Loss"
        },
        metrics={"epochal_torch.metrics": "accuracy"},
        optimizers={"torch.optim": "Adam AdamW SGD RMSprop Adagrad Adadelta Adamax NAdam RAdam"},
    )
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

    @classmethod
    def distributed_collective(cls, **trainer_kwargs: Any) -> Collective:
        """Under torchrun: this process joined to the others (:mod:`epochal_torch.distributed`)."""
        options = dataclasses.asdict(cls.options_of(trainer_kwargs))
        return join_processes(trainer_kwargs.get("gpu_ids"), **options)

    @classmethod
    def launch_processes(cls, nproc: int, argv: Sequence[str]) -> int:
        """``epochal train --nproc N``: torchrun's launcher on this machine."""
        from epochal_torch.launch import launch_processes

        return launch_processes(nproc, argv)

    @staticmethod
    def set_seed(seed: int) -> None:
        """Seed torch's generators (CPU and every GPU); the experiment seeds numpy and random."""
        torch.manual_seed(seed)

    # -- training primitives (epochal.loop.backend.TrainingPrimitives) ---------------------

    def check_arguments(self, network: torch.nn.Module) -> None:
        if not isinstance(network, torch.nn.Module):
            raise TypeError(f"network must be a torch.nn.Module, got {type(network).__name__}")

    def place_network(self, network: torch.nn.Module, gpu_ids: list[int]) -> torch.nn.Module:
        """Join torchrun's processes, pick the device (one GPU a process), set up AMP."""
        self.collective = join_processes(gpu_ids, **dataclasses.asdict(self.options))
        if self.collective.distributed:  # one GPU a process: gpu_ids[LOCAL_RANK]
            device = self.collective.device
            device_for([device.index] if device.type == "cuda" else [])  # checks it exists
        else:
            device = device_for(gpu_ids)
        self.input_device = self.output_device = device
        self.use_gpu = device.type == "cuda"
        self.amp = AmpConfig.from_args(self.precision, device)
        self.scaler = self.amp.make_scaler()
        self._labels_checked = False
        return network.to(device)

    def wrap_optimizers(self, optimizers: dict[str, Any]) -> dict[str, Any]:
        for optimizer in optimizers.values():  # delira's scale_loss; step() via the scaler
            attach_amp(optimizer, self.scaler)
        return optimizers

    def prepare_training(self) -> None:
        """Under torchrun, ``train_module`` is the network in ``DistributedDataParallel``
        (which averages gradients over the ranks); ``module`` stays the bare network, which
        checkpoints, predict and the best model use (so a checkpoint loads anywhere)."""
        self._prepare = self.network_prepare_batch or prepare_batch
        if not self.collective.distributed:
            return
        if self.on_nonfinite == "skip_batch":
            raise ValueError(
                "on_nonfinite='skip_batch' is not supported in distributed training: every rank "
                "would have to agree on each skipped batch. Use on_nonfinite='raise'"
            )
        from torch.nn.parallel import DistributedDataParallel

        device = self.input_device
        self.train_module = DistributedDataParallel(
            self.module, device_ids=[device.index] if device.type == "cuda" else None
        )

    @staticmethod
    def scheduler_callback(scheduler_cls: Any, params: dict[str, Any]) -> object:
        """``lr_scheduler_cls``, run by :class:`~epochal_torch.schedulers.TorchLRScheduler`."""
        from epochal_torch.schedulers import TorchLRScheduler

        return TorchLRScheduler(scheduler_cls, **params)

    def train_epoch(self, batches: Iterable[dict], epoch: int) -> dict[str, float]:
        """One epoch (the loops: :mod:`epochal_torch.training`); the epoch's means."""
        return train_epoch(self, batches, epoch)

    @contextlib.contextmanager
    def evaluating(self) -> Iterator[None]:
        """Eval mode, ``torch.inference_mode``, autocast with AMP; the mode restored after."""
        model = self.module
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode(), self.amp.autocast():
                yield
        finally:
            model.train(was_training)

    def eval_step(self, batch: Mapping[str, Any]) -> tuple[Any, dict[str, Any] | None]:
        data_dict = self._prepare(batch, self.input_device, self.output_device)
        predictions = self.module(data_dict["data"])
        if "label" not in data_dict:
            return predictions, None
        label = data_dict["label"]
        values = {name: loss(predictions, label).float() for name, loss in self.losses.items()}
        values.update({name: fn(predictions, label) for name, fn in self.metrics.items()})
        return predictions, values

    def stack_values(self, values: list[list[Any]]) -> np.ndarray:
        return torch.stack([stack_batch_values(v) for v in values]).cpu().numpy()

    def stack_batches(self, outputs: list[Any]) -> np.ndarray:
        return torch.cat([out.float() for out in outputs]).cpu().numpy()

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
