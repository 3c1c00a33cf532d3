"""PyTorchNetworkTrainer's training epoch: the general loop (custom closures, several
criterions, metrics, AMP, per-batch hooks) and the fast path for the common case, which
does the same arithmetic with nothing per batch besides the step. Each takes the trainer
whose network (``train_module``: the DDP wrapper in distributed training), optimizers and
settings it uses."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from epochal.data.batching import batch_length
from epochal.errors import NonFiniteLossError
from epochal_torch.epoch import finish_epoch
from epochal_torch.labels import check_first_batch
from epochal_torch.networks import prepare_batch, supervised_step, to_tensor

__all__ = ["custom_step", "train_epoch", "train_plain_epoch"]


def train_epoch(trainer: Any, batchgen: Iterable[dict], epoch: int) -> dict[str, float]:
    """``trainer``'s epoch over ``batchgen``: the fast path when it applies, else the general
    loop (closures, several criterions, metrics, AMP, a batch hook); the epoch's means."""
    if not trainer._labels_checked:  # once per trainer: labels that cannot fit the loss
        trainer._labels_checked = True
        batchgen = check_first_batch(trainer, batchgen)
    if (
        trainer.uses_default_step
        and trainer._prepare is prepare_batch
        and trainer.batch_end_hook is None
        and trainer.scaler is None
        and not trainer.amp.enabled
        and not trainer.metrics
        and len(trainer.losses) == 1
    ):
        return train_plain_epoch(trainer, batchgen, epoch)  # the common case, ~5% faster
    model, optimizer = trainer.train_module, trainer.optimizers.get("default")
    criterions, metrics = trainer.losses, trainer.metrics
    model.train()
    hook, scaler, default = trainer.batch_end_hook, trainer.scaler, trainer.uses_default_step
    autocast = trainer.amp.autocast if trainer.amp.enabled else None
    # No loss read per batch (docs/architecture.md, "Invariants"), unless skip_batch must
    # decide before each update;
    # with "raise" the epoch's end finds a non-finite batch (epochal_torch.nonfinite).
    skip = trainer.on_nonfinite == "skip_batch"
    history: dict[str, list[Any]] = {}
    sizes: list[int] = []
    loss_names: tuple[str, ...] = ()
    skipped, batch_nr = 0, -1
    for batch_nr, batch in enumerate(batchgen):
        data_dict = trainer._prepare(batch, trainer.input_device, trainer.output_device)
        if default:
            metric_vals, loss_vals, _, stepped = supervised_step(
                model, data_dict, optimizer, criterions, metrics, autocast, scaler, skip
            )
        else:
            loss_vals, metric_vals = custom_step(trainer, data_dict, autocast)
            stepped = True
        if not loss_names:
            loss_names = tuple(loss_vals)
        if stepped:
            if scaler is not None:
                scaler.update()
            for name, value in loss_vals.items():
                history.setdefault(name, []).append(value.detach())
            for name, value in metric_vals.items():
                history.setdefault(name, []).append(value)
            sizes.append(batch_length(batch))
        else:
            skipped += 1
        if hook is not None:  # every batch, skipped ones too (their losses are not finite)
            hook(
                trainer=trainer,
                epoch=epoch,
                batch_nr=batch_nr,
                losses=loss_vals,
                metrics=metric_vals,
            )
    return finish_epoch(
        history, sizes, loss_names, epoch, batch_nr + 1, skipped, skip=skip, checked=skip
    )


def custom_step(
    trainer: Any, data_dict: dict[str, Any], autocast: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``trainer.train_step`` (a closure, or a subclass's own step): ``(losses, metrics)``.
    A custom step does its own backward: with AMP, autocast has to enclose it all."""
    if autocast is None:
        return trainer.train_step(data_dict)
    with autocast():
        return trainer.train_step(data_dict)


def train_plain_epoch(trainer: Any, batchgen: Iterable[dict], epoch: int) -> dict[str, float]:
    """:func:`default_closure`'s step written into the loop, for the common case (a plain
    module, one criterion, no metrics, no AMP, no per-batch hook): same arithmetic, no
    per-batch dicts or calls besides the step itself. Only ``data`` and ``label`` are
    converted, as the step reads nothing else."""
    model, optimizer = trainer.train_module, trainer.optimizers["default"]
    input_device, output_device = trainer.input_device, trainer.output_device
    ((name, criterion),) = trainer.criterions.items()
    skip = trainer.on_nonfinite == "skip_batch"
    # On the CPU a loss read is no device sync, and a Python float does not keep one small
    # tensor per batch alive, which costs a large network ~1-2% (allocator); the read also
    # serves the non-finite check, before the update. On a GPU the losses stay on the
    # device until the epoch ends (docs/architecture.md), unless skip_batch needs them per batch.
    read_each = skip or output_device.type == "cpu"
    isfinite = math.isfinite
    model.train()
    losses: list[Any] = []
    sizes: list[int] = []
    skipped, batch_nr = 0, -1
    for batch_nr, batch in enumerate(batchgen):
        data = to_tensor(batch["data"], input_device)
        loss = criterion(model(data), to_tensor(batch["label"], output_device))
        if not read_each:
            value = loss.detach()
        elif not isfinite(value := loss.item()):
            if not skip:
                raise NonFiniteLossError.at_batch(epoch, batch_nr + 1, None, name, value)
            skipped += 1
            continue
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(value)
        sizes.append(batch_length(batch))
    return finish_epoch(
        {name: losses},
        sizes,
        (name,),
        epoch,
        batch_nr + 1,
        skipped,
        skip=skip,
        checked=read_each,
    )
