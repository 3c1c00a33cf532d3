"""Training jobs for test_distributed.py, each run in a fresh process (tf.distribute must be
set up before TensorFlow runs anything): ``python distributed_job.py mirrored|worker OUT``.

``mirrored``: two logical CPU devices; the same network trained on one device and under
``strategy="mirrored"`` (built outside the strategy's scope, as the Experiment builds it).
``worker``: one worker of ``TF_CONFIG``; it trains on its half of each global batch (worker 0
then trains the same batches on one device, for comparison), and tries the core's collectives.
Both write what they saw to the JSON file OUT.
"""

from __future__ import annotations

import json
import sys

import numpy as np

from epochal_tf._tf import keras, tf

MODE, OUT = sys.argv[1], sys.argv[2]
if MODE == "mirrored":  # before any TensorFlow op: the runtime's devices are fixed then
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from epochal_tf.metrics import CrossEntropy, accuracy  # noqa: E402
from epochal_tf.trainer import TfNetworkTrainer  # noqa: E402

EPOCHS, BATCH = 3, 32


def digits() -> list[dict[str, np.ndarray]]:
    """203 samples in global batches of 32: the last one (11) splits unevenly."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x, y = (data.data[:203] / 16).astype("float32"), data.target[:203].astype("int64")
    return [{"data": x[i : i + BATCH], "label": y[i : i + BATCH]} for i in range(0, 203, BATCH)]


def network() -> keras.Model:
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [keras.Input((64,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10)]
    )


def trainer(model: keras.Model, strategy: str | None) -> TfNetworkTrainer:
    return TfNetworkTrainer(
        model,
        None,
        {"CE": CrossEntropy()},
        "adam",
        {"learning_rate": 0.01},
        metrics={"accuracy": accuracy},
        strategy=strategy,
    )


def train(trained: TfNetworkTrainer, batches: list) -> list[dict[str, float]]:
    return [trained._train_single_epoch(batches, epoch) for epoch in range(1, EPOCHS + 1)]


def weights(model: keras.Model) -> list[np.ndarray]:
    return [variable.numpy() for variable in model.variables]


def mirrored() -> dict:
    batches = digits()
    single = trainer(network(), None)
    single_metrics = train(single, batches)
    model = network()
    initial = weights(model)
    mirrored = trainer(model, "mirrored")
    moved = mirrored.module is model and all(
        type(v.value).__name__ == "MirroredVariable" for v in model.variables
    )
    kept = max(float(np.abs(a - b).max()) for a, b in zip(initial, weights(model), strict=True))
    mirrored_metrics = train(mirrored, batches)
    difference = max(
        float(np.abs(a - b).max())
        for a, b in zip(weights(single.module), weights(mirrored.module), strict=True)
    )
    _, _, single_val = single.predict(batches)
    _, _, mirrored_val = mirrored.predict(batches)
    one_sample = mirrored._train_single_epoch([{k: v[:1] for k, v in batches[0].items()}], 9)
    return {
        "replicas": mirrored.strategy.num_replicas_in_sync,
        "moved_under_scope": moved,
        "weights_kept_when_moved": kept,
        "max_weight_difference": difference,
        "metrics": [single_metrics, mirrored_metrics],
        "val": [single_val, mirrored_val],
        "one_sample_batch_loss": one_sample["CE"],
        "traces": mirrored.steps.trace_count,
    }


def worker() -> dict:
    collective = TfNetworkTrainer.distributed_collective(strategy="multi_worker")
    rank = collective.rank
    model = network()
    trained = trainer(model, "multi_worker")
    batches = [{k: v[rank::2] for k, v in batch.items()} for batch in digits()]
    metrics = train(trained, batches)
    difference = single_metrics = None
    if rank == 0:  # the same global batches on one device, in this process, no strategy
        single = trainer(network(), None)
        single_metrics = train(single, digits())
        difference = max(
            float(np.abs(a - b).max())
            for a, b in zip(weights(single.module), weights(model), strict=True)
        )
    return {
        "max_weight_difference": difference,
        "single_metrics": single_metrics,
        "samples": sum(len(batch["label"]) for batch in batches),
        "rank": rank,
        "world_size": collective.world_size,
        "same_collective": trained.collective is collective,
        "metrics": metrics,
        "mean": collective.mean({"a": 1.0 + rank}, weight=1.0 + 2 * rank),  # (1 + 2*3) / 4
        "any": [collective.any(rank == 1), collective.any(False)],
        "broadcast": collective.broadcast(f"run folder of rank {rank}"),
        "traces": trained.steps.trace_count,
    }


if __name__ == "__main__":
    result = mirrored() if MODE == "mirrored" else worker()
    with open(OUT, "w") as file:
        json.dump(result, file)
    if MODE == "worker":
        TfNetworkTrainer.distributed_collective(strategy="multi_worker").barrier()
