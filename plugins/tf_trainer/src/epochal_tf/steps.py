"""The compiled training and evaluation steps of a TfNetworkTrainer.

Each step is one ``tf.function`` with an input signature taken from the first batch with the
batch dimension left open (``None``): every batch of the run, the last partial one included,
runs the same graph, so it is traced once (:attr:`CompiledSteps.trace_count` says how often).
A batch that still does not fit (other keys, other feature shapes) gets one wider signature.

The training step adds each loss and metric, times the batch size, to a float64 variable and
counts the samples, inside the graph: the host reads them once per epoch (:meth:`read_sums`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from epochal_tf._tf import tf
from epochal_tf.networks import call_metric, default_closure, prepare_batch, to_float32

__all__ = ["CompiledSteps"]

Keys = tuple[str, ...]


def _specs(batch: Mapping[str, Any]) -> tuple[Keys, tuple[tf.TensorSpec, ...]]:
    arrays = prepare_batch(batch)
    keys = tuple(arrays)
    specs = tuple(
        tf.TensorSpec((None, *np.shape(value)[1:]), tf.as_dtype(value.dtype), name=key)
        for key, value in arrays.items()
    )
    return keys, specs


def _widen(old: Sequence[tf.TensorSpec], new: Sequence[tf.TensorSpec]) -> tuple:
    """Where the two disagree on a dimension, leave it open."""
    return tuple(
        tf.TensorSpec(
            [a if a == b else None for a, b in zip(o.shape, n.shape, strict=True)], n.dtype, n.name
        )
        if o.shape.rank == n.shape.rank and o.dtype == n.dtype
        else n
        for o, n in zip(old, new, strict=True)
    )


class CompiledSteps:
    """Builds, caches and counts the trainer's ``tf.function`` steps."""

    def __init__(self, trainer: Any, run_eagerly: bool = False, jit_compile: Any = None) -> None:
        self.trainer = trainer
        self.run_eagerly = run_eagerly
        self.jit_compile = jit_compile
        #: How often a step was traced (compiled); a run traces its train step once.
        self.trace_count = 0
        self._train: dict[tuple, tuple[Callable[..., Any], Keys]] = {}
        self._eval: dict[tuple, tuple[Callable[..., Any], Keys]] = {}
        self._signature: tuple[Keys, tuple] | None = None
        self._sums: dict[str, tf.Variable] = {}
        with tf.device(trainer.device):
            self._seen = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="seen")
            if trainer.closure is default_closure:
                # names known now: created before tracing, a tf.function traces once (a
                # variable created while tracing makes TensorFlow trace a second time)
                for name in (*trainer.losses, *trainer.metrics):
                    self._sum_variable(name)

    def _compile(self, fn: Callable[..., Any], specs: tuple) -> Callable[..., Any]:
        if self.run_eagerly:
            return fn
        return tf.function(fn, input_signature=specs, jit_compile=self.jit_compile)

    def _counted(self) -> None:
        if not tf.executing_eagerly():  # Python in a tf.function body runs only when tracing
            self.trace_count += 1

    # -- training ------------------------------------------------------------------------

    def train_step(self, batch: Mapping[str, Any], with_outputs: bool) -> tuple[Callable, Keys]:
        """The step for ``batch`` (the first batch fixes the signature)."""
        if self._signature is None:
            self._signature = _specs(batch)
        return self._train_for(self._signature, with_outputs)

    def retrace_for(
        self, batch: Mapping[str, Any], with_outputs: bool, error: BaseException
    ) -> tuple[Callable, Keys]:
        """A step whose signature also fits ``batch``; re-raise ``error`` if it already fit."""
        keys, specs = _specs(batch)
        assert self._signature is not None
        old_keys, old_specs = self._signature
        if keys == old_keys:
            specs = _widen(old_specs, specs)
        if (keys, specs) == self._signature:
            raise error  # the step itself failed, not the signature
        self._signature = (keys, specs)
        return self._train_for(self._signature, with_outputs)

    def _train_for(self, signature: tuple[Keys, tuple], with_outputs: bool) -> tuple:
        cache_key = (signature, with_outputs)
        if cache_key not in self._train:
            keys, specs = signature
            self._train[cache_key] = (self._make_train(keys, with_outputs, specs), keys)
        return self._train[cache_key]

    def _make_train(self, keys: Keys, with_outputs: bool, specs: tuple) -> Callable[..., Any]:
        trainer = self.trainer
        closure, model, optimizers = trainer.closure, trainer.module, trainer.optimizers
        losses, metrics, fold, kwargs = (
            trainer.losses,
            trainer.metrics,
            trainer.fold,
            trainer.closure_kwargs,
        )
        if closure is default_closure and not {"data", "label"} <= set(keys):
            raise KeyError(
                f"the default training step reads batch['data'] and batch['label'], but the "
                f"batches hold {sorted(keys)}; rename them or write a closure"
            )
        first_trace = self.trace_count == 0

        def step(*arrays: Any) -> Any:
            self._counted()
            data_dict = dict(zip(keys, arrays, strict=True))
            try:
                metric_vals, loss_vals, _ = closure(
                    model, data_dict, optimizers, losses, metrics, fold, **kwargs
                )
            except (TypeError, ValueError) as exc:
                if not first_trace:
                    raise
                raise type(exc)(
                    f"the first training step failed: {exc}\nCheck that the batches "
                    f"({', '.join(f'{s.name} {s.shape} {s.dtype.name}' for s in specs)}) fit "
                    f"the network, the losses {sorted(losses)} and the metrics {sorted(metrics)} "
                    "(Keras losses take "
                    "(label, predictions); e.g. SparseCategoricalCrossentropy wants class "
                    "indices, CategoricalCrossentropy one-hot labels)."
                ) from exc
            size = tf.cast(tf.shape(arrays[0])[0], tf.float64)
            for name, value in (*loss_vals.items(), *metric_vals.items()):
                value = tf.reduce_mean(tf.cast(value, tf.float64))
                self._sum_variable(name).assign_add(value * size)
            self._seen.assign_add(size)
            return (loss_vals, metric_vals) if with_outputs else None

        return self._compile(step, specs)

    def _sum_variable(self, name: str) -> tf.Variable:
        variable = self._sums.get(name)
        if variable is None:
            # created while the step is traced for the first time (tf.function lifts it out)
            with tf.init_scope():
                variable = tf.Variable(0.0, dtype=tf.float64, trainable=False, name=f"sum_{name}")
            self._sums[name] = variable
        return variable

    def reset_sums(self) -> None:
        for variable in (self._seen, *self._sums.values()):
            variable.assign(0.0)

    def read_sums(self) -> dict[str, float]:
        """The epoch's sample-weighted means: one read from the device."""
        if not self._sums:
            return {}
        names = list(self._sums)
        values = tf.stack([self._sums[name] for name in names] + [self._seen]).numpy()
        return dict(zip(names, (values[:-1] / values[-1]).tolist(), strict=True))

    # -- evaluation ----------------------------------------------------------------------

    def eval_step(self, batch: Mapping[str, Any]) -> tuple[Callable, Keys]:
        """``(predictions, {loss and metric name: batch mean})`` for batches like ``batch``."""
        keys, specs = _specs(batch)
        cached = self._eval.get((keys, specs))
        if cached is None:
            if "data" not in keys:
                raise KeyError(f"predict reads batch['data'], but the batches hold {sorted(keys)}")
            cached = (self._make_eval(keys, specs), keys)
            self._eval[(keys, specs)] = cached
        return cached

    def _make_eval(self, keys: Keys, specs: tuple) -> Callable[..., Any]:
        model, losses, metrics = self.trainer.module, self.trainer.losses, self.trainer.metrics

        def evaluate(*arrays: Any) -> Any:
            self._counted()
            data_dict = dict(zip(keys, arrays, strict=True))
            predictions = model(data_dict["data"], training=False)
            if "label" not in data_dict:
                return predictions, {}
            output, label = to_float32(predictions), data_dict["label"]
            values = {
                name: tf.cast(loss(label, output), tf.float32) for name, loss in losses.items()
            }
            values.update({name: call_metric(fn, output, label) for name, fn in metrics.items()})
            return predictions, values

        return self._compile(evaluate, specs)
