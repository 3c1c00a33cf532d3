"""Source text of the ``faultkill`` test plugin (read as text, installed with
``fake_distribution``; never imported by pytest).

``FAULT_KILL_AT`` picks the moment the process SIGKILLs itself:

* ``batch:E:B``      after training batch B of epoch E (``epochal_at_batch_end``)
* ``val:E``          in the middle of epoch E's validation (``trainer.predict`` wrapped)
* ``ckpt:E:STEM:N``  after N bytes of epoch E's ``STEM`` checkpoint (say ``checkpoint_last``)
                     reached its temporary file (the checkpoint writer's file wrapped)
* ``epoch_end:E``    at the end of epoch E, before its checkpoints (``epochal_at_epoch_end``)
* ``epoch_begin:E``  at the beginning of epoch E (``epochal_at_epoch_begin``)
"""

import contextlib
import os
import signal
import sys

from epochal import hookimpl

_SPEC = os.environ.get("FAULT_KILL_AT", "")
_KIND, _, _REST = _SPEC.partition(":")
_ARGS = _REST.split(":") if _REST else []
_EPOCH = {"now": 0, "validating": False}


def _die(why):
    sys.stdout.flush()
    sys.stderr.write(f"faultkill: SIGKILL {why}\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


@hookimpl
def epochal_at_epoch_begin(trainer, epoch, num_epochs, metrics_val, val_score_key):
    _EPOCH["now"] = epoch
    if _KIND == "epoch_begin" and epoch == int(_ARGS[0]):
        _die(f"at the beginning of epoch {epoch}")


@hookimpl
def epochal_at_epoch_end(
    trainer, epoch, num_epochs, metrics_train, metrics_val, val_score_key, is_best
):
    if _KIND == "epoch_end" and epoch == int(_ARGS[0]):
        _die(f"at the end of epoch {epoch}")


if _KIND == "batch":  # only then: a batch-end hook takes the trainer off its plain-epoch path

    @hookimpl
    def epochal_at_batch_end(trainer, epoch, batch_nr, losses, metrics):
        if epoch == int(_ARGS[0]) and batch_nr == int(_ARGS[1]):
            _die(f"after batch {batch_nr} of epoch {epoch}")


class _KillingFile:
    def __init__(self, handle, limit, why):
        self._handle, self._left, self._why = handle, limit, why

    def write(self, data):
        view = memoryview(data).cast("B") if not isinstance(data, str) else data
        if len(view) >= self._left:
            self._handle.write(view[: self._left])
            self._handle.flush()
            _die(self._why)
        self._left -= len(view)
        return self._handle.write(data)

    def __getattr__(self, name):
        return getattr(self._handle, name)


def _killing_atomic_write(original):
    stem, limit = _ARGS[1], int(_ARGS[2])

    @contextlib.contextmanager
    def atomic_write(path, *args, **kwargs):
        with original(path, *args, **kwargs) as handle:
            name = os.path.basename(os.fspath(path))
            if _EPOCH["now"] == int(_ARGS[0]) and name.split(".")[0] == stem:
                why = f"after {limit} bytes of {name} in epoch {_EPOCH['now']}"
                yield _KillingFile(handle, limit, why)
            else:
                yield handle

    return atomic_write


@hookimpl
def epochal_setup(trainer):
    if _KIND == "val":
        predict = trainer.predict

        def killing_predict(batchgen, *args, **kwargs):
            def batches():
                for batch in batchgen:
                    yield batch
                    if _EPOCH["now"] == int(_ARGS[0]):
                        _die(f"during the validation of epoch {_EPOCH['now']}")

            return predict(batches(), *args, **kwargs)

        trainer.predict = killing_predict
    if _KIND == "ckpt":
        for module in ("epochal_torch.io", "epochal_tf.io"):
            if module in sys.modules and hasattr(sys.modules[module], "atomic_write"):
                io = sys.modules[module]
                io.atomic_write = _killing_atomic_write(io.atomic_write)
