"""Wall time of ``epochal train`` (the default job) against a hand-written PyTorch script.

What is measured: the wall time of whole processes, start-up included, each training the
same job for a fixed number of epochs (15, the default job's count; ``--quick``: 2):
an MLP 64-128-10 (ReLU) on scikit-learn's digits (float32 / 16, int64 labels), stratified
80/20 split with ``random_state=0``, batches of 32 in a random order, Adam(lr=0.002),
CrossEntropyLoss, validation (loss and accuracy) after every epoch in batches of 512,
a checkpoint every epoch plus the best one and one every 5 epochs.

* hand-written: a standalone script (written to a temporary file, started with
  ``sys.executable``) that imports torch, numpy and scikit-learn, loads digits, splits it
  with ``train_test_split(..., stratify=y)``, builds ``Flatten, Linear, ReLU, Linear``,
  trains on tensors indexed by ``torch.randperm(...).split(32)`` (no DataLoader: the
  fastest loop a competent user writes), validates, ``torch.save``-s a checkpoint (model,
  optimizer, epoch) as ``checkpoint_last`` every epoch, ``checkpoint_best`` when the
  validation accuracy improves and ``checkpoint_epoch_<n>`` every 5 epochs, and prints one
  line per epoch.
* epochal (default job): ``epochal train --epochs N --run-dir DIR``, the installed console
  script next to ``sys.executable``, as users run it: it also writes ``metrics.csv``,
  TensorBoard events and ``curves.png`` every epoch, plus ``config.toml`` and
  ``summary.json``.
* epochal without the extras: the same with ``--set callbacks.csv_logger=false --set
  callbacks.tensorboard=false --set callbacks.learning_curves=false``, so that the cost of
  the extras shows (the difference of the two epochal rows).
* hand-written again: a second run of the same script, the A/A control: its ratio to the
  first is the noise floor of the measurement.

Every process gets the same environment with an explicit thread count
(``OMP_NUM_THREADS``, ``MKL_NUM_THREADS`` and ``OPENBLAS_NUM_THREADS``, default 1,
``--threads``): the model is far too small to gain from threads, and OpenMP threads that
spin on a busy 2-core machine make single runs several times slower at random. Each side
runs once as a warm-up (file cache), then the sides are interleaved run by run (the order
alternating every repeat) so that machine noise hits them alike; every run gets a fresh run
folder in a temporary directory, removed afterwards. Reported: the median wall time per
side, the ratio of the medians to the hand-written script, the median of the per-repeat
ratios, the seconds spent in training as each process reports it (epochal: ``summary.json``
``wall_seconds``; the script: the same span, from just before the first epoch), the rest
being start-up (imports, data, model) and exit, and the best validation accuracy each side
printed (sanity: at 15 epochs both must reach >= 0.95).

Target: epochal's default job / hand-written <= 1.15. Why: the framework's start-up, its
per-epoch bookkeeping and its run folder must not make a small job noticeably slower than
the script a user would otherwise write. The row without the extras is reported against
the same target for information. ``--quick`` runs 2 epochs, no warm-up and one repeat (a
smoke run). Exits 0 either way ("TARGET MET" / "TARGET MISSED"); only a missing ``epochal``
script or a failing run is an error (exit 2).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

TARGET_RATIO = 1.15
MIN_ACCURACY = 0.95  # sanity check of both sides' best validation accuracy ...
MIN_ACCURACY_EPOCHS = 15  # ... when they train at least this many epochs
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
EXTRAS_OFF = ("callbacks.csv_logger=false", "callbacks.tensorboard=false")
EXTRAS_OFF += ("callbacks.learning_curves=false",)
HAND = "hand-written script"
CONTROL = "hand-written again (A/A)"
EPOCHAL = "epochal train (default job)"
LEAN = "epochal train, no csv/tb/png"
BEST_LINE = re.compile(r"^best val_accuracy ([0-9.]+) at epoch (\d+)", re.MULTILINE)
TRAIN_SECONDS = re.compile(r"^trained in ([0-9.]+) s", re.MULTILINE)

HAND_WRITTEN = '''\
"""Hand-written PyTorch: MLP on digits, Adam, CE, validation and checkpoints per epoch."""

import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn


def main():
    epochs, run_dir, seed = int(sys.argv[1]), Path(sys.argv[2]), 0
    run_dir.mkdir(parents=True, exist_ok=True)
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=0.2, random_state=seed, stratify=y
    )
    x_train, y_train = torch.from_numpy(x_train), torch.from_numpy(y_train)
    x_val, y_val = torch.from_numpy(x_val), torch.from_numpy(y_val)

    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.002)
    criterion = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(seed)
    best_acc, best_epoch = -1.0, 0

    started = time.perf_counter()
    for epoch in range(1, epochs + 1):
        epoch_start = time.perf_counter()
        model.train()
        train_loss, train_correct = 0.0, 0
        for idx in torch.randperm(len(x_train), generator=generator).split(32):
            data, label = x_train[idx], y_train[idx]
            logits = model(data)
            loss = criterion(logits, label)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            train_loss += loss.item() * len(idx)
            train_correct += (logits.argmax(1) == label).sum().item()

        model.eval()
        val_loss, val_correct = 0.0, 0
        with torch.no_grad():
            for data, label in zip(x_val.split(512), y_val.split(512)):
                logits = model(data)
                val_loss += criterion(logits, label).item() * len(label)
                val_correct += (logits.argmax(1) == label).sum().item()
        val_acc = val_correct / len(y_val)

        checkpoint = {
            "epoch": epoch,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "val_accuracy": val_acc,
        }
        torch.save(checkpoint, run_dir / "checkpoint_last.pt")
        if epoch % 5 == 0:
            torch.save(checkpoint, run_dir / f"checkpoint_epoch_{epoch}.pt")
        best = val_acc > best_acc
        if best:
            best_acc, best_epoch = val_acc, epoch
            torch.save(checkpoint, run_dir / "checkpoint_best.pt")
        print(
            f"epoch {epoch}/{epochs}  CE {train_loss / len(y_train):.4f}  "
            f"accuracy {train_correct / len(y_train):.4f} | val_CE {val_loss / len(y_val):.4f}  "
            f"val_accuracy {val_acc:.4f}  ({time.perf_counter() - epoch_start:.1f} s)"
            + ("  * best" if best else "")
        )
    print(f"best val_accuracy {best_acc:.4f} at epoch {best_epoch} of {epochs}")
    print(f"trained in {time.perf_counter() - started:.3f} s")


if __name__ == "__main__":
    main()
'''


def epochal_script() -> Path:
    """The console script installed with the interpreter that runs this file."""
    script = Path(sys.executable).parent / ("epochal.exe" if os.name == "nt" else "epochal")
    if not script.exists():
        sys.exit(f"error: no console script at {script}; install epochal into this environment")
    return script


@dataclass
class Side:
    name: str
    command: list[str]  # the run folder's path is appended
    seconds: list[float] = field(default_factory=list)  # wall time of each measured run
    train_seconds: list[float] = field(default_factory=list)  # as the process reports it
    accuracy: float | None = None  # best validation accuracy, last run

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def run_once(side: Side, run_dir: Path, env: dict[str, str]) -> tuple[float, float, float]:
    """Wall seconds, reported training seconds and best accuracy of one run."""
    start = time.perf_counter()
    result = subprocess.run(
        [*side.command, str(run_dir)], capture_output=True, text=True, env=env, cwd=run_dir.parent
    )
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(
            f"error: {side.name}: {' '.join(side.command)} {run_dir} exited "
            f"{result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    best = BEST_LINE.search(result.stdout)
    if best is None:
        sys.exit(f"error: {side.name}: no 'best val_accuracy' line in:\n{result.stdout}")
    trained = TRAIN_SECONDS.search(result.stdout)
    if trained is not None:
        train_seconds = float(trained.group(1))
    else:
        summary = json.loads((run_dir / "summary.json").read_text())
        train_seconds = float(summary["wall_seconds"])
    return elapsed, train_seconds, float(best.group(1))


def measure(sides: list[Side], warmups: int, repeats: int, root: Path, env: dict[str, str]) -> None:
    """Interleaved runs, the order alternating every repeat; fresh run folders."""
    counter = 0
    for repeat in range(warmups + repeats):
        for side in sides if repeat % 2 == 0 else sides[::-1]:
            counter += 1
            run_dir = root / f"run{counter}"
            elapsed, trained, accuracy = run_once(side, run_dir, env)
            shutil.rmtree(run_dir, ignore_errors=True)
            if repeat >= warmups:
                side.seconds.append(elapsed)
                side.train_seconds.append(trained)
                side.accuracy = accuracy


def paired_ratio(side: Side, base: Side) -> float:
    """Median of the per-repeat ratios side / base (robust to slow drift)."""
    return statistics.median(a / b for a, b in zip(side.seconds, base.seconds, strict=True))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 epochs, 1 run each (smoke run)")
    parser.add_argument(
        "--epochs", type=int, default=None, help="epochs per run (default 15; quick: 2)"
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="measured runs per side (default 5; quick: 1)"
    )
    parser.add_argument(
        "--warmup", type=int, default=None, help="warm-up runs per side (default 1; quick: 0)"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="OMP/MKL/OpenBLAS threads of every run (1)"
    )
    args = parser.parse_args(argv)
    epochs = args.epochs or (2 if args.quick else 15)
    repeats = args.repeats or (1 if args.quick else 5)
    warmups = args.warmup if args.warmup is not None else (0 if args.quick else 1)

    env = dict(os.environ)
    # Python's default: compiled modules are cached (the warm-up writes the caches). Some
    # shells here set PYTHONDONTWRITEBYTECODE, which would recompile epochal's editable sources
    # on every start but not torch's installed ones: an unfair handicap for one side.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update({name: str(args.threads) for name in THREAD_VARS})
    script = str(epochal_script())
    train = [script, "train", "--epochs", str(epochs)]
    lean = [arg for setting in EXTRAS_OFF for arg in ("--set", setting)]
    with tempfile.TemporaryDirectory(prefix="epochal-bench-") as tmp:
        root = Path(tmp)
        hand_script = root / "hand_written.py"
        hand_script.write_text(HAND_WRITTEN)
        hand_command = [sys.executable, str(hand_script), str(epochs)]
        sides = [
            Side(HAND, hand_command),
            Side(EPOCHAL, [*train, "--run-dir"]),
            Side(LEAN, [*train, *lean, "--run-dir"]),
            Side(CONTROL, hand_command),
        ]
        measure(sides, warmups, repeats, root, env)

    hand = sides[0]
    version = sys.version.split()[0]
    print(
        f"{epochs} epochs per run, {repeats} measured runs per side after {warmups} warm-up(s), "
        f"interleaved; median wall time, start-up included; python {version}, "
        f"threads={args.threads}"
    )
    print(
        f"{'side':<31}{'wall s':>8}{'min':>8}{'max':>8}{'ratio':>8}{'paired':>8}"
        f"{'train s':>9}{'rest s':>8}{'best val acc':>14}"
    )
    for side in sides:
        train_s = statistics.median(side.train_seconds)
        print(
            f"{side.name:<31}{side.median:>8.2f}{min(side.seconds):>8.2f}{max(side.seconds):>8.2f}"
            f"{side.median / hand.median:>8.3f}{paired_ratio(side, hand):>8.3f}"
            f"{train_s:>9.2f}{side.median - train_s:>8.2f}{side.accuracy:>14.4f}"
        )
    print(
        "ratio: median wall / hand-written median; paired: median of per-repeat ratios; "
        "train s: training as the process reports it; rest s: wall - train s (start-up, exit)"
    )

    default, no_extras = sides[1], sides[2]
    extras = default.median - no_extras.median
    in_training = statistics.median(default.train_seconds) - statistics.median(
        no_extras.train_seconds
    )
    print(
        f"csv + tensorboard + curves.png cost {extras:+.2f} s per run "
        f"({in_training:+.2f} s of it in training, {in_training / epochs * 1000:+.0f} ms "
        f"per epoch); A/A control {sides[3].median / hand.median:.3f} (noise floor)"
    )
    accurate = all(side.accuracy >= MIN_ACCURACY for side in sides)
    sane = accurate or epochs < MIN_ACCURACY_EPOCHS
    if not sane:
        print(f"sanity: a side's best validation accuracy is below {MIN_ACCURACY}")
    ratio, lean_ratio = default.median / hand.median, no_extras.median / hand.median
    met = ratio <= TARGET_RATIO and sane
    lean_met = lean_ratio <= TARGET_RATIO
    print(
        f"epochal/hand-written: default job {ratio:.3f} (target <= {TARGET_RATIO:.2f}); "
        f"without csv/tensorboard/curves {lean_ratio:.3f} "
        f"({'meets' if lean_met else 'misses'} it, information): "
        f"{'TARGET MET' if met else 'TARGET MISSED'}"
        + ("" if sane else " (validation accuracy below the sanity bound)")
    )


if __name__ == "__main__":
    main()
