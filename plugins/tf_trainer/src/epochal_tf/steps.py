"""The compiled training and evaluation steps of a TfNetworkTrainer.

Each step is one ``tf.function`` with an input signature taken from the first batch with the
batch dimension left open (``None``): every batch of the run, the last partial one included,
runs the same graph, so it is traced once (:attr:`CompiledSteps.trace_count` says how often).
A batch that still does not fit (other keys, other feature shapes) gets one wider signature.

The training step adds each loss and metric, times the batch size, to a float64 variable and
counts the samples, inside the graph: the host reads them once per epoch (:meth:`read_sums`).

Non-finite losses (``on_nonfinite``) are handled in the graph too, with no host read per batch:
``"raise"`` records the first batch whose losses are not all finite (its index and its loss
values) in a variable, and :meth:`read_sums` raises :class:`~epochal.errors.NonFiniteLossError`
at the epoch's end (so the rest of that epoch trains on, but the core loop writes no checkpoint
of it). ``"skip_batch"`` (default step only) makes the update under ``tf.cond`` on the summed
loss being finite, leaves skipped batches out of the sums and counts them in a variable: the
train metric ``nonfinite_batches``, present in every epoch of such a run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from epochal.errors import NonFiniteLossError
from epochal_tf._tf import tf
from epochal_tf.networks import (
    call_metric,
    prepare_batch,
    supervised_step,
    to_float32,
)

__all__ = ["NONFINITE_METRIC", "CompiledSteps"]

#: Train-metric key of the per-epoch count of skipped batches (with ``"skip_batch"``).
NONFINITE_METRIC = NonFiniteLossError.METRIC

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
        self.skip_nonfinite = trainer.on_nonfinite == "skip_batch"
        #: The losses' names, in the order of the first-bad-batch record (set when tracing).
        self._loss_names: tuple[str, ...] = ()
        self._first_bad: tf.Variable | None = None
        with tf.device(trainer.device):
            self._seen = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="seen")
            # the epoch's batches, and how many were skipped (skip_batch)
            self._counts = tf.Variable([0.0, 0.0], dtype=tf.float64, trainable=False)
            if trainer.uses_default_step:
                # names known now: created before tracing, a tf.function traces once (a
                # variable created while tracing makes TensorFlow trace a second time)
                for name in (*trainer.losses, *trainer.metrics):
                    self._sum_variable(name)
                if not self.skip_nonfinite:
                    self._first_bad_variable(tuple(trainer.losses))

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

    def run_epoch(
        self, batches: Iterable[Mapping[str, Any]], epoch: int, prepare: Callable | None = None
    ) -> dict[str, float]:
        """The trainer's epoch over ``batches`` (each through ``prepare`` first, when given):
        the compiled step for every batch, the batch-end hook when one is registered, then
        the sums read once (:meth:`read_sums`)."""
        trainer = self.trainer
        hook, device = trainer.batch_end_hook, trainer.input_device
        self.reset_sums()
        step = keys = None
        batch_nr = -1
        for batch_nr, batch in enumerate(batches):
            if prepare is not None:
                batch = prepare(batch, device, device)
            if step is None:
                step, keys = self.train_step(batch, hook is not None)
            try:
                outputs = step(*[batch[key] for key in keys])
            except (TypeError, ValueError) as exc:
                # the batch does not fit the traced signature (other keys, or other shapes
                # besides the batch dimension): one wider signature, then carry on
                step, keys = self.retrace_for(batch, hook is not None, exc)
                outputs = step(*[batch[key] for key in keys])
            if hook is not None:
                loss_vals, metric_vals = outputs
                hook(
                    trainer=trainer, epoch=epoch, batch_nr=batch_nr, losses=loss_vals,
                    metrics=metric_vals,
                )  # fmt: skip
        if batch_nr < 0:
            raise ValueError(f"epoch {epoch} received no batches from the training data")
        return self.read_sums(epoch)

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
        default, model, optimizers = trainer.uses_default_step, trainer.module, trainer.optimizers
        losses, metrics = trainer.losses, trainer.metrics
        if default and not {"data", "label"} <= set(keys):
            raise KeyError(
                f"the default training step reads batch['data'] and batch['label'], but the "
                f"batches hold {sorted(keys)}; rename them or write a closure"
            )
        first_trace = self.trace_count == 0
        if trainer.strategy is not None:
            replicated = self._make_replicated(keys, specs, with_outputs, first_trace)
            return self._compile(replicated, specs)

        skip = self.skip_nonfinite

        def step(*arrays: Any) -> Any:
            self._counted()
            data_dict = dict(zip(keys, arrays, strict=True))
            try:
                if default:
                    metric_vals, loss_vals, _, finite = supervised_step(
                        model, data_dict, optimizers["default"], losses, metrics, skip
                    )
                else:  # a closure, or a subclass's own step (the trainer's extension point)
                    loss_vals, metric_vals = trainer.train_step(data_dict)
            except (TypeError, ValueError) as exc:
                if not first_trace:
                    raise
                raise self._first_step_error(exc, specs) from exc
            size = tf.cast(tf.shape(arrays[0])[0], tf.float64)
            means = {
                name: tf.reduce_mean(tf.cast(value, tf.float64))
                for name, value in (*loss_vals.items(), *metric_vals.items())
            }
            if skip:  # a skipped batch adds nothing to the sums, one to the count
                for name, value in means.items():
                    self._sum_variable(name).assign_add(tf.where(finite, value * size, 0.0))
                self._seen.assign_add(tf.where(finite, size, 0.0))
                skipped = tf.cast(tf.logical_not(finite), tf.float64)
                self._counts.assign_add(tf.stack([tf.constant(1.0, tf.float64), skipped]))
            else:
                for name, value in means.items():
                    self._sum_variable(name).assign_add(value * size)
                self._seen.assign_add(size)
                self._record_first_bad([means[name] for name in loss_vals], tuple(loss_vals))
            return (loss_vals, metric_vals) if with_outputs else None

        return self._compile(step, specs)

    def _first_step_error(self, exc: Exception, specs: tuple) -> Exception:
        losses, metrics = self.trainer.losses, self.trainer.metrics
        return type(exc)(
            f"the first training step failed: {exc}\nCheck that the batches "
            f"({', '.join(f'{s.name} {s.shape} {s.dtype.name}' for s in specs)}) fit "
            f"the network, the losses {sorted(losses)} and the metrics {sorted(metrics)} "
            "(Keras losses take "
            "(label, predictions); e.g. SparseCategoricalCrossentropy wants class "
            "indices, CategoricalCrossentropy one-hot labels)."
        )

    def _make_replicated(
        self, keys: Keys, specs: tuple, with_outputs: bool, first_trace: bool
    ) -> Callable[..., Any]:
        """The default step under the trainer's tf.distribute strategy: the batch split over
        the replicas inside the graph (:func:`epochal_tf.strategies.replicated_step`), this
        worker's sums added to the same variables as on one device."""
        from epochal_tf.strategies import replica_losses, replicated_step

        trainer, strategy = self.trainer, self.trainer.strategy
        model, optimizer = trainer.module, trainer.optimizers["default"]
        losses = replica_losses(trainer.losses, strategy.num_replicas_in_sync)
        metrics = trainer.metrics

        def replica_step(*pieces: Any, loss_weight: Any) -> tuple[dict[str, Any], None]:
            data_dict = dict(zip(keys, pieces, strict=True))
            metric_vals, loss_vals, _, _ = supervised_step(
                model, data_dict, optimizer, losses, metrics, loss_weight=loss_weight
            )
            values = {**loss_vals, **metric_vals}
            means = {name: tf.reduce_mean(tf.cast(v, tf.float64)) for name, v in values.items()}
            return means, None

        replicated = replicated_step(
            strategy, replica_step, across_workers=trainer.strategy_name == "multi_worker"
        )

        def step(*arrays: Any) -> Any:
            self._counted()
            try:
                sums, size = replicated(*arrays)
            except (TypeError, ValueError) as exc:
                if not first_trace:
                    raise
                raise self._first_step_error(exc, specs) from exc
            for name, value in sums.items():
                self._sum_variable(name).assign_add(value)
            self._seen.assign_add(size)
            means = {name: tf.math.divide_no_nan(value, size) for name, value in sums.items()}
            self._record_first_bad([means[name] for name in losses], tuple(losses))
            if not with_outputs:
                return None
            return {name: means[name] for name in losses}, {name: means[name] for name in metrics}

        return step

    def _first_bad_variable(self, loss_names: tuple[str, ...]) -> tf.Variable:
        """``[batch index or -1, each loss's value at that batch]``, for on_nonfinite="raise"."""
        if self._first_bad is None or loss_names != self._loss_names:
            with tf.init_scope():  # when made while tracing (custom closures): lifted out
                self._first_bad = tf.Variable(
                    [-1.0] + [0.0] * len(loss_names), dtype=tf.float64, trainable=False
                )
            self._loss_names = loss_names
        return self._first_bad

    def _record_first_bad(self, values: list[Any], loss_names: tuple[str, ...]) -> None:
        """In the graph: keep the index and loss values of the epoch's first non-finite batch,
        and count the batch."""
        batch_index = self._counts[0]  # read before the count goes up: counts from 0
        self._counts.assign_add([1.0, 0.0])
        if not values:
            return
        record = self._first_bad_variable(loss_names)
        values = tf.stack(values)
        new_bad = tf.logical_and(record[0] < 0.0, ~tf.math.is_finite(tf.reduce_sum(values)))
        record.assign(tf.where(new_bad, tf.concat([[batch_index], values], 0), record))

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
        self._counts.assign([0.0, 0.0])
        if self._first_bad is not None:
            self._first_bad.assign([-1.0] + [0.0] * len(self._loss_names))

    def read_sums(self, epoch: int = 0) -> dict[str, float]:
        """The epoch's sample-weighted means: one read from the device. Raises
        :class:`~epochal.errors.NonFiniteLossError` for a non-finite loss (``"raise"``) or
        an epoch whose batches were all skipped (``"skip_batch"``)."""
        names = list(self._sums)
        record = [self._first_bad] if self._first_bad is not None else []
        sums = tf.stack([self._sums[name] for name in names] + [self._seen])
        values = tf.concat([sums, self._counts, *record], 0).numpy()
        seen, n_batches, skipped = values[len(names) : len(names) + 3]
        bad = values[len(names) + 3 :]  # the first non-finite batch ("raise")
        if self.skip_nonfinite and skipped == n_batches:
            raise NonFiniteLossError.all_skipped(epoch, int(n_batches))
        if not self.skip_nonfinite and bad.size and bad[0] >= 0:
            which = [i for i, value in enumerate(bad[1:]) if not np.isfinite(value)]
            key = self._loss_names[which[0]] if which else None
            value = bad[1 + which[0]] if which else np.inf
            raise NonFiniteLossError.at_batch(epoch, int(bad[0]) + 1, int(n_batches), key, value)
        means = dict(zip(names, (values[: len(names)] / seen).tolist(), strict=True))
        if self.skip_nonfinite:
            means[NONFINITE_METRIC] = int(skipped)
        return means

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
