"""Mixed precision against fp32: seconds per training epoch of PyTorchNetworkTrainer.

What is measured: ``PyTorchNetworkTrainer._train_single_epoch`` (the trainer's own step: the
default closure, Adam, CrossEntropyLoss, losses read once per epoch) over the same prebuilt
list of numpy batch dicts (``data`` float32 (128, 3, 64, 64) of random normal values,
``label`` int64 (128,), 24 batches per epoch) for two trainers built from the same seed:

* ``fp32``: ``mixed_precision=False`` (PyTorch's defaults for TF32: convolutions may use it,
  matrix products not; ``--no-tf32`` turns it off for both, printed in the header);
* ``AMP``: ``mixed_precision=True``: float16 autocast and a GradScaler on CUDA, bfloat16
  autocast (no scaler) on the CPU.

The network is a small VGG/ResNet-style CNN: three stages of two 3x3 conv-BN-ReLU blocks
(64, 128 and 256 channels) with 2x2 max-pooling, global average pooling and a linear layer
(about 1.2 GFLOP per 64x64 image forward). ``torch.backends.cudnn.benchmark`` is on for both.
Each trainer gets ``--warmup`` epochs first (cudnn autotuning, lazy state), then the two are
timed epoch by epoch in alternation (``--epochs`` each) so that clock and thermal drift hit
both alike; each epoch is bracketed by ``torch.cuda.synchronize()``. Reported: the median
seconds per epoch, images per second, and the speed-up of AMP over fp32 (median fp32 / median
AMP). ``--device-batches`` uploads the batches to the GPU beforehand (no host-to-device copy
in the timed epochs). ``--quick`` is a smoke run (small images and batches, a few epochs);
without CUDA it runs on the CPU with bfloat16, where figures say little about GPUs.
Figures are printed, not asserted; the exit status is 0 unless something fails.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
import warnings
from typing import Any

import numpy as np
import torch

from epochal_torch.trainer import PyTorchNetworkTrainer

NUM_CLASSES = 10


def conv_net(channels: tuple[int, ...] = (64, 128, 256)) -> torch.nn.Sequential:
    layers: list[torch.nn.Module] = []
    cin = 3
    for cout in channels:
        for c_in in (cin, cout):
            layers += [
                torch.nn.Conv2d(c_in, cout, 3, padding=1, bias=False),
                torch.nn.BatchNorm2d(cout),
                torch.nn.ReLU(inplace=True),
            ]
        layers.append(torch.nn.MaxPool2d(2))
        cin = cout
    layers += [
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(cin, NUM_CLASSES),
    ]
    return torch.nn.Sequential(*layers)


def make_batches(
    num_batches: int, batch_size: int, image_size: int, seed: int = 0
) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [
        {
            "data": rng.standard_normal((batch_size, 3, image_size, image_size), dtype=np.float32),
            "label": rng.integers(0, NUM_CLASSES, size=batch_size, dtype=np.int64),
        }
        for _ in range(num_batches)
    ]


def make_trainer(gpu_ids: list[int], mixed_precision: bool) -> PyTorchNetworkTrainer:
    torch.manual_seed(0)
    return PyTorchNetworkTrainer(
        conv_net(),
        save_path=None,
        criterions={"CE": torch.nn.CrossEntropyLoss()},
        optimizer_cls=torch.optim.Adam,
        optimizer_params={"lr": 1e-3},
        gpu_ids=gpu_ids,
        mixed_precision=mixed_precision,
    )


def _sync(cuda: bool) -> None:
    if cuda:
        torch.cuda.synchronize()


def timed_epoch(
    trainer: PyTorchNetworkTrainer, batches: list[dict[str, Any]], epoch: int, cuda: bool
) -> tuple[float, float]:
    _sync(cuda)
    start = time.perf_counter()
    metrics = trainer._train_single_epoch(batches, epoch)
    _sync(cuda)
    return time.perf_counter() - start, float(metrics["CE"])


def _tf32_flags() -> tuple[bool, bool]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bool(torch.backends.cudnn.allow_tf32), bool(torch.backends.cuda.matmul.allow_tf32)


def _set_tf32(enabled: bool) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.backends.cudnn.allow_tf32 = enabled
        torch.backends.cuda.matmul.allow_tf32 = enabled


def print_environment(cuda: bool) -> None:
    print(f"python {platform.python_version()}, torch {torch.__version__}")
    if cuda:
        props = torch.cuda.get_device_properties(0)
        print(
            f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, "
            f"GPU: {torch.cuda.get_device_name(0)} (compute capability "
            f"{props.major}.{props.minor}, {props.multi_processor_count} SMs, "
            f"{props.total_memory / 2**30:.0f} GiB)"
        )
    else:
        print(
            f"CUDA: not available (torch.version.cuda={torch.version.cuda}); "
            f"CPU: {platform.processor() or platform.machine()}, "
            f"{torch.get_num_threads()} torch threads"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: small and short")
    parser.add_argument("--batches", type=int, default=24, help="batches per epoch")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=2, help="untimed epochs per mode")
    parser.add_argument("--epochs", type=int, default=7, help="timed epochs per mode")
    parser.add_argument("--device-batches", action="store_true", help="batches on the GPU")
    parser.add_argument("--no-tf32", action="store_true", help="strict fp32 (no TF32)")
    args = parser.parse_args(argv)
    if args.quick:
        args.batches, args.batch_size, args.image_size = 3, 16, 32
        args.warmup, args.epochs = 1, 2

    cuda = torch.cuda.is_available()
    gpu_ids = [0] if cuda else []
    print_environment(cuda)
    if cuda:
        torch.backends.cudnn.benchmark = True
        if args.no_tf32:
            _set_tf32(False)
    conv_tf32, matmul_tf32 = _tf32_flags()

    batches: list[dict[str, Any]] = make_batches(args.batches, args.batch_size, args.image_size)
    if args.device_batches and cuda:
        batches = [{k: torch.from_numpy(v).cuda() for k, v in b.items()} for b in batches]
    source = "torch tensors on the GPU" if args.device_batches and cuda else "numpy batch dicts"
    print(
        f"config: {args.batches} batches/epoch of {args.batch_size} x 3x{args.image_size}x"
        f"{args.image_size} ({source}), {args.warmup} warm-up + {args.epochs} timed epochs per "
        f"mode (interleaved), cudnn.benchmark={torch.backends.cudnn.benchmark}, "
        f"TF32 convs={conv_tf32 if cuda else 'n/a'} matmul={matmul_tf32 if cuda else 'n/a'}"
    )

    amp_dtype = "float16 + GradScaler" if cuda else "bfloat16 autocast"
    modes = {
        "fp32": ("float32" + (" (TF32 convs)" if cuda and conv_tf32 else ""), False),
        "AMP (mixed_precision=True)": (amp_dtype, True),
    }
    trainers = {name: make_trainer(gpu_ids, amp) for name, (_, amp) in modes.items()}
    for name, trainer in trainers.items():
        assert trainer.amp.enabled == modes[name][1]
        if cuda and trainer.amp.enabled:
            assert trainer.scaler is not None

    epoch = 0
    for trainer in trainers.values():
        for _ in range(args.warmup):
            epoch += 1
            timed_epoch(trainer, batches, epoch, cuda)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times: dict[str, list[float]] = {name: [] for name in trainers}
    losses: dict[str, float] = {}
    for _ in range(args.epochs):
        epoch += 1
        for name, trainer in trainers.items():
            seconds, loss = timed_epoch(trainer, batches, epoch, cuda)
            times[name].append(seconds)
            losses[name] = loss

    images = args.batches * args.batch_size
    print()
    header = f"{'mode':<28}{'dtype':<26}{'s/epoch (median)':>18}{'min':>10}{'images/s':>12}"
    print(header + f"{'last loss':>11}")
    print("-" * (len(header) + 11))
    medians = {}
    for name, (dtype, _) in modes.items():
        medians[name] = statistics.median(times[name])
        print(
            f"{name:<28}{dtype:<26}{medians[name]:>18.4f}{min(times[name]):>10.4f}"
            f"{images / medians[name]:>12.0f}{losses[name]:>11.4f}"
        )
    fp32, amp = medians["fp32"], medians["AMP (mixed_precision=True)"]
    where = torch.cuda.get_device_name(0) if cuda else "CPU, bfloat16"
    print(f"\nAMP speed-up over fp32: {fp32 / amp:.2f}x ({where})")
    if cuda:
        print(
            f"peak GPU memory (both trainers): {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB"
        )
    bad = [name for name, loss in losses.items() if not np.isfinite(loss)]
    if bad:
        print(f"WARNING: non-finite training loss for {bad}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
