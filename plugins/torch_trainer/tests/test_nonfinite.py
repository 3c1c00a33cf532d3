"""NaN and Inf training losses (``on_nonfinite``), with real training on digits batches.

A batch is made bad by one NaN in its input: its loss is NaN, and an update from it would make
every weight NaN. "plain" runs the trainer's fast path (one criterion, no metrics), "general"
the full loop (with a metric); on the CPU the first raises at the bad batch, before its update,
the second at the epoch's end, as a GPU does for both (no host read per batch).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from epochal.errors import EpochalError, NonFiniteLossError
from epochal_torch import AbstractPyTorchNetwork

BATCH = 32
N_BATCHES = 6
PATHS = {"plain": {"metrics": {}}, "general": {}}  # general: the fixture's accuracy metric


@pytest.fixture(scope="module")
def clean_batches(digits_split):
    train, _ = digits_split
    return [train.get_batch(range(i * BATCH, (i + 1) * BATCH)) for i in range(N_BATCHES)]


def with_nan(batches, bad):
    """A copy of ``batches`` where the batches at the indices ``bad`` hold one NaN input."""
    out = []
    for index, batch in enumerate(batches):
        batch = {key: value.copy() for key, value in batch.items()}
        if index in bad:
            batch["data"][3, 7] = np.nan
        out.append(batch)
    return out


class EpochBatches:
    """The training data of ``trainer.train``: epoch ``e`` gets ``per_epoch[e - 1]``."""

    def __init__(self, *per_epoch):
        self.per_epoch = per_epoch

    def get_batchgen(self, seed=None):
        return list(self.per_epoch[seed - 1])


def weights(trainer):
    return {key: value.clone() for key, value in trainer.module.state_dict().items()}


@pytest.mark.parametrize("path", PATHS)
def test_raise_names_epoch_batch_and_key_and_keeps_earlier_checkpoints(
    torch_trainer, managers, clean_batches, tmp_path, path
):
    trainer = torch_trainer(save_path=tmp_path, **PATHS[path])
    assert trainer.on_nonfinite == "raise"  # the default
    _, valid = managers()
    data = EpochBatches(clean_batches, with_nan(clean_batches, {3}))
    with pytest.raises(NonFiniteLossError) as caught:
        trainer.train(3, data, valid, val_score_key="CE", val_score_mode="lowest")
    message = str(caught.value)
    of = f" of {N_BATCHES}" if path == "general" else ""  # the epoch's end knows the count
    assert f"epoch 2, batch 4{of} (counting from 1): loss 'CE' is nan" in message
    assert "learning rate" in message and "skip_batch" in message
    assert isinstance(caught.value, EpochalError) and isinstance(caught.value, FloatingPointError)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint_best.pt",
        "checkpoint_epoch_1.pt",
        "checkpoint_last.pt",
    ]  # nothing of epoch 2
    for name in ("checkpoint_last.pt", "checkpoint_best.pt"):
        state = torch.load(tmp_path / name, weights_only=True)
        assert state["epoch"] == 1
        assert all(torch.isfinite(value).all() for value in state["model"].values())
    if path == "plain":  # stopped before the bad update: the weights in memory are good too
        assert all(torch.isfinite(p).all() for p in trainer.module.parameters())


@pytest.mark.parametrize("path", PATHS)
def test_skip_batch_skips_exactly_the_bad_batches(torch_trainer, clean_batches, path):
    bad = {1, 4}
    skipping = torch_trainer(on_nonfinite="skip_batch", **PATHS[path])
    reference = torch_trainer(**PATHS[path])  # same seed, same initial weights
    start, start_reference = weights(skipping), weights(reference)
    assert all(torch.equal(start[key], start_reference[key]) for key in start)
    good = [batch for index, batch in enumerate(clean_batches) if index not in bad]
    for epoch in (1, 2):
        metrics = skipping._train_single_epoch(with_nan(clean_batches, bad), epoch)
        expected = reference._train_single_epoch(good, epoch)
        assert metrics.pop("nonfinite_batches") == len(bad)
        assert metrics == pytest.approx(expected, rel=1e-6)  # the mean leaves the NaNs out
    after, expected_weights = weights(skipping), weights(reference)
    assert all(torch.equal(after[key], expected_weights[key]) for key in after)
    optimizer, other = skipping.optimizers["default"], reference.optimizers["default"]
    steps = [int(state["step"]) for state in optimizer.state.values()]
    assert steps == [int(state["step"]) for state in other.state.values()]
    assert steps and set(steps) == {2 * (N_BATCHES - len(bad))}  # Adam counted no skipped step


def test_skip_batch_reports_zero_in_a_clean_epoch(torch_trainer, clean_batches):
    trainer = torch_trainer(on_nonfinite="skip_batch")
    assert trainer._train_single_epoch(clean_batches, 1)["nonfinite_batches"] == 0


@pytest.mark.parametrize("path", PATHS)
def test_an_epoch_of_only_bad_batches_raises_and_changes_nothing(
    torch_trainer, clean_batches, path
):
    trainer = torch_trainer(on_nonfinite="skip_batch", **PATHS[path])
    before = weights(trainer)
    with pytest.raises(NonFiniteLossError, match="epoch 1: the loss was non-finite in all 6 "):
        trainer._train_single_epoch(with_nan(clean_batches, set(range(N_BATCHES))), 1)
    assert trainer.optimizers["default"].state_dict()["state"] == {}  # Adam never stepped
    assert all(torch.equal(before[key], value) for key, value in weights(trainer).items())


def test_on_nonfinite_is_checked(torch_trainer):
    with pytest.raises(ValueError, match=r"on_nonfinite must be one of \('raise', 'skip_batch'\)"):
        torch_trainer(on_nonfinite="skip")


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
