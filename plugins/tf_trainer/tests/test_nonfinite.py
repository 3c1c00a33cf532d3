"""NaN and Inf training losses (``on_nonfinite``), with real training on digits batches.

A batch is made bad by one NaN in its input: its loss is NaN, and an update from it would make
weights NaN. The networks use tanh, not ReLU: TensorFlow's ReLU turns NaN into 0, so with it a
NaN input (or NaN weights) can leave the loss finite. The compiled step handles both modes in
the graph (no host read per batch): "raise" records the first bad batch and raises at the
epoch's end, "skip_batch" makes the update under ``tf.cond``.
"""

from __future__ import annotations

import numpy as np
import pytest

from epochal.errors import EpochalError, NonFiniteLossError
from epochal_tf import AbstractTfNetwork
from epochal_tf._tf import keras, tf
from epochal_tf.trainer import TfNetworkTrainer

BATCH = 32
N_BATCHES = 6


@pytest.fixture(scope="module")
def clean_batches(digits_split):
    train, _ = digits_split
    batches = [train.get_batch(range(i * BATCH, (i + 1) * BATCH)) for i in range(N_BATCHES)]
    batches[-1] = {key: value[:20] for key, value in batches[-1].items()}  # a partial last one
    return batches


def tanh_mlp():
    return keras.Sequential(
        [keras.Input((64,)), keras.layers.Dense(32, activation="tanh"), keras.layers.Dense(10)]
    )


@pytest.fixture
def trainer_for(tf_trainer):
    """``trainer_for(**kwargs)``: the ``tf_trainer`` fixture on :func:`tanh_mlp`."""

    def build(network=None, **kwargs):
        keras.utils.set_random_seed(0)  # the network's initial weights, too
        return tf_trainer(network if network is not None else tanh_mlp(), **kwargs)

    return build


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
    return [v.numpy() for v in trainer.module.variables]


def test_raise_names_epoch_batch_and_key_and_keeps_earlier_checkpoints(
    trainer_for, managers, clean_batches, tmp_path
):
    trainer = trainer_for(save_path=tmp_path)
    assert trainer.on_nonfinite == "raise"  # the default
    _, valid = managers()
    data = EpochBatches(clean_batches, with_nan(clean_batches, {3, 5}))
    with pytest.raises(NonFiniteLossError) as caught:
        trainer.train(3, data, valid, val_score_key="accuracy")
    message = str(caught.value)
    assert "epoch 2, batch 4 of 6 (counting from 1): loss 'CE' is nan" in message
    assert "learning rate" in message and "skip_batch" in message
    assert isinstance(caught.value, EpochalError) and isinstance(caught.value, FloatingPointError)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint_best.tf.npz",
        "checkpoint_epoch_1.tf.npz",
        "checkpoint_last.tf.npz",
    ]  # nothing of epoch 2
    for name in ("checkpoint_last", "checkpoint_best"):
        state = TfNetworkTrainer.load_state(str(tmp_path / name))
        assert state["epoch"] == 1 and all(np.isfinite(w).all() for w in state["model"])
    trainer.update_state(str(tmp_path / "checkpoint_last"))  # and it loads back into a trainer
    assert all(np.isfinite(w).all() for w in weights(trainer))


def test_skip_batch_skips_exactly_the_bad_batches_without_retracing(trainer_for, clean_batches):
    bad = {1, 5}  # 5: the partial last batch
    skipping = trainer_for(on_nonfinite="skip_batch")
    reference = trainer_for()  # same seed, same initial weights
    assert all(
        np.array_equal(a, b) for a, b in zip(weights(skipping), weights(reference), strict=True)
    )
    good = [batch for index, batch in enumerate(clean_batches) if index not in bad]
    for epoch in (1, 2):
        metrics = skipping._train_single_epoch(with_nan(clean_batches, bad), epoch)
        expected = reference._train_single_epoch(good, epoch)
        assert metrics.pop("nonfinite_batches") == len(bad)
        assert metrics == pytest.approx(expected, rel=1e-6)  # the means leave the NaNs out
    assert all(
        np.array_equal(a, b) for a, b in zip(weights(skipping), weights(reference), strict=True)
    )
    optimizer, other = skipping.optimizers["default"], reference.optimizers["default"]
    assert int(optimizer.iterations) == int(other.iterations) == 2 * (N_BATCHES - len(bad))
    for mine, theirs in zip(optimizer.variables, other.variables, strict=True):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())  # Adam's moments too
    assert skipping.steps.trace_count == 1  # one graph, bad batches or not


def test_skip_batch_reports_zero_in_a_clean_epoch(trainer_for, clean_batches):
    trainer = trainer_for(on_nonfinite="skip_batch")
    assert trainer._train_single_epoch(clean_batches, 1)["nonfinite_batches"] == 0


def test_an_epoch_of_only_bad_batches_raises_and_changes_nothing(trainer_for, clean_batches):
    trainer = trainer_for(on_nonfinite="skip_batch")
    before = weights(trainer)
    with pytest.raises(NonFiniteLossError, match="epoch 1: the loss was non-finite in all 6 "):
        trainer._train_single_epoch(with_nan(clean_batches, set(range(N_BATCHES))), 1)
    assert int(trainer.optimizers["default"].iterations) == 0
    assert all(np.array_equal(a, b) for a, b in zip(before, weights(trainer), strict=True))


def test_on_nonfinite_is_checked(trainer_for):
    with pytest.raises(ValueError, match=r"on_nonfinite must be one of \('raise', 'skip_batch'\)"):
        trainer_for(on_nonfinite=None)


class OwnStepNet(AbstractTfNetwork):
    """A network with its own closure (it applies its gradients itself)."""

    def __init__(self):
        super().__init__()
        self.body = tanh_mlp()

    def call(self, x, training=False):
        return self.body(x, training=training)

    @staticmethod
    def closure(model, data_dict, optimizers, losses, metrics, fold=0, **kwargs):
        with tf.GradientTape() as tape:
            predictions = model(data_dict["data"], training=True)
            loss_vals = {k: fn(data_dict["label"], predictions) for k, fn in losses.items()}
        grads = tape.gradient(loss_vals["CE"], model.trainable_variables)
        optimizers["default"].apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return {}, loss_vals, predictions


def test_a_custom_closure_raises_but_cannot_skip(trainer_for, clean_batches):
    network = OwnStepNet()
    network.build((None, 64))
    with pytest.raises(ValueError, match=r"OwnStepNet has its own closure.*skip the step yourself"):
        trainer_for(network, on_nonfinite="skip_batch")
    trainer = trainer_for(network, metrics={})
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, batch 3 of 6 .*: loss 'CE' is nan"):
        trainer._train_single_epoch(with_nan(clean_batches, {2, 4}), 1)


def test_mixed_bfloat16_on_the_cpu(trainer_for, clean_batches):
    trainer = trainer_for(mixed_precision=True)
    assert trainer.mixed_precision.policy == "mixed_bfloat16"
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, batch 5 of 6 .*: loss 'CE' is nan"):
        trainer._train_single_epoch(with_nan(clean_batches, {4}), 1)
    skipping = trainer_for(mixed_precision=True, on_nonfinite="skip_batch")
    metrics = skipping._train_single_epoch(with_nan(clean_batches, {4}), 1)
    assert metrics["nonfinite_batches"] == 1 and np.isfinite(metrics["CE"])


def test_a_loss_scale_optimizer_is_skipped_whole(trainer_for, clean_batches):
    # mixed float16 wraps the optimizer in a LossScaleOptimizer (on a GPU by default; here
    # asked for on the CPU). A NaN loss must leave its loss scale and its step count alone.
    trainer = trainer_for(
        mixed_precision=True,
        mixed_precision_kwargs={"dtype": "float16"},
        on_nonfinite="skip_batch",
    )
    optimizer = trainer.optimizers["default"]
    assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    scale = float(optimizer.dynamic_scale)
    with pytest.raises(NonFiniteLossError, match="all 6 batches"):
        trainer._train_single_epoch(with_nan(clean_batches, set(range(N_BATCHES))), 1)
    assert float(optimizer.dynamic_scale) == scale and int(optimizer.iterations) == 0
