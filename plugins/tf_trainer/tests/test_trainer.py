"""TfNetworkTrainer end to end on digits: train, validate, predict, tracing, mixed precision."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest

from epochal import hookimpl
from epochal.plugins.registry import get_trainer
from epochal_tf import AbstractTfNetwork, create_optims_default_tf
from epochal_tf._tf import keras, tf
from epochal_tf.trainer import TfNetworkTrainer

from .conftest import cross_entropy, mlp


def numpy_batches(n_batches, last=13, seed=0):
    """Random digits-shaped batches of 64, the last one partial."""
    rng = np.random.default_rng(seed)
    sizes = [64] * (n_batches - 1) + [last]
    return [
        {
            "data": rng.standard_normal((size, 64), dtype=np.float32),
            "label": rng.integers(0, 10, size),
        }
        for size in sizes
    ]


def test_registered_as_tf_and_learns_digits(tf_trainer, managers):
    assert get_trainer("tf") is TfNetworkTrainer
    trainer = tf_trainer()
    train, valid = managers(workers=2)
    network = trainer.train(4, train, valid, val_score_key="accuracy")
    assert network is trainer.module and trainer.best_val_score > 0.9
    predictions, labels, metrics = trainer.predict(valid.get_batchgen())
    assert predictions.shape == (valid.n_samples, 10) and predictions.dtype == np.float32
    assert labels[0].dtype == np.int64 and labels[0].shape == (valid.n_samples,)
    assert metrics["accuracy"] == pytest.approx(np.mean(predictions.argmax(1) == labels[0]))
    assert set(metrics) == {"CE", "accuracy"}
    assert trainer.steps.trace_count == 2  # one train step, one predict step, for all epochs


def test_the_step_is_traced_once_despite_a_partial_last_batch(tf_trainer):
    trainer = tf_trainer()
    batches = numpy_batches(5)
    means = [trainer._train_single_epoch(batches, epoch) for epoch in (1, 2, 3)]
    assert trainer.steps.trace_count == 1
    assert means[2]["CE"] < means[0]["CE"]
    trainer.predict(batches)
    trainer.predict(batches, batch_size=100)  # other batch sizes, the same graph
    assert trainer.steps.trace_count == 2
    # a batch with more keys than the step reads runs the same graph too
    extra = [{**batch, "name": ["a"] * len(batch["label"])} for batch in batches]
    trainer._train_single_epoch(extra, 4)
    assert trainer.steps.trace_count == 2


def test_epoch_means_are_sample_weighted_and_match_predict_without_updates(tf_trainer):
    batches = numpy_batches(3, last=7)
    trainer = tf_trainer(optimizer_cls="sgd", optimizer_params={"learning_rate": 0.0})
    means = trainer._train_single_epoch(batches, 1)
    _, _, metrics = trainer.predict(batches)
    assert means == pytest.approx(metrics, rel=1e-6)


def test_no_host_reads_per_batch(tf_trainer, monkeypatch):
    reads = []
    eager_tensor = type(tf.constant(0.0))
    original = eager_tensor.numpy

    def counting(self):
        reads.append(1)
        return original(self)

    monkeypatch.setattr(eager_tensor, "numpy", counting)
    counts = {}
    for n_batches in (4, 16):
        trainer = tf_trainer(optimizer_cls=keras.optimizers.SGD)
        trainer._train_single_epoch(numpy_batches(n_batches), 1)  # first epoch: traces
        reads.clear()
        trainer._train_single_epoch(numpy_batches(n_batches), 2)
        counts[n_batches] = len(reads)
    assert counts[4] == counts[16] == 1, counts  # read once per epoch, not per batch


class TwoStepNet(AbstractTfNetwork):
    """A delira-style network with its own closure (two SGD updates per batch)."""

    def __init__(self):
        super().__init__()
        self.body = mlp()

    def call(self, x, training=False):
        return self.body(x, training=training)

    @staticmethod
    def closure(model, data_dict, optimizers, losses, metrics, fold=0, **kwargs):
        for _ in range(kwargs.get("updates", 1)):
            with tf.GradientTape() as tape:
                predictions = model(data_dict["data"], training=True)
                loss_vals = {k: fn(data_dict["label"], predictions) for k, fn in losses.items()}
            grads = tape.gradient(loss_vals["CE"], model.trainable_variables)
            optimizers["default"].apply_gradients(
                zip(grads, model.trainable_variables, strict=True)
            )
        metric_vals = {k: fn(predictions, data_dict["label"]) for k, fn in metrics.items()}
        return metric_vals, loss_vals, predictions


def test_custom_closure_with_kwargs(tf_trainer, managers):
    network = TwoStepNet()
    network.build((None, 64))
    trainer = tf_trainer(network, updates=2)
    train, valid = managers()
    trainer.train(2, train, valid, val_score_key="accuracy")
    assert trainer.best_val_score > 0.85
    # two updates per batch: the optimizer counted twice the batches of two epochs
    assert int(trainer.optimizers["default"].iterations) == 2 * 2 * len(list(train.get_batchgen()))


def test_mixed_precision_is_scoped_to_the_trainers_network(tf_trainer, managers):
    before = keras.config.dtype_policy().name
    trainer = tf_trainer(mixed_precision=True)
    assert trainer.mixed_precision.policy == "mixed_bfloat16"  # the CPU's 16-bit type
    layers = trainer.module.layers
    assert {layer.compute_dtype for layer in layers} == {"bfloat16"}
    assert {v.dtype for v in trainer.module.trainable_variables} == {"float32"}  # master weights
    assert keras.config.dtype_policy().name == before == "float32"
    assert mlp().layers[0].compute_dtype == "float32"  # other models keep the global policy
    train, valid = managers()
    trainer.train(3, train, valid, val_score_key="accuracy")
    assert trainer.best_val_score > 0.85
    assert trainer.module(np.zeros((1, 64), np.float32)).dtype == "bfloat16"
    assert not isinstance(trainer.optimizers["default"], keras.optimizers.LossScaleOptimizer)


def test_mixed_precision_kwargs(tf_trainer):
    with pytest.warns(UserWarning, match=r"\['enable_caching', 'verbose'\] are apex"):
        trainer = tf_trainer(
            mixed_precision=True, mixed_precision_kwargs={"enable_caching": True, "verbose": 0}
        )
    assert trainer.mixed_precision.enabled
    with pytest.raises(ValueError, match=r"unknown mixed_precision_kwargs \['opt_lvl'\]"):
        tf_trainer(mixed_precision=True, mixed_precision_kwargs={"opt_lvl": "O1"})
    with pytest.raises(ValueError, match="'float8' is not supported"):
        tf_trainer(mixed_precision=True, mixed_precision_kwargs={"dtype": "float8"})
    off = tf_trainer(mixed_precision=True, mixed_precision_kwargs={"enabled": False})
    assert not off.mixed_precision.enabled and off.module.layers[0].compute_dtype == "float32"
    fp16 = tf_trainer(
        mixed_precision=True, mixed_precision_kwargs={"dtype": "float16", "initial_scale": 1024.0}
    )  # float16 scales the loss, also on the CPU
    optimizer = fp16.optimizers["default"]
    assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    assert float(optimizer.dynamic_scale) == 1024.0


def test_create_optims_default_tf_builds_the_optimizer():
    network = mlp()
    optimizers = create_optims_default_tf(network, keras.optimizers.SGD, learning_rate=0.5)
    assert list(optimizers) == ["default"] and optimizers["default"].built
    assert float(optimizers["default"].learning_rate) == 0.5
    by_name = create_optims_default_tf(network, "adam", learning_rate=0.1)["default"]
    assert isinstance(by_name, keras.optimizers.Adam)


def test_gpu_ids_are_checked(tf_trainer):
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("this machine has a GPU")
    with pytest.raises(ValueError, match=r"gpu_ids=\[0\] but TensorFlow sees these GPUs: none"):
        tf_trainer(gpu_ids=[0])
    with pytest.raises(ValueError, match=r"one trainer drives one GPU; .*tf\.distribute"):
        tf_trainer(gpu_ids=[0, 1])
    assert tf_trainer(gpu_ids=[]).device == "/CPU:0"


def test_lr_scheduler_cls_goes_through_the_callbacks_plugin(tf_trainer, managers):
    train, valid = managers()
    for scheduler in ("tf_step_decay", "StepDecay"):
        trainer = tf_trainer(
            lr_scheduler_cls=scheduler, lr_scheduler_params={"step_size": 1, "gamma": 0.5}
        )
        trainer.train(3, train, valid)
        rate = float(trainer.optimizers["default"].learning_rate)
        assert rate == pytest.approx(0.01 * 0.5**2)  # set at the begin of epochs 1, 2, 3
    with pytest.raises(ValueError, match="lr_scheduler_cls 'nope' is unknown"):
        tf_trainer(lr_scheduler_cls="nope")


def test_early_stopping_ends_the_run(tf_trainer, managers):
    from epochal_callbacks.early_stopping import EarlyStopping

    # lr so small that val_CE cannot improve by min_delta: patience runs out after 2 epochs
    trainer = tf_trainer(
        optimizer_params={"learning_rate": 1e-7},
        callbacks=[EarlyStopping("val_CE", mode="lowest", patience=2, min_delta=0.01)],
    )
    train, valid = managers()
    epochs = []

    class Count:
        @hookimpl
        def epochal_at_epoch_end(self, epoch):
            epochs.append(epoch)

    trainer.register_callback(Count())
    trainer.train(10, train, valid, val_score_key="CE", val_score_mode="lowest")
    assert epochs == [1, 2, 3] and trainer.state["stop_training"]


def test_bad_arguments(tf_trainer):
    with pytest.raises(TypeError, match=r"network must be a keras\.Model"):
        TfNetworkTrainer(object(), None, {"CE": cross_entropy()}, "sgd")
    with pytest.raises(ValueError, match="losses is empty"):
        TfNetworkTrainer(mlp(), None, {}, "sgd")
    with pytest.raises(TypeError, match="optim_fn must return a dict"):
        tf_trainer(optim_fn=lambda network, cls, **params: cls(**params))
    with pytest.raises(TypeError, match=r"stateful keras\.metrics\.Metric"):
        tf_trainer(metrics={"acc": keras.metrics.SparseCategoricalAccuracy()})
    with pytest.raises(ValueError, match="'nadamax' is not a Keras optimizer name"):
        tf_trainer(optimizer_cls="nadamax")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tf_trainer()  # a plain construction warns about nothing


def test_a_label_that_does_not_fit_the_loss_is_named_at_the_first_batch(tf_trainer):
    trainer = tf_trainer(metrics={})
    one_hot = [{"data": np.zeros((8, 64), np.float32), "label": np.eye(10)[np.arange(8) % 10]}]
    message = r"(?s)the first training step failed.*label \(None, 10\) float64"
    with pytest.raises(ValueError, match=message):
        trainer._train_single_epoch(one_hot, 1)
    with pytest.raises(KeyError, match=r"reads batch\['data'\] and batch\['label'\]"):
        tf_trainer()._train_single_epoch([{"x": np.zeros((8, 64), np.float32)}], 1)


@pytest.mark.parametrize("option", [{"run_eagerly": True}, {"jit_compile": True}])
def test_run_eagerly_and_xla_train_alike(tf_trainer, option):
    batches = numpy_batches(3)
    compiled = tf_trainer(optimizer_cls="sgd", optimizer_params={"learning_rate": 0.1})
    other = tf_trainer(optimizer_cls="sgd", optimizer_params={"learning_rate": 0.1}, **option)
    for epoch in (1, 2):
        expected = compiled._train_single_epoch(batches, epoch)
        assert other._train_single_epoch(batches, epoch) == pytest.approx(expected, rel=1e-4)
    assert other.steps.trace_count == (0 if "run_eagerly" in option else 1)


def test_batch_hook_gets_device_losses(tf_trainer):
    seen = []

    class Hook:
        @hookimpl
        def epochal_at_batch_end(self, batch_nr, losses, metrics):
            seen.append((batch_nr, losses["CE"], metrics["accuracy"]))

    trainer = tf_trainer(callbacks=[Hook()])
    trainer._train_single_epoch(numpy_batches(3), 1)
    assert [nr for nr, _, _ in seen] == [0, 1, 2]
    assert all(isinstance(loss, tf.Tensor) for _, loss, _ in seen)


@pytest.mark.slow
def test_importing_the_trainer_prints_no_tensorflow_noise():
    unset = ("TF_CPP_MIN_LOG_LEVEL", "_EPOCHAL_TF_QUIET")  # as for a user who set neither
    env = {k: v for k, v in __import__("os").environ.items() if k not in unset}
    code = "import epochal_tf.trainer; import epochal_tf._tf as m; m.tf.zeros(1)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr
    env["TF_CPP_MIN_LOG_LEVEL"] = "0"  # asked for: TensorFlow's own logging, unchanged
    loud = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert loud.returncode == 0 and loud.stderr != ""


def test_registration_does_not_import_tensorflow():
    code = (
        "import sys; from epochal.plugins.manager import build_plugin_manager; "
        "from epochal.plugins.registry import Registry; build_plugin_manager(environ={}); "
        "import epochal_tf.plugin; print('tensorflow' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr
