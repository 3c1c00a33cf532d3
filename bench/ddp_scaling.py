"""Samples per second of data-parallel training: 2 processes (torchrun-style, DDP over gloo)
against 1, on this machine's CPU cores, one thread a process.

What is measured: the 784-512-10 MLP (cross entropy, SGD lr 0.01 momentum 0.9) trained on
prebuilt random numpy batch dicts of B samples a process (no data loading), for several B.

* epochal: ``PyTorchNetworkTrainer._train_single_epoch`` over the batches. With 2 processes
  the trainer joins the process group from the launch variables (RANK, WORLD_SIZE,
  MASTER_ADDR, MASTER_PORT, as torchrun sets them) and trains a DistributedDataParallel
  wrapper: what ``epochal train --nproc 2`` runs.
* hand-written: the same step written out, with ``DistributedDataParallel`` for 2 processes:
  the ceiling that DDP itself leaves on this machine, so that epochal's share of a shortfall
  shows.

Each configuration runs in fresh processes (started here, ranks with the launch variables),
warms up, waits for the other rank at a barrier, then times a fixed number of steps (the
same on both ranks) up to the next barrier. Samples per second = processes x B x steps /
seconds. Configurations are interleaved over ``--repeats`` and the medians are reported.

Target (issue 9): 2 processes at least 1.6x one, with epochal. On a 2-core machine that
is also running anything else the figures swing widely: run it on an idle machine.
``--quick`` is a smoke run (a few seconds). Exits 0 either way ("TARGET MET" / "MISSED").
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time

TARGET = 1.6
IN, HIDDEN, OUT = 784, 512, 10
SIDES = ("epochal", "hand-written")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(side: str, batch_size: int, steps: int, warmup: int) -> None:
    """One process of a configuration; rank 0 prints its JSON figures."""
    import numpy as np
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    model = torch.nn.Sequential(
        torch.nn.Linear(IN, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, OUT)
    )
    rng = np.random.default_rng(int(os.environ.get("RANK", "0")))
    batches = [
        {
            "data": rng.standard_normal((batch_size, IN), dtype=np.float32),
            "label": rng.integers(0, OUT, batch_size),
        }
        for _ in range(8)
    ]
    if side == "epochal":
        from epochal_torch import PyTorchNetworkTrainer

        trainer = PyTorchNetworkTrainer(
            model,
            None,
            {"CE": torch.nn.CrossEntropyLoss()},
            torch.optim.SGD,
            {"lr": 0.01, "momentum": 0.9},
        )

        def run(n: int) -> None:
            trainer._train_single_epoch((batches[i % 8] for i in range(n)), 1)

        barrier = trainer.collective.barrier
    else:
        import torch.distributed as dist

        net = model
        if world > 1:
            dist.init_process_group("gloo")
            net = torch.nn.parallel.DistributedDataParallel(model)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        criterion = torch.nn.CrossEntropyLoss()

        def run(n: int) -> None:
            for i in range(n):
                batch = batches[i % 8]
                loss = criterion(
                    net(torch.from_numpy(batch["data"])), torch.from_numpy(batch["label"])
                )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss.item()

        barrier = dist.barrier if world > 1 else (lambda: None)
    run(warmup)
    barrier()
    started = time.perf_counter()
    run(steps)
    barrier()
    seconds = time.perf_counter() - started
    if os.environ.get("RANK", "0") == "0":
        rate = world * batch_size * steps / seconds
        print(json.dumps({"samples_per_second": rate, "seconds": seconds}), flush=True)
    if side != "epochal" and world > 1:  # (epochal's trainer leaves the group at exit)
        dist.destroy_process_group()


def _configuration(side: str, processes: int, batch_size: int, steps: int, warmup: int) -> float:
    """Samples per second of one configuration, in fresh processes."""
    command = [sys.executable, __file__, "--worker", side, str(batch_size), str(steps), str(warmup)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        env.pop(key, None)
    if processes > 1:
        env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()))
        env["WORLD_SIZE"] = str(processes)
    ranks = [
        subprocess.Popen(
            command,
            env={**env, **({"RANK": str(r), "LOCAL_RANK": str(r)} if processes > 1 else {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(processes)
    ]
    outputs = [rank.communicate(timeout=600) for rank in ranks]
    measured = outputs[0][0].strip().splitlines()
    what = f"{side}, {processes} process(es), B={batch_size}"
    for number, (rank, (_, err)) in enumerate(zip(ranks, outputs, strict=True)):
        if rank.returncode == -signal.SIGABRT and measured:
            # gloo's threads meeting the interpreter's teardown: rare, after the measurement
            print(f"note: rank {number} aborted at exit ({what}): {err.strip()[-80:]}")
        elif rank.returncode != 0:
            raise RuntimeError(f"a benchmark process failed ({what}):\n{err[-2000:]}")
    return json.loads(measured[-1])["samples_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256, 1024, 4096])
    parser.add_argument("--samples", type=int, default=60_000, help="samples a rank times")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        side, batch, steps, warmup = args.worker
        _worker(side, int(batch), int(steps), int(warmup))
        return
    if args.quick:
        args.batch_sizes, args.samples, args.repeats = [256], 2048, 1
    print(f"DDP scaling: MLP {IN}-{HIDDEN}-{OUT}, 1 thread a process, {os.cpu_count()} cores")
    rates: dict[tuple[str, int, int], list[float]] = {}
    for repeat in range(args.repeats):
        for batch in args.batch_sizes:
            steps = max(4 if args.quick else 24, args.samples // batch)
            configs = [(side, n) for side in SIDES for n in (1, 2)]
            for side, n in configs if repeat % 2 == 0 else configs[::-1]:
                rate = _configuration(side, n, batch, steps, warmup=max(2, steps // 10))
                rates.setdefault((side, n, batch), []).append(rate)
    print(f"{'B a process':>11}  {'side':<13} {'1 process':>10} {'2 processes':>12} {'ratio':>6}")
    best = 0.0
    for batch in args.batch_sizes:
        for side in SIDES:
            one = statistics.median(rates[(side, 1, batch)])
            two = statistics.median(rates[(side, 2, batch)])
            ratio = two / one
            if side == "epochal":
                best = max(best, ratio)
            print(f"{batch:>11}  {side:<13} {one:>10.0f} {two:>12.0f} {ratio:>5.2f}x")
    print("samples per second; median of", args.repeats, "repeat(s)")
    verdict = "TARGET MET" if best >= TARGET else "TARGET MISSED"
    print(f"{verdict}: best epochal ratio {best:.2f}x (target >= {TARGET}x at some batch size)")


if __name__ == "__main__":
    main()
