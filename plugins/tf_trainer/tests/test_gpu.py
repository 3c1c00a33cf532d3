"""GPU only (skipped without one): mixed float16 with loss scaling, placement on a GPU id."""

from __future__ import annotations

import pytest

from epochal_tf._tf import keras, tf

pytestmark = pytest.mark.skipif(
    not tf.config.list_physical_devices("GPU"), reason="needs a GPU visible to TensorFlow"
)


def test_mixed_float16_with_loss_scaling_learns_digits(tf_trainer, managers):
    before = keras.config.dtype_policy().name
    trainer = tf_trainer(gpu_ids=[0], mixed_precision=True)
    assert trainer.device == "/GPU:0" and trainer.mixed_precision.policy == "mixed_float16"
    optimizer = trainer.optimizers["default"]
    assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    assert {layer.compute_dtype for layer in trainer.module.layers} == {"float16"}
    assert {v.dtype for v in trainer.module.trainable_variables} == {"float32"}
    train, valid = managers()
    trainer.train(4, train, valid, val_score_key="accuracy")
    assert trainer.best_val_score > 0.85
    assert float(optimizer.dynamic_scale) > 0
    assert keras.config.dtype_policy().name == before


def test_resume_restores_the_loss_scale(tf_trainer, managers, tmp_path):
    trainer = tf_trainer(gpu_ids=[0], mixed_precision=True, save_path=tmp_path)
    train, valid = managers()
    trainer.train(2, train, valid)
    scale = float(trainer.optimizers["default"].dynamic_scale)
    resumed = tf_trainer(gpu_ids=[0], mixed_precision=True, save_path=tmp_path)
    resumed.update_state(str(tmp_path / "checkpoint_last"))
    assert float(resumed.optimizers["default"].dynamic_scale) == scale
