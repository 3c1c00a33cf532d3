"""Seconds per epoch: epochal's TensorFlow training step against a hand-written loop, same work.

What is measured: one training epoch of 100 prebuilt batches of 64 samples, each a dict
``{"data": float32 (64, in_features), "label": int64 (64,)}`` of numpy arrays, on the CPU
with one thread (``tf.config.threading``: one intra-op and one inter-op thread), for two MLPs:
a tiny one (32-32-10), where the per-step cost of the framework shows most, and a larger one
(784-512-10).

* hand-written: ``for batch in batches: step(batch["data"], batch["label"])`` with ``step`` a
  ``tf.function``: forward under ``tf.GradientTape``, ``SparseCategoricalCrossentropy``,
  ``tape.gradient``, ``optimizer.apply_gradients``: what a TensorFlow user writes.
* epochal: ``TfNetworkTrainer._train_single_epoch(batches, epoch)`` on a trainer built as a
  user builds it: ``TfNetworkTrainer(model, None, {"CE": SparseCategoricalCrossentropy(
  from_logits=True)}, keras.optimizers.SGD, {"learning_rate": 0.01})``. It does the same step
  plus what the trainer adds: the compiled closure with its sample-weighted loss sums kept in
  TensorFlow variables, and one host read per epoch.
* Keras ``model.fit(x, y, batch_size=64, epochs=1, shuffle=False)`` on the same arrays
  (information row, not a target: ``fit`` per epoch also sets up its data adapter and
  callbacks).

All sides start from the same weights (seed 0) with their own ``SGD(learning_rate=0.01)`` and
see the same batches in the same order, so after the run the hand-written and epochal weights
must be bitwise equal: the script checks that, which shows that both did the same arithmetic.
Each side gets warm-up epochs (which also trace the steps), then the sides are interleaved epoch
by epoch (the order alternating every repeat) so that machine noise hits them alike; objects are
moved out of the garbage collector's reach after the warm-up (``gc.freeze()``) and
``gc.collect()`` runs before every timed epoch, outside the timing. The median seconds per
epoch are reported, with microseconds per step and the overhead per step. A second, identical
hand-written loop on its own copy of the model runs interleaved as an A/A control: its ratio
to the first is the noise floor of the measurement.

Target: epochal / hand-written <= 1.05 on both models (the trainer's per-batch work must be
the step and nothing else: docs/architecture.md, "Invariants"). ``--quick`` runs a few
repeats (a smoke run). Exits 0 either way ("TARGET MET" / "TARGET MISSED").
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass

import numpy as np
from _timing import CONTROL, EPOCHAL, HAND, Result, RunEpoch, measure  # bench/_timing.py

from epochal_tf._tf import keras, tf  # TensorFlow, imported without its start-up noise

N_BATCHES = 100
BATCH_SIZE = 64
N_CLASSES = 10
LR = 0.01
SEED = 0
FIT = "keras model.fit (info)"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    in_features: int
    hidden: int
    target: float  # maximum epochal / hand-written ratio
    repeats: int  # measured epochs per side (full mode)


MODELS = (
    ModelSpec("MLP 32-32-10", 32, 32, 1.05, 101),
    ModelSpec("MLP 784-512-10", 784, 512, 1.05, 41),
)


def make_model(spec: ModelSpec, weights: list[np.ndarray] | None = None) -> keras.Model:
    keras.utils.set_random_seed(SEED)
    model = keras.Sequential(
        [
            keras.Input((spec.in_features,)),
            keras.layers.Dense(spec.hidden, activation="relu"),
            keras.layers.Dense(N_CLASSES),
        ]
    )
    if weights is not None:
        model.set_weights(weights)
    return model


def make_batches(spec: ModelSpec) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(SEED)
    return [
        {
            "data": rng.standard_normal((BATCH_SIZE, spec.in_features), dtype=np.float32),
            "label": rng.integers(0, N_CLASSES, BATCH_SIZE, dtype=np.int64),
        }
        for _ in range(N_BATCHES)
    ]


def loss_fn() -> keras.losses.Loss:
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


# -- the sides ---------------------------------------------------------------------------


def hand_written_runner(model: keras.Model, batches: list[dict[str, np.ndarray]]) -> RunEpoch:
    optimizer = keras.optimizers.SGD(learning_rate=LR)
    optimizer.build(model.trainable_variables)
    criterion = loss_fn()

    @tf.function
    def step(data: tf.Tensor, label: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = criterion(label, model(data, training=True))
        variables = model.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss

    def run(epoch: int) -> None:
        for batch in batches:
            step(batch["data"], batch["label"])

    return run


def epochal_runner(model: keras.Model, batches: list[dict[str, np.ndarray]]) -> RunEpoch:
    from epochal_tf import TfNetworkTrainer

    trainer = TfNetworkTrainer(
        model, None, {"CE": loss_fn()}, keras.optimizers.SGD, {"learning_rate": LR}
    )

    def run(epoch: int) -> None:
        trainer._train_single_epoch(batches, epoch)

    return run


def fit_runner(model: keras.Model, batches: list[dict[str, np.ndarray]]) -> RunEpoch:
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=LR), loss=loss_fn())
    x = np.concatenate([batch["data"] for batch in batches])
    y = np.concatenate([batch["label"] for batch in batches])

    def run(epoch: int) -> None:
        model.fit(x, y, batch_size=BATCH_SIZE, epochs=1, shuffle=False, verbose=0)

    return run


# -- measuring ---------------------------------------------------------------------------


def same_weights(first: keras.Model, second: keras.Model) -> bool:
    return all(
        np.array_equal(a, b) for a, b in zip(first.get_weights(), second.get_weights(), strict=True)
    )


def run_model(spec: ModelSpec, warmup: int, repeats: int) -> Result:
    batches = make_batches(spec)
    weights = make_model(spec).get_weights()
    hand_model, epochal_model = make_model(spec, weights), make_model(spec, weights)
    runners: dict[str, RunEpoch] = {
        HAND: hand_written_runner(hand_model, batches),
        EPOCHAL: epochal_runner(epochal_model, batches),
        CONTROL: hand_written_runner(make_model(spec, weights), batches),
        FIT: fit_runner(make_model(spec, weights), batches),
    }
    seconds = measure(runners, warmup, repeats)
    return Result(spec, seconds, same_weights(hand_model, epochal_model))


def print_results(results: list[Result]) -> None:
    header = (
        f"{'model':<16}{'hand-written s/epoch':>22}{'epochal s/epoch':>17}{'ratio':>8}"
        f"{'target':>9}{'fit ratio':>11}{'hand µs/step':>14}{'epochal µs/step':>17}"
        f"{'overhead µs/step':>18}"
    )
    print(header)
    for result in results:
        hand, ours = result.median(HAND), result.median(EPOCHAL)
        print(
            f"{result.spec.name:<16}{hand:>22.5f}{ours:>17.5f}{result.ratio:>8.3f}"
            f"{'<= ' + format(result.spec.target, '.2f'):>9}"
            f"{result.median(FIT) / hand:>11.3f}"
            f"{hand / N_BATCHES * 1e6:>14.1f}{ours / N_BATCHES * 1e6:>17.1f}"
            f"{(ours - hand) / N_BATCHES * 1e6:>18.1f}"
        )
    print()
    print(f"{'model':<16}{'side':<36}{'s/epoch':>10}{'µs/step':>9}{'min':>10}{'max':>10}")
    for result in results:
        for name, values in result.seconds.items():
            median = statistics.median(values)
            print(
                f"{result.spec.name:<16}{name:<36}{median:>10.5f}"
                f"{median / N_BATCHES * 1e6:>9.1f}{min(values):>10.5f}{max(values):>10.5f}"
            )
    print()
    for result in results:
        print(
            f"{result.spec.name}: median of per-repeat ratios {result.paired_ratio(EPOCHAL):.3f}; "
            f"A/A control (a second, identical hand-written loop) "
            f"{result.median(CONTROL) / result.median(HAND):.3f}, the noise floor; "
            f"keras fit / hand-written {result.median(FIT) / result.median(HAND):.3f}; "
            f"weights after the run {'identical' if result.identical else 'DIFFER'} "
            "(hand-written vs epochal)"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few repeats (smoke run)")
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="measured epochs per side and model (default: 101 tiny, 41 larger; quick: 3)",
    )
    parser.add_argument(
        "--warmup", type=int, default=None, help="warm-up epochs per side (default 3; quick: 1)"
    )
    args = parser.parse_args(argv)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 3)

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)

    results = []
    for spec in MODELS:
        repeats = args.repeats or (3 if args.quick else spec.repeats)
        results.append(run_model(spec, warmup, repeats))

    print(
        f"{N_BATCHES} batches of {BATCH_SIZE} per epoch, SGD lr={LR}, "
        f"SparseCategoricalCrossentropy, tensorflow {tf.__version__} / keras {keras.__version__} "
        f"CPU, threads=1 (intra-op and inter-op), warm-up {warmup} epochs, measured epochs: "
        + ", ".join(f"{len(r.seconds[HAND])} ({r.spec.name})" for r in results)
        + ", interleaved"
    )
    print_results(results)
    met = all(result.met for result in results)
    summary = ", ".join(f"{r.spec.name} {r.ratio:.3f} (<= {r.spec.target:.2f})" for r in results)
    print(
        f"ratio epochal/hand-written: {summary}: {'TARGET MET' if met else 'TARGET MISSED'}"
        + ("" if all(r.identical for r in results) else " (the two sides' weights differ)")
    )


if __name__ == "__main__":
    main()
