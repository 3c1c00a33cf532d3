"""torch's own side of NaN and Inf training losses (``on_nonfinite``): the CPU fast path, a
network's own closure, autocast and the grad scaler, the GPU. What every backend does (raise,
skip_batch, an epoch of only bad batches): ``test_conformance.py``.

A batch is made bad by one NaN in its input: its loss is NaN, and an update from it would make
every weight NaN. The fast path (one criterion, no metrics) raises at the bad batch on the CPU,
before its update; the full loop (with a metric) at the epoch's end, as a GPU does for both (no
host read per batch).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from epochal.errors import NonFiniteLossError
from epochal.testing.conformance import with_nan
from epochal_torch import AbstractPyTorchNetwork

BATCH = 32
N_BATCHES = 6
PATHS = {"plain": {"metrics": {}}, "general": {}}  # general: the fixture's accuracy metric


@pytest.fixture(scope="module")
def clean_batches(digits_split):
    train, _ = digits_split
    return [train.get_batch(range(i * BATCH, (i + 1) * BATCH)) for i in range(N_BATCHES)]


@pytest.mark.parametrize("path", PATHS)
def test_the_fast_path_stops_before_the_bad_update(torch_trainer, clean_batches, path):
    trainer = torch_trainer(**PATHS[path])
    of = f" of {N_BATCHES}" if path == "general" else ""  # the epoch's end knows the count
    with pytest.raises(NonFiniteLossError, match=rf"epoch 1, batch 3{of} \(counting from 1\)"):
        trainer._train_single_epoch(with_nan(clean_batches, {2}), 1)
    if path == "plain":  # stopped before the bad update: the weights in memory are good too
        assert all(torch.isfinite(p).all() for p in trainer.module.parameters())


class OwnStepNet(AbstractPyTorchNetwork):
    """A network with its own closure (it steps its optimizer itself)."""

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU())
        self.head = torch.nn.Linear(32, 10)

    def forward(self, x):
        return self.head(self.body(x))

    @staticmethod
    def closure(model, data_dict, optimizers, losses, metrics, fold=0, **kwargs):
        predictions = model(data_dict["data"])
        loss_vals = {key: fn(predictions, data_dict["label"]) for key, fn in losses.items()}
        optimizers["default"].zero_grad()
        loss_vals["CE"].backward()
        optimizers["default"].step()
        return {}, loss_vals, predictions


def test_a_custom_closure_raises_but_cannot_skip(torch_trainer, clean_batches):
    with pytest.raises(ValueError, match=r"OwnStepNet has its own closure.*skip the step yourself"):
        torch_trainer(OwnStepNet(), on_nonfinite="skip_batch")
    trainer = torch_trainer(OwnStepNet())
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, batch 3 of 6 .*: loss 'CE' is nan"):
        trainer._train_single_epoch(with_nan(clean_batches, {2, 5}), 1)


@pytest.mark.parametrize("on_nonfinite", ["raise", "skip_batch"])
def test_bfloat16_autocast_on_the_cpu(torch_trainer, clean_batches, on_nonfinite):
    trainer = torch_trainer(mixed_precision=True, on_nonfinite=on_nonfinite)
    assert trainer.amp.enabled and trainer.amp.dtype == torch.bfloat16
    batches = with_nan(clean_batches, {4})
    if on_nonfinite == "raise":
        with pytest.raises(NonFiniteLossError, match=r"epoch 1, batch 5 of 6 .*: loss 'CE' is nan"):
            trainer._train_single_epoch(batches, 1)
    else:
        metrics = trainer._train_single_epoch(batches, 1)
        assert metrics["nonfinite_batches"] == 1 and np.isfinite(metrics["CE"])


@pytest.mark.parametrize("on_nonfinite", ["raise", "skip_batch"])
def test_steps_the_grad_scaler_skips_are_no_errors(torch_trainer, clean_batches, on_nonfinite):
    # float16 with a loss scale of 2**40: the scaled gradients overflow, GradScaler skips those
    # steps and lowers its scale. The losses are finite: nothing to raise, nothing to count.
    trainer = torch_trainer(
        mixed_precision=True,
        mixed_precision_kwargs={"dtype": "float16", "init_scale": 2.0**40},
        on_nonfinite=on_nonfinite,
    )
    metrics = trainer._train_single_epoch(clean_batches, 1)
    assert trainer.scaler.get_scale() < 2.0**40  # the scaler did skip steps
    assert np.isfinite(metrics["CE"])
    assert metrics.get("nonfinite_batches", 0) == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("path", PATHS)
def test_on_a_gpu_the_check_waits_for_the_epochs_end(torch_trainer, clean_batches, path):
    trainer = torch_trainer(gpu_ids=[0], **PATHS[path])
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, batch 3 of 6 .*: loss 'CE' is nan"):
        trainer._train_single_epoch(with_nan(clean_batches, {2}), 1)
    skipping = torch_trainer(gpu_ids=[0], on_nonfinite="skip_batch", **PATHS[path])
    metrics = skipping._train_single_epoch(with_nan(clean_batches, {2}), 1)
    assert metrics["nonfinite_batches"] == 1 and np.isfinite(metrics["CE"])
