"""The core's side of distributed training: sharded data, what a rank other than 0 does
(trains its share, writes nothing), and the collective operations written once on a sum over
processes (two real processes joined by a pipe). The frameworks' multi-process runs are in
tests/distributed/ and the backends' tests."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

import numpy as np
import pytest

from epochal import AbstractCallback
from epochal.data import DataManager, RandomSampler, SequentialSampler
from epochal.data.datasets import ArrayDataset
from epochal.data.samplers import ShardedSampler
from epochal.errors import DataError, DistributedError
from epochal.loop.distributed import Collective, is_main_process, process_role


def indexed(n: int) -> ArrayDataset:
    return ArrayDataset(data=np.arange(n, dtype=np.float32)[:, None], label=np.arange(n))


# -- sharded data --------------------------------------------------------------------------


@pytest.mark.parametrize("n", [12, 13, 15])
def test_even_shards_take_equal_steps_and_together_cover_the_epoch(n):
    base = RandomSampler(n)
    shards = [ShardedSampler(base, num_replicas=3, rank=r, even=True) for r in range(3)]
    drawn = [s.epoch_indices(seed=4) for s in shards]
    assert {len(d) for d in drawn} == {-(-n // 3)} == {len(s) for s in shards}
    assert set(np.concatenate(drawn).tolist()) == set(range(n))  # padding repeats, loses none
    # step j of all ranks = the j-th block of the global order (what one process would take)
    order = base.epoch_indices(seed=4)
    padded = np.concatenate([order, order[: 3 * len(drawn[0]) - n]])
    assert np.array_equal(np.stack(drawn, axis=1).reshape(-1), padded)


def test_uneven_shards_repeat_nothing():
    shards = [
        ShardedSampler(SequentialSampler(7), num_replicas=2, rank=r, even=False) for r in (0, 1)
    ]
    drawn = [s.epoch_indices() for s in shards]
    assert [len(d) for d in drawn] == [4, 3]
    assert sorted(np.concatenate(drawn).tolist()) == list(range(7))


def test_a_manager_shards_with_the_same_global_order_and_its_own_augmentation_seeds():
    manager = DataManager(indexed(40), 5, 0, sampler_cls=RandomSampler, seed=1)
    whole = np.concatenate([b["label"] for b in manager.get_batchgen(seed=2)])
    parts = [manager.shard(2, rank) for rank in (0, 1)]
    batches = [[b["label"] for b in part.get_batchgen(seed=2)] for part in parts]
    assert [len(b) for b in batches] == [4, 4]  # 20 samples a rank in batches of 5
    # global step j = ranks' batches j together = one process's batch j of 10 samples
    for step in range(4):
        together = np.stack([batches[0][step], batches[1][step]], axis=1).reshape(-1)
        assert np.array_equal(together, whole[10 * step : 10 * step + 10])
    assert manager.shard(1, 0) is manager
    assert parts[0].dataset is manager.dataset  # a view, not a copy of the data


def test_sharding_refuses_what_cannot_work():
    tiny = DataManager(indexed(3), 1, 0)
    with pytest.raises(DataError, match="3 samples cannot be shared by 4 processes: rank 3"):
        tiny.shard(4, 3, even=False)
    pre = DataManager(indexed(8), 2, 0, sampler_kwargs={"num_replicas": 2, "rank": 1})
    assert pre.shard(2, 1) is pre  # sharded by the user: kept
    with pytest.raises(DataError, match="leave num_replicas and rank out of sampler_kwargs"):
        pre.shard(2, 0)


def test_a_shard_smaller_than_the_batch_takes_one_batch():
    manager = DataManager(indexed(10), 8, 0).shard(2, 1)
    assert (manager.batch_size, manager.n_batches) == (5, 1)


# -- a rank other than 0 -------------------------------------------------------------------


class SecondOfTwo(Collective):
    """Rank 1 of 2 in a world where the other rank agrees with everything: the ranks'
    means are this rank's (the real collectives are tested in tests/distributed/)."""

    rank, world_size = 1, 2

    def __init__(self):
        self.means = []

    def mean(self, values, weight=1.0):
        self.means.append((dict(values), weight))
        return dict(values)


class Writer(AbstractCallback):
    main_process_only = True

    def __init__(self):
        self.epochs = []

    def at_epoch_end(self, trainer, **kwargs):
        self.epochs.append(kwargs["epoch"])


class Stopper(AbstractCallback):
    def __init__(self):
        self.epochs = []

    def at_epoch_end(self, trainer, **kwargs):
        self.epochs.append(kwargs["epoch"])


def test_rank_1_trains_its_share_averages_metrics_and_writes_nothing(
    tmp_path, make_trainer, managers
):
    writer, stopper = Writer(), Stopper()
    trainer = make_trainer(save_path=tmp_path, callbacks=[writer, stopper])
    trainer.collective = collective = SecondOfTwo()
    train, valid = managers()
    trainer.train(2, train, valid, val_score_key="accuracy")
    assert list(tmp_path.iterdir()) == []  # rank 0 writes the checkpoints
    assert writer.epochs == [] and stopper.epochs == [1, 2]
    half_train, half_valid = -(-train.n_samples // 2), valid.n_samples // 2
    weights = [weight for _, weight in collective.means]
    assert weights == [half_train, half_valid] * 2  # train then validation, each epoch
    assert trainer.best_epoch is not None


def test_a_mid_epoch_stop_resumes_with_another_number_of_processes(make_trainer):
    trainer = make_trainer()
    skip = trainer._batches_to_skip
    assert skip({"epoch": 3, "batches_done": 5, "world_size": 2}) == 10  # 1 process: 2 a step
    assert skip({"epoch": 3, "batches_done": 5}) == 5  # written before world_size was saved
    trainer.collective = SecondOfTwo()
    assert skip({"epoch": 3, "batches_done": 6, "world_size": 1}) == 3
    trainer.collective = type("Rank0", (SecondOfTwo,), {"rank": 0})()  # rank 0 warns
    with pytest.warns(UserWarning, match="50% of a step's samples are trained a second time"):
        assert skip({"epoch": 3, "batches_done": 5, "world_size": 1}) == 2


# -- who talks to the user ---------------------------------------------------------------

CHIEF = '{"cluster": {"chief": ["c:1"], "worker": ["a:1"]}, '


@pytest.mark.parametrize(
    ("environ", "role"),
    [
        ({}, None),
        ({"RANK": "0", "WORLD_SIZE": "1"}, None),
        ({"RANK": "1", "WORLD_SIZE": "2"}, ("rank", 1)),
        (
            {"TF_CONFIG": '{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"index": 1}}'},
            ("worker", 1),
        ),
        ({"TF_CONFIG": '{"cluster": {"worker": ["a:1"]}, "task": {"index": 0}}'}, None),
        (
            {"TF_CONFIG": CHIEF + '"task": {"type": "worker", "index": 0}}'},
            ("worker", 1),
        ),
        (
            {"TF_CONFIG": CHIEF + '"task": {"type": "chief"}}'},
            ("worker", 0),
        ),
        ({"TF_CONFIG": "not json"}, None),  # the backend reports it; the CLI just talks
    ],
)
def test_the_process_role_comes_from_the_launchers_variables(environ, role):
    assert process_role(environ) == role
    assert is_main_process(environ) == (role is None or role[1] == 0)


def test_the_progress_bar_counts_this_ranks_batches():
    from epochal.runs.experiment import _batches_per_rank

    manager = DataManager(indexed(100), 10, 0)
    assert _batches_per_rank(manager, Collective()) == 10
    assert _batches_per_rank(manager, SecondOfTwo()) == 5


class OtherRankSaw(SecondOfTwo):
    """Rank 1, where the other rank's stop flags are ``seen`` (what it adds to the sum)."""

    def __init__(self, seen):
        super().__init__()
        self.seen, self.sums = seen, []

    def all_sum(self, values):
        self.sums.append(list(values))
        theirs = [self.seen.get(name, 0.0) for name in ("SIGTERM", "SIGINT", "other")]
        return [mine + other for mine, other in zip(values, theirs, strict=True)]


def test_every_rank_stops_for_the_signal_one_of_them_got():
    assert Collective().agree_stop(None) is None  # one process: nothing to agree on
    assert Collective().agree_stop("SIGINT") == "SIGINT"
    assert OtherRankSaw({}).agree_stop(None) is None
    assert OtherRankSaw({"SIGTERM": 1.0}).agree_stop(None) == "SIGTERM"
    assert OtherRankSaw({"SIGINT": 1.0}).agree_stop(None) == "SIGINT"
    assert OtherRankSaw({"other": 1.0}).agree_stop(None) == "a stop on another rank"
    assert OtherRankSaw({"SIGTERM": 1.0}).agree_stop("SIGINT") == "SIGINT"  # its own, first
    collective = OtherRankSaw({})
    collective.agree_stop("request")
    assert collective.sums == [[0.0, 0.0, 1.0]]  # one sum: SIGTERM, SIGINT, another reason


def test_a_rank_told_by_another_stops_with_that_signal(make_trainer):
    trainer = make_trainer()
    trainer.collective = OtherRankSaw({"SIGTERM": 1.0})
    assert trainer._stop_agreed() and trainer.stop_requested == "SIGTERM"
    trainer.collective, trainer.stop_requested = OtherRankSaw({}), None
    assert not trainer._stop_agreed() and trainer.stop_requested is None


# -- the operations on a real sum over two processes ----------------------------------------


class PipeCollective(Collective):
    """A backend's two primitives on a pipe between two real processes: the sum sends this
    rank's values and adds the other's; a closed pipe (the other process died) is a lost peer."""

    def __init__(self, rank, connection):
        self.rank, self.world_size, self.connection = rank, 2, connection

    def all_sum(self, values):
        mine = [float(value) for value in values]
        self.connection.send(mine)
        return [a + b for a, b in zip(mine, self.connection.recv(), strict=True)]

    def is_peer_failure(self, exc):
        return isinstance(exc, (EOFError, ConnectionError))


def every_operation(collective):
    rank = collective.rank
    return {
        "mean": collective.mean({"a": 1.0 + rank, "b": 2.0}, weight=1.0 + 2 * rank),
        "any": [collective.any(rank == 1), collective.any(False)],
        "broadcast": collective.broadcast({"run_dir": f"runs/{rank}", "note": "é" * (1 - rank)}),
        "barrier": collective.barrier(),
        "stops": [
            collective.agree_stop("SIGTERM" if rank == 1 else None),
            collective.agree_stop(None),
            collective.agree_stop("request" if rank == 1 else None),
            collective.agree_stop("SIGINT" if rank == 0 else "SIGTERM"),
        ],
    }


def two_ranks(rank_1, *args):
    """Rank 1 runs ``rank_1(PipeCollective(1, ...), *args)`` in a forked process (its result
    comes back through a second pipe); returns ``(rank 0's collective, rank 1's result, the
    process)``."""
    context = multiprocessing.get_context("fork")
    mine, theirs = context.Pipe()
    results, result_out = context.Pipe(duplex=False)

    def run():
        result_out.send(rank_1(PipeCollective(1, theirs), *args))

    process = context.Process(target=run, daemon=True)
    process.start()
    theirs.close()  # this process's copy: the pipe closes when rank 1 dies
    result_out.close()
    return PipeCollective(0, mine), results, process


def test_the_operations_are_one_sum_over_two_real_processes():
    collective, results, process = two_ranks(every_operation)
    try:
        ours = every_operation(collective)
        assert results.poll(30)
        theirs = results.recv()
    finally:
        process.join(10)
        process.kill()
    for result in (ours, theirs):
        assert result["mean"] == {"a": pytest.approx(1.75), "b": pytest.approx(2.0)}  # 7/4
        assert result["any"] == [True, False]
        assert result["broadcast"] == {"run_dir": "runs/0", "note": "é"}  # rank 0's, pickled
        assert result["barrier"] is None
    assert ours["stops"] == ["SIGTERM", None, "a stop on another rank", "SIGINT"]
    assert theirs["stops"] == ["SIGTERM", None, "request", "SIGTERM"]  # its own reason first


def test_a_lost_peer_is_named_for_what_the_rank_was_doing():
    mine, theirs = multiprocessing.Pipe()
    theirs.close()  # the other process is gone
    gone = PipeCollective(1, mine)
    with pytest.raises(DistributedError) as info:
        gone.mean({"CE": 1.0})
    assert str(info.value) == (
        "rank 1 lost contact with another process of this run (averaging the epoch's metrics: "
        "Broken pipe). Look at the other ranks' output for the first error. Checkpoints "
        "written so far are kept: continue with `epochal resume RUN_DIR`"
    )  # the backend's "[Errno 32]" left out
    assert isinstance(info.value.__cause__, BrokenPipeError)
    for operation, what in [
        (lambda: gone.agree_stop(None), "checking for a stop request"),
        (gone.barrier, "waiting for the other ranks"),
        (lambda: gone.broadcast("runs/a"), "sharing the run folder"),
        (lambda: gone.any(True), "comparing a flag with the other ranks"),
        (lambda: gone.any(True, what="taking the run folder"), "taking the run folder"),
    ]:
        with pytest.raises(DistributedError, match=rf"^rank 1 lost contact .* \({what}: Broken"):
            operation()
    # in an operation inside a wider guard, the operation names it; other errors pass as
    # they are; another process name and advice (a backend's) read in the message
    with pytest.raises(DistributedError, match=r"\(averaging the epoch's metrics"):
        with gone.lost_peer("epoch 3"):
            gone.mean({"CE": 1.0})
    with pytest.raises(ValueError, match=r"^the model's own$"):
        with gone.lost_peer("epoch 3"):
            raise ValueError("the model's own")
    worker = type("Worker", (PipeCollective,), {"process_name": "worker", "resume_advice": "X"})
    named = r"^worker 1 .*\(waiting for the other workers: .* workers' output .*: X$"
    with pytest.raises(DistributedError, match=named):
        worker(1, mine).barrier()


class SyncEveryBatch(AbstractCallback):
    """Sums over the ranks after every batch, as DDP's gradient all-reduce does; the rank
    with ``die_at=(epoch, batch)`` is killed there (kill -9: no goodbye on the pipe)."""

    def __init__(self, die_at=None):
        self.die_at = die_at

    def at_batch_end(self, trainer, **kwargs):
        if (kwargs["epoch"], kwargs["batch_nr"]) == self.die_at:
            os.kill(os.getpid(), signal.SIGKILL)
        trainer.collective.all_sum([1.0])


def _train(collective, trainer, train, valid):
    trainer.collective = collective
    trainer.train(5, train, valid)


def test_a_peer_killed_mid_epoch_ends_training_with_one_error_naming_the_epoch(
    make_trainer, managers
):
    train, valid = managers()
    doomed = make_trainer(callbacks=[SyncEveryBatch(die_at=(2, 3))])
    collective, _, process = two_ranks(_train, doomed, train, valid)
    trainer = make_trainer(callbacks=[SyncEveryBatch()])
    trainer.collective = collective
    started = time.perf_counter()
    try:
        with pytest.raises(DistributedError) as info:
            trainer.train(5, train, valid)
        took = time.perf_counter() - started
    finally:
        process.join(10)
        process.kill()
    assert process.exitcode == -signal.SIGKILL
    assert str(info.value).startswith(
        "rank 0 lost contact with another process of this run (epoch 2: "
    )  # met in the backend's training, named by the loop once
    assert isinstance(info.value.__cause__, (EOFError, ConnectionError))
    assert took < 10
