"""TF's own side of NaN and Inf training losses (``on_nonfinite``): one graph for good and bad
batches, a network's own closure, mixed precision and the loss scale. What every backend does
(raise, skip_batch, an epoch of only bad batches): ``test_conformance.py``.

A batch is made bad by one NaN in its input: its loss is NaN, and an update from it would make
weights NaN. The networks use tanh, not ReLU: TensorFlow's ReLU turns NaN into 0, so with it a
NaN input (or NaN weights) can leave the loss finite. The compiled step handles both modes in
the graph (no host read per batch): "raise" records the first bad batch and raises at the
epoch's end, "skip_batch" makes the update under ``tf.cond``.
"""

from __future__ import annotations

import numpy as np
import pytest

from epochal.errors import NonFiniteLossError
from epochal.testing.conformance import with_nan
from epochal_tf import AbstractTfNetwork
from epochal_tf._tf import keras, tf

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


def test_skip_batch_traces_one_graph_for_good_and_bad_batches(trainer_for, clean_batches):
    skipping = trainer_for(on_nonfinite="skip_batch")
    for epoch in (1, 2):  # 5: the partial last batch
        metrics = skipping._train_single_epoch(with_nan(clean_batches, {1, 5}), epoch)
        assert metrics["nonfinite_batches"] == 2
    assert skipping.steps.trace_count == 1  # one graph, bad batches or not


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
