"""Seconds per epoch: epochal's PyTorch training step against a hand-written loop, same work.

What is measured: one training epoch of 100 prebuilt batches of 64 samples, each a dict
``{"data": float32 (64, in_features), "label": int64 (64,)}`` of numpy arrays, on the CPU
with one thread (``torch.set_num_threads(1)``), for two MLPs: a tiny one (32-32-10), where
the per-step cost of the framework shows most, and a larger one (784-512-10).

* hand-written: ``for batch in batches``: ``torch.from_numpy`` of data and label, forward,
  ``CrossEntropyLoss``, ``zero_grad``, ``backward``, ``step``: what a PyTorch user writes.
* epochal: ``PyTorchNetworkTrainer._train_single_epoch(batches, epoch)`` on a trainer built
  as a user builds it: ``PyTorchNetworkTrainer(model, None, {"CE": CrossEntropyLoss()},
  torch.optim.SGD, {"lr": 0.01})``. It does the same step plus what the trainer adds:
  ``prepare_batch``, the default closure, the detached losses kept on the device and their
  sample-weighted epoch mean (one host read per epoch).

Both sides start from the same weights (seed 0) with their own ``SGD(lr=0.01)`` and see the
same batches in the same order, so after the run their weights must be bitwise equal: the
script checks that, which shows that both did the same arithmetic. Each side gets warm-up
epochs, then the two are interleaved epoch by epoch (the order alternating every repeat) so
that machine noise hits them alike. After the warm-up every object is moved out of the
garbage collector's reach (``gc.freeze()``: torch and the plugins hold ~300k objects, whose
full collection takes ~0.1 s), and ``gc.collect()`` runs before every timed epoch, outside
the timing. The median seconds per epoch are reported, with microseconds per step and the
framework's overhead per step (difference of the medians / 100). A second, identical
hand-written loop on its own copy of the model runs interleaved with the two as an A/A
control: its ratio to the first is the noise floor of the measurement (memory placement
and machine load move the larger model's epochs by ~1% between identical loops).

Targets: epochal / hand-written <= 1.05 on the tiny MLP and <= 1.02 on the larger one.
Why: the trainer's per-batch work must be the step and nothing else (docs/architecture.md,
"Invariants"). A hand-written step of the tiny MLP takes 110-130 µs in this benchmark on the
2-core dev machine, so 5% leaves about 6 µs per step for everything the trainer adds.

PyTorch Ignite and PyTorch Lightning are measured too when installed (information rows,
not targets; Lightning's epochs are timed inside one ``fit`` by a callback, so they are not
interleaved). ``--quick`` runs a few repeats (a smoke run of a few seconds). Exits 0 either
way ("TARGET MET" / "TARGET MISSED").
"""

from __future__ import annotations

import argparse
import copy
import gc
import statistics
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from _timing import CONTROL, EPOCHAL, HAND, Result, RunEpoch, measure  # bench/_timing.py

from epochal_torch import PyTorchNetworkTrainer

N_BATCHES = 100
BATCH_SIZE = 64
N_CLASSES = 10
LR = 0.01
SEED = 0
IGNITE = "ignite (info)"
LIGHTNING = "lightning (info, not interleaved)"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    in_features: int
    hidden: int
    target: float  # maximum epochal / hand-written ratio
    repeats: int  # measured epochs per side (full mode)


MODELS = (
    ModelSpec("MLP 32-32-10", 32, 32, 1.05, 101),
    ModelSpec("MLP 784-512-10", 784, 512, 1.02, 41),
)


def make_model(spec: ModelSpec) -> torch.nn.Module:
    torch.manual_seed(SEED)
    return torch.nn.Sequential(
        torch.nn.Linear(spec.in_features, spec.hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(spec.hidden, N_CLASSES),
    )


def make_batches(spec: ModelSpec) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(SEED)
    return [
        {
            "data": rng.standard_normal((BATCH_SIZE, spec.in_features), dtype=np.float32),
            "label": rng.integers(0, N_CLASSES, BATCH_SIZE, dtype=np.int64),
        }
        for _ in range(N_BATCHES)
    ]


# -- the sides ---------------------------------------------------------------------------


def hand_written_runner(model: torch.nn.Module, batches: list[dict[str, np.ndarray]]) -> RunEpoch:
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    criterion = torch.nn.CrossEntropyLoss()

    def run(epoch: int) -> None:
        model.train()
        for batch in batches:
            data = torch.from_numpy(batch["data"])
            label = torch.from_numpy(batch["label"])
            loss = criterion(model(data), label)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    return run


def epochal_runner(model: torch.nn.Module, batches: list[dict[str, np.ndarray]]) -> RunEpoch:
    trainer = PyTorchNetworkTrainer(
        model, None, {"CE": torch.nn.CrossEntropyLoss()}, torch.optim.SGD, {"lr": LR}
    )

    def run(epoch: int) -> None:
        trainer._train_single_epoch(batches, epoch)

    return run


def ignite_runner(model: torch.nn.Module, batches: list[dict[str, np.ndarray]]) -> RunEpoch:
    from ignite.engine import create_supervised_trainer

    def prepare(batch: dict, device: Any = None, non_blocking: bool = False) -> tuple:
        return torch.from_numpy(batch["data"]), torch.from_numpy(batch["label"])

    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    engine = create_supervised_trainer(
        model, optimizer, torch.nn.CrossEntropyLoss(), prepare_batch=prepare
    )

    def run(epoch: int) -> None:
        engine.run(batches, max_epochs=1)  # a finished engine starts a fresh run

    return run


def lightning_epoch_seconds(
    model: torch.nn.Module, batches: list[dict[str, np.ndarray]], warmup: int, repeats: int
) -> list[float]:
    """Seconds of each training epoch in one ``fit`` (warm-up epochs dropped)."""
    try:
        import lightning.pytorch as pl
    except ImportError:
        import pytorch_lightning as pl

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = model
            self.criterion = torch.nn.CrossEntropyLoss()

        def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
            # as_tensor: the DataLoader may already have turned the arrays into tensors
            data, label = torch.as_tensor(batch["data"]), torch.as_tensor(batch["label"])
            return self.criterion(self.net(data), label)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=LR)

    class EpochTimer(pl.Callback):
        def __init__(self) -> None:
            self.seconds: list[float] = []
            self._start = 0.0

        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            gc.collect()
            self._start = time.perf_counter()

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            self.seconds.append(time.perf_counter() - self._start)

    timer = EpochTimer()
    trainer = pl.Trainer(
        max_epochs=warmup + repeats,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[timer],
    )
    loader = torch.utils.data.DataLoader(batches, batch_size=None, shuffle=False)
    trainer.fit(Module(), train_dataloaders=loader)
    return timer.seconds[warmup:]


def _installed(name: str, *modules: str) -> bool:
    """Whether one of ``modules`` can be imported; says so when none can."""
    import importlib.util

    for module in modules:
        try:
            if importlib.util.find_spec(module) is not None:
                return True
        except (ImportError, ValueError):
            continue
    print(f"{name}: not installed ({' / '.join(modules)} not found), skipped")
    return False


# -- measuring ---------------------------------------------------------------------------


def same_weights(first: torch.nn.Module, second: torch.nn.Module) -> bool:
    return all(
        torch.equal(a, b)
        for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True)
    )


def run_model(spec: ModelSpec, warmup: int, repeats: int, others: list[str]) -> Result:
    batches = make_batches(spec)
    reference = make_model(spec)
    hand_model, epochal_model = reference, copy.deepcopy(reference)  # before any training
    runners: dict[str, RunEpoch] = {
        HAND: hand_written_runner(hand_model, batches),
        EPOCHAL: epochal_runner(epochal_model, batches),
        CONTROL: hand_written_runner(copy.deepcopy(reference), batches),
    }
    if IGNITE in others:
        try:
            runners[IGNITE] = ignite_runner(copy.deepcopy(reference), batches)
        except Exception as exc:  # noqa: BLE001 - an information row never fails the run
            print(f"ignite: could not set up ({type(exc).__name__}: {exc}), skipped")
    seconds = measure(runners, warmup, repeats)
    identical = same_weights(hand_model, epochal_model)
    if LIGHTNING in others:
        try:
            seconds[LIGHTNING] = lightning_epoch_seconds(
                copy.deepcopy(make_model(spec)), batches, warmup, repeats
            )
        except Exception as exc:  # noqa: BLE001 - an information row never fails the run
            print(f"lightning: failed ({type(exc).__name__}: {exc}), skipped")
    return Result(spec, seconds, identical)


def print_results(results: list[Result]) -> None:
    header = (
        f"{'model':<16}{'hand-written s/epoch':>22}{'epochal s/epoch':>17}{'ratio':>8}"
        f"{'target':>9}{'hand µs/step':>14}{'epochal µs/step':>17}{'overhead µs/step':>18}"
    )
    print(header)
    for result in results:
        hand, ours = result.median(HAND), result.median(EPOCHAL)
        print(
            f"{result.spec.name:<16}{hand:>22.5f}{ours:>17.5f}{result.ratio:>8.3f}"
            f"{'<= ' + format(result.spec.target, '.2f'):>9}"
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

    torch.set_num_threads(1)
    others = []
    if _installed("PyTorch Ignite", "ignite"):
        others.append(IGNITE)
    if _installed("PyTorch Lightning", "lightning", "pytorch_lightning"):
        others.append(LIGHTNING)

    results = []
    for spec in MODELS:
        repeats = args.repeats or (3 if args.quick else spec.repeats)
        results.append(run_model(spec, warmup, repeats, others))

    print(
        f"{N_BATCHES} batches of {BATCH_SIZE} per epoch, SGD lr={LR}, CrossEntropyLoss, "
        f"torch {torch.__version__} CPU, threads={torch.get_num_threads()}, "
        f"warm-up {warmup} epochs, measured epochs: "
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
