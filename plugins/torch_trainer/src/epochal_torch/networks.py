"""Networks: delira's ``AbstractPyTorchNetwork`` and the default supervised step.

A network that subclasses :class:`AbstractPyTorchNetwork` brings its own ``closure`` (one
training step: forward, losses, backward, optimizer steps), as in delira; a plain
``torch.nn.Module`` is trained by :func:`default_closure`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

__all__ = [
    "AbstractPyTorchNetwork",
    "default_closure",
    "prepare_batch",
    "supervised_step",
    "to_tensor",
]


def to_tensor(value: Any, device: torch.device) -> Any:
    if isinstance(value, np.ndarray):
        tensor = torch.from_numpy(value)
    elif isinstance(value, torch.Tensor):
        tensor = value
    else:
        return value  # strings, lists of paths...: passed through untouched
    if tensor.device != device:
        if device.type == "cuda" and tensor.device.type == "cpu" and not tensor.is_pinned():
            # A copy from pageable memory makes the host wait for the GPU's queue every batch;
            # from pinned memory it is asynchronous (torch keeps the buffer until it is done).
            tensor = tensor.pin_memory()
        tensor = tensor.to(device, non_blocking=True)
    return tensor


def prepare_batch(
    batch: Mapping[str, Any], input_device: torch.device, output_device: torch.device
) -> dict[str, Any]:
    """Tensors on the right devices, dtypes kept (class labels stay integers), batch untouched.

    ``data`` goes to ``input_device``, every other array to ``output_device``.
    """
    return {
        key: to_tensor(value, input_device if key == "data" else output_device)
        for key, value in batch.items()
    }


def default_closure(
    model: torch.nn.Module,
    data_dict: dict[str, Any],
    optimizers: dict[str, torch.optim.Optimizer],
    losses: dict[str, Any],
    metrics: dict[str, Any],
    fold: int = 0,
    **kwargs: Any,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor]:
    """One supervised step: ``data`` -> network -> every criterion on ``label``, summed.

    Returns ``(metric_vals, loss_vals, predictions)`` as tensors (no host sync).
    ``kwargs["autocast"]``, when given, is entered around the forward pass and the losses only;
    ``kwargs["scaler"]`` is the trainer's ``GradScaler`` for float16.
    """
    metric_vals, loss_vals, predictions, _ = supervised_step(
        model,
        data_dict,
        optimizers["default"],
        losses,
        metrics,
        kwargs.get("autocast"),
        kwargs.get("scaler"),
    )
    return metric_vals, loss_vals, predictions


def supervised_step(
    model: torch.nn.Module,
    data_dict: dict[str, Any],
    optimizer: torch.optim.Optimizer,
    losses: dict[str, Any],
    metrics: dict[str, Any],
    autocast: Any = None,
    scaler: torch.amp.GradScaler | None = None,
    check_finite: bool = False,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor, bool]:
    """:func:`default_closure`'s step, plus ``stepped`` (whether the update was made).

    With ``check_finite`` the summed loss is read on the host (free on the CPU, a sync on a
    GPU) before the backward pass; when it is NaN or infinite the step stops there: no
    gradients, no optimizer step (its state stays as it was), no metrics, ``stepped`` False.
    """
    with autocast() if autocast is not None else _nullcontext:
        predictions = model(data_dict["data"])
        label = data_dict["label"]
        loss_vals = {name: criterion(predictions, label) for name, criterion in losses.items()}
    total = _sum(loss_vals)
    if check_finite and not math.isfinite(total.item()):
        return {}, loss_vals, predictions, False
    optimizer.zero_grad(set_to_none=True)
    (total if scaler is None else scaler.scale(total)).backward()
    optimizer.step()  # with a GradScaler, the trainer routed step() through it
    if not metrics:  # entering no_grad costs ~3 µs a step in the loop: only when needed
        return {}, loss_vals, predictions, True
    with torch.no_grad():
        metric_vals = {name: fn(predictions, label) for name, fn in metrics.items()}
    return metric_vals, loss_vals, predictions, True


class _NullContext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_nullcontext = _NullContext()


def _sum(loss_vals: dict[str, torch.Tensor]) -> torch.Tensor:
    values = iter(loss_vals.values())
    try:
        total = next(values)  # no "0 +": one tensor op less per step
    except StopIteration:
        raise ValueError(
            "no criterions given: pass criterions={'CE': torch.nn.CrossEntropyLoss()}"
        ) from None
    for value in values:
        total = total + value
    return total


class AbstractPyTorchNetwork(torch.nn.Module):
    """delira's base class: a ``torch.nn.Module`` with its own training step.

    Override :meth:`closure` for custom steps (GANs, several optimizers). A delira closure
    that does ``with optimizers['default'].scale_loss(loss) as scaled: scaled.backward()``
    runs unchanged, with and without mixed precision.
    """

    #: One training step, delira's signature; the default is :func:`default_closure`.
    closure = staticmethod(default_closure)
    #: Batch dict of numpy arrays -> dict of tensors on the given devices.
    prepare_batch = staticmethod(prepare_batch)
