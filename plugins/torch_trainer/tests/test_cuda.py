"""PyTorchNetworkTrainer on a CUDA GPU: fp32, float16 AMP, delira closures, host syncs,
checkpoints and device ids. Skipped where CUDA is not available (CI has no GPU).

Data are the digits of the root ``conftest.py`` (numpy batch dicts from ``DataManager``);
the network is a small MLP, so the whole module takes a few seconds on a GPU.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from epochal_torch.networks import AbstractPyTorchNetwork
from epochal_torch.trainer import PyTorchNetworkTrainer

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available() is False)"
)

GPU_IDS = [0]
DEVICE = "cuda:0"
EPOCHS = 8
MIN_ACCURACY = 0.9


def _mlp() -> torch.nn.Sequential:
    return torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))


def _accuracy(predictions: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    # A tensor, computed on the device: no .item(), so metrics cost no host sync.
    return (predictions.argmax(dim=1) == labels).float().mean()


def _trainer(
    network: torch.nn.Module | None = None,
    seed: int = 0,
    optimizer_params: dict[str, Any] | None = None,
    **kwargs: Any,
) -> PyTorchNetworkTrainer:
    torch.manual_seed(seed)
    kwargs.setdefault("gpu_ids", GPU_IDS)
    kwargs.setdefault("save_path", None)
    return PyTorchNetworkTrainer(
        network if network is not None else _mlp(),
        criterions={"CE": torch.nn.CrossEntropyLoss()},
        optimizer_cls=torch.optim.Adam,
        optimizer_params=optimizer_params or {"lr": 1e-2},
        **{"metrics": {"acc": _accuracy}, **kwargs},
    )


def _val_accuracy(trainer: PyTorchNetworkTrainer, valid: Any) -> float:
    batchgen = valid.get_batchgen()
    try:
        _, _, metrics = trainer.predict(batchgen)
    finally:
        batchgen.close()
    return float(metrics["acc"])


def _numpy_batches(manager: Any, seed: int = 1) -> list[dict[str, np.ndarray]]:
    batchgen = manager.get_batchgen(seed=seed)
    try:
        return list(batchgen)
    finally:
        batchgen.close()


def _on_device(batches: Iterable[dict[str, np.ndarray]]) -> list[dict[str, torch.Tensor]]:
    return [{key: torch.from_numpy(value).to(DEVICE) for key, value in b.items()} for b in batches]


def _assert_on_gpu(trainer: PyTorchNetworkTrainer) -> None:
    assert trainer.input_device == torch.device(DEVICE)
    assert {p.device for p in trainer.module.parameters()} == {torch.device(DEVICE)}


# -- training --------------------------------------------------------------------------------


def test_fp32_trains_digits_on_gpu(managers):
    train, valid = managers()
    trainer = _trainer()
    _assert_on_gpu(trainer)
    assert trainer.scaler is None and not trainer.amp.enabled
    trainer.train(EPOCHS, train, valid, val_score_key="val_acc")
    _assert_on_gpu(trainer)
    assert trainer.best_val_score > MIN_ACCURACY, trainer.best_val_score
    assert _val_accuracy(trainer, valid) > MIN_ACCURACY


def test_fp16_amp_trains_digits_on_gpu(managers):
    train, valid = managers()
    trainer = _trainer(mixed_precision=True)
    assert trainer.amp.enabled and trainer.amp.dtype == torch.float16
    assert trainer.scaler is not None and trainer.scaler.is_enabled()
    trainer.train(EPOCHS, train, valid, val_score_key="val_acc")
    _assert_on_gpu(trainer)
    scale = trainer.scaler.get_scale()
    assert math.isfinite(scale) and scale > 0, scale
    # The steps went through the scaler: it created its device tensors.
    assert trainer.scaler._scale is not None and trainer.scaler._scale.device.type == "cuda"
    assert trainer.best_val_score > MIN_ACCURACY, trainer.best_val_score
    predictions, _, _ = trainer.predict(_numpy_batches(valid))
    assert predictions.dtype == np.float32 and np.isfinite(predictions).all()


class DeliraMLP(AbstractPyTorchNetwork):
    """A delira network whose closure does its own step with ``scale_loss`` (apex's API)."""

    seen: dict[str, Any] = {}

    def __init__(self) -> None:
        super().__init__()
        self.net = _mlp()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    @staticmethod
    def closure(model, data_dict, optimizers, losses, metrics, fold=0, **kwargs):
        optimizers["default"].zero_grad()
        predictions = model(data_dict["data"])
        loss_vals = {
            name: criterion(predictions, data_dict["label"]) for name, criterion in losses.items()
        }
        loss = sum(loss_vals.values())
        with optimizers["default"].scale_loss(loss) as scaled:
            scaled.backward()
        optimizers["default"].step()
        with torch.no_grad():
            metric_vals = {
                name: fn(predictions, data_dict["label"]) for name, fn in metrics.items()
            }
        seen = DeliraMLP.seen
        seen["calls"] = seen.get("calls", 0) + 1
        seen.setdefault("dtype", predictions.dtype)
        seen.setdefault("loss", loss.detach().float())
        seen.setdefault("scaled", scaled.detach().float())
        return metric_vals, loss_vals, predictions


def test_delira_closure_trains_under_fp16_amp(managers):
    DeliraMLP.seen = {}
    train, valid = managers()
    trainer = _trainer(DeliraMLP(), mixed_precision=True)
    assert trainer.closure is DeliraMLP.closure
    trainer.train(EPOCHS, train, valid, val_score_key="val_acc")
    seen = DeliraMLP.seen
    assert seen["calls"] >= EPOCHS, seen
    assert seen["dtype"] == torch.float16  # the closure ran under the trainer's autocast
    # scale_loss scaled the first loss by the initial scale (2**16), so the step was unscaled
    # by the GradScaler that optimizer.step() is routed through.
    ratio = (seen["scaled"] / seen["loss"]).item()
    assert ratio == pytest.approx(trainer.amp.init_scale), ratio
    assert math.isfinite(trainer.scaler.get_scale())
    assert trainer.best_val_score > MIN_ACCURACY, trainer.best_val_score


# -- host syncs --------------------------------------------------------------------------------

SYNC_MESSAGE = "synchronizing CUDA operation"


def _syncs_during(fn: Callable[[], Any]) -> Counter[str]:
    """Synchronizing CUDA calls made by ``fn``, by the Python line that made them."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return Counter(
        f"{'/'.join(Path(w.filename).parts[-3:])}:{w.lineno}"
        for w in caught
        if SYNC_MESSAGE in str(w.message)
    )


def _per_batch_syncs(trainer: PyTorchNetworkTrainer, batches: list[dict]) -> dict[str, float]:
    """Syncs that grow with the number of batches of ``_train_single_epoch``.

    A warm-up epoch first (lazy initialisation may sync once), then epochs of ``small`` and
    ``large`` batches: the once-per-epoch read of the losses costs the same in both, so any
    line whose count grows syncs per batch. Returns ``{line: syncs per batch}``.
    """
    small, large = 4, 12
    assert len(batches) >= large, len(batches)
    trainer._train_single_epoch(batches[:small], epoch=1)
    torch.cuda.synchronize()
    few = _syncs_during(lambda: trainer._train_single_epoch(batches[:small], epoch=2))
    many = _syncs_during(lambda: trainer._train_single_epoch(batches[:large], epoch=3))
    # The epoch's results still come back once: the epoch itself does sync, at its end.
    assert sum(few.values()) >= 1, "no sync seen at all: is set_sync_debug_mode working?"
    return {
        line: (many[line] - few[line]) / (large - small) for line in many if many[line] > few[line]
    }


def test_no_per_batch_sync_fp32_numpy_batches(managers):
    """The default step on numpy batch dicts (what a DataManager yields)."""
    train, _ = managers()
    trainer = _trainer()
    growth = _per_batch_syncs(trainer, _numpy_batches(train))
    print(f"per-batch syncs, fp32, numpy batches: {growth}")
    assert not growth, f"host syncs per training batch (line: syncs per batch): {growth}"


def test_no_per_batch_sync_in_the_plain_fast_path(managers):
    """No metrics, one criterion, fp32: the lean loop keeps each loss on the device."""
    train, _ = managers()
    trainer = _trainer(metrics={})
    growth = _per_batch_syncs(trainer, _numpy_batches(train))
    print(f"per-batch syncs, plain fast path, numpy batches: {growth}")
    assert not growth, f"host syncs per training batch (line: syncs per batch): {growth}"


@pytest.mark.parametrize(
    "mode",
    [
        pytest.param({}, id="fp32"),
        # A GradScaler syncs per step (.item() on found_inf) unless the optimizer
        # implements the scaling itself, as fused Adam does.
        pytest.param(
            {"mixed_precision": True, "optimizer_params": {"lr": 1e-2, "fused": True}},
            id="fp16-amp-fused-adam",
        ),
    ],
)
def test_no_per_batch_sync_device_batches(managers, mode):
    """The loop itself (step, loss bookkeeping, scaler update) on batches already on the GPU."""
    train, _ = managers()
    trainer = _trainer(**mode)
    growth = _per_batch_syncs(trainer, _on_device(_numpy_batches(train)))
    print(f"per-batch syncs, {mode or 'fp32'}, batches on the GPU: {growth}")
    assert not growth, f"host syncs per training batch (line: syncs per batch): {growth}"


def test_amp_default_adam_syncs_only_in_torch_grad_scaler(managers):
    """With a plain (non-fused) optimizer the only per-batch sync may be torch's own
    ``GradScaler.step`` (it reads found_inf to skip the step); none may come from epochal."""
    train, _ = managers()
    trainer = _trainer(mixed_precision=True)
    growth = _per_batch_syncs(trainer, _on_device(_numpy_batches(train)))
    print(f"per-batch syncs, fp16 AMP, plain Adam, batches on the GPU: {growth}")
    foreign = {line: n for line, n in growth.items() if "grad_scaler.py" not in line}
    assert not foreign, f"host syncs per training batch outside torch's GradScaler: {growth}"


# -- checkpoints and device ids ----------------------------------------------------------------


def test_checkpoint_on_gpu_resumes_into_fresh_gpu_trainer(managers, tmp_path):
    train, valid = managers()
    first = _trainer(mixed_precision=True, save_path=tmp_path)
    first.train(2, train, valid, val_score_key="val_acc")
    assert (tmp_path / "checkpoint_last.pt").exists()
    assert (tmp_path / "checkpoint_best.pt").exists()
    path = first.save_state(str(tmp_path / "resume"), epoch=2)
    weights = {k: v.detach().clone() for k, v in first.module.state_dict().items()}
    adam = first.optimizers["default"].state_dict()["state"]
    scale = first.scaler.get_scale()

    second = _trainer(mixed_precision=True, seed=123, save_path=tmp_path / "resumed")
    assert not all(torch.equal(weights[k], v) for k, v in second.module.state_dict().items()), (
        "a different seed should start from other weights"
    )
    second.update_state(path)
    _assert_on_gpu(second)
    assert second.start_epoch == 3
    resumed = second.module.state_dict()
    assert resumed.keys() == weights.keys()
    for key, value in weights.items():
        assert resumed[key].device == torch.device(DEVICE), key
        assert torch.equal(resumed[key], value), key
    state = second.optimizers["default"].state_dict()["state"]
    for index, entry in adam.items():
        assert state[index]["exp_avg"].device == torch.device(DEVICE)
        assert torch.equal(state[index]["exp_avg"], entry["exp_avg"])
    assert second.scaler.get_scale() == scale
    second.train(3, train, valid, val_score_key="val_acc")  # one more epoch, on the GPU
    _assert_on_gpu(second)
    assert (tmp_path / "resumed" / "checkpoint_epoch_3.pt").exists()


def test_unknown_gpu_id_names_available_ids():
    count = torch.cuda.device_count()
    bad = max(5, count)
    with pytest.raises(ValueError) as info:
        _trainer(gpu_ids=[bad])
    message = str(info.value)
    assert f"gpu_ids=[{bad}]" in message
    assert f"ids 0..{count - 1}" in message, message
