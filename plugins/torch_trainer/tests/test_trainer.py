"""PyTorchNetworkTrainer end to end on digits: train, validate, predict, AMP, optimizers."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from epochal import hookimpl
from epochal.plugins.registry import get_trainer
from epochal_torch import AbstractPyTorchNetwork, create_optims_default_pytorch
from epochal_torch.networks import prepare_batch
from epochal_torch.trainer import PyTorchNetworkTrainer


def test_registered_as_torch_and_learns_digits(torch_trainer, managers):
    assert get_trainer("torch") is PyTorchNetworkTrainer
    trainer = torch_trainer()
    train, valid = managers(workers=2)
    network = trainer.train(4, train, valid, val_score_key="accuracy")
    assert network is trainer.module and trainer.best_val_score > 0.9
    predictions, labels, metrics = trainer.predict(valid.get_batchgen())
    assert predictions.shape == (valid.n_samples, 10) and predictions.dtype == np.float32
    assert labels[0].dtype == np.int64 and labels[0].shape == (valid.n_samples,)
    assert metrics["accuracy"] == pytest.approx(np.mean(predictions.argmax(1) == labels[0]))
    assert set(metrics) == {"CE", "accuracy"}


class DeliraNet(AbstractPyTorchNetwork):
    """A network with a closure written for delira, unchanged."""

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10)
        )
        self.seen_dtypes = set()

    def forward(self, x):
        return self.body(x)

    @staticmethod
    def closure(model, data_dict, optimizers, losses, metrics, fold=0, **kwargs):
        predictions = model(data_dict["data"])
        model.seen_dtypes.add(predictions.dtype)
        loss_vals = {key: fn(predictions, data_dict["label"]) for key, fn in losses.items()}
        optimizers["default"].zero_grad()
        with optimizers["default"].scale_loss(loss_vals["CE"]) as scaled_loss:
            scaled_loss.backward()
        optimizers["default"].step()
        metric_vals = {key: fn(predictions, data_dict["label"]) for key, fn in metrics.items()}
        return metric_vals, loss_vals, predictions


@pytest.mark.parametrize("mixed_precision", [False, True])
def test_delira_closure_runs_unchanged(torch_trainer, managers, mixed_precision):
    trainer = torch_trainer(DeliraNet(), mixed_precision=mixed_precision)
    train, valid = managers()
    trainer.train(3, train, valid, val_score_key="accuracy")
    assert trainer.best_val_score > 0.85
    expected = torch.bfloat16 if mixed_precision else torch.float32  # bfloat16 autocast on CPU
    assert trainer.module.seen_dtypes == {expected}
    assert trainer.scaler is None  # bfloat16 needs no loss scaling


def test_default_step_autocasts_the_forward_only(torch_trainer, managers):
    dtypes = []
    trainer = torch_trainer(mixed_precision=True)
    trainer.module[0].register_forward_hook(lambda module, args, out: dtypes.append(out.dtype))
    train, valid = managers()
    trainer.train(2, train, valid, val_score_key="accuracy")
    assert set(dtypes) == {torch.bfloat16} and trainer.best_val_score > 0.85
    assert all(p.dtype == torch.float32 for p in trainer.module.parameters())  # fp32 master weights


class Generator(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1)
        )

    def forward(self, noise):
        return self.net(noise)


class GAN(AbstractPyTorchNetwork):
    """A 1-d GAN: the generator learns to produce samples around the data's mean."""

    def __init__(self):
        super().__init__()
        self.generator = Generator()
        self.discriminator = torch.nn.Sequential(
            torch.nn.Linear(1, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1)
        )

    def forward(self, noise):
        return self.generator(noise)

    @staticmethod
    def closure(model, data_dict, optimizers, losses, metrics, fold=0, **kwargs):
        real = data_dict["data"]
        bce = torch.nn.functional.binary_cross_entropy_with_logits
        fake = model.generator(torch.randn(len(real), 4))
        optimizers["discriminator"].zero_grad()
        d_real, d_fake = model.discriminator(real), model.discriminator(fake.detach())
        loss_d = bce(d_real, torch.ones_like(d_real)) + bce(d_fake, torch.zeros_like(d_fake))
        loss_d.backward()
        optimizers["discriminator"].step()
        optimizers["generator"].zero_grad()
        d_fake = model.discriminator(fake)
        loss_g = bce(d_fake, torch.ones_like(d_fake))
        loss_g.backward()
        optimizers["generator"].step()
        return {"fake_mean": fake.mean().detach()}, {"D": loss_d, "G": loss_g}, fake


def gan_optimizers(network, optim_cls, **optim_params):
    return {
        "generator": optim_cls(network.generator.parameters(), **optim_params),
        "discriminator": optim_cls(network.discriminator.parameters(), **optim_params),
    }


def test_gan_with_two_optimizers_from_optim_fn():
    from epochal.data import ArrayDataset, DataManager, RandomSampler

    torch.manual_seed(0)
    real = np.random.default_rng(0).normal(3.0, 0.5, size=(2048, 1)).astype(np.float32)
    data = DataManager(ArrayDataset(data=real), 128, 0, sampler_cls=RandomSampler, seed=0)
    network = GAN()
    generator_before = [p.detach().clone() for p in network.generator.parameters()]
    trainer = PyTorchNetworkTrainer(
        network,
        None,
        {},
        torch.optim.Adam,
        {"lr": 0.01, "betas": (0.5, 0.999)},
        optim_fn=gan_optimizers,
    )
    assert sorted(trainer.optimizers) == ["discriminator", "generator"]
    history = []
    trainer.register_callback(_Recorder(history))
    trainer.train(15, data)
    assert all(
        not torch.equal(a, b)
        for a, b in zip(generator_before, network.generator.parameters(), strict=True)
    )
    assert set(history[-1]) == {"D", "G", "fake_mean"}
    assert abs(history[-1]["fake_mean"] - 3.0) < 1.0  # started near 0, moved to the data


class _Recorder:
    def __init__(self, history):
        self.history = history

    def at_epoch_begin(self, trainer, **kwargs):
        return {}

    def at_epoch_end(self, trainer, metrics_train, **kwargs):
        self.history.append(dict(metrics_train))
        return {}


def test_create_optims_default_pytorch():
    network = torch.nn.Linear(3, 2)
    optimizers = create_optims_default_pytorch(network, torch.optim.SGD, lr=0.5)
    assert list(optimizers) == ["default"] and optimizers["default"].param_groups[0]["lr"] == 0.5


def test_gpu_ids_are_checked(torch_trainer):
    with pytest.raises(
        ValueError, match=r"gpu_ids=\[0\] but this machine's CUDA devices are: none"
    ):
        torch_trainer(gpu_ids=[0])
    with pytest.raises(ValueError, match=r"one trainer drives one GPU; .*torchrun"):
        torch_trainer(gpu_ids=[0, 1])
    assert torch_trainer(gpu_ids=[]).input_device == torch.device("cpu")


def test_mixed_precision_kwargs(torch_trainer):
    with pytest.warns(
        UserWarning, match=r"\['allow_banned', 'enable_caching', 'verbose'\] are apex"
    ) as record:
        trainer = torch_trainer(
            mixed_precision=True,
            mixed_precision_kwargs={
                "enable_caching": True,
                "verbose": False,
                "allow_banned": False,
            },
        )
    assert len(record) == 1 and trainer.amp.enabled and trainer.amp.dtype == torch.bfloat16
    with pytest.raises(ValueError, match=r"unknown mixed_precision_kwargs \['opt_lvl'\]"):
        torch_trainer(mixed_precision=True, mixed_precision_kwargs={"opt_lvl": "O1"})
    with pytest.raises(ValueError, match="'float8' is not supported"):
        torch_trainer(mixed_precision=True, mixed_precision_kwargs={"dtype": "float8"})
    off = torch_trainer(mixed_precision=True, mixed_precision_kwargs={"enabled": False})
    assert not off.amp.enabled
    fp16 = torch_trainer(
        mixed_precision=True, mixed_precision_kwargs={"dtype": "float16", "init_scale": 1024.0}
    )
    assert (
        fp16.scaler is not None and fp16.scaler.get_scale() == 1024.0
    )  # float16 scales, also on CPU


class CountHostReads(TorchDispatchMode):
    """Counts the aten ops that copy a tensor's value to Python (what .item() / float() do)."""

    def __init__(self):
        super().__init__()
        self.reads = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in (torch.ops.aten._local_scalar_dense.default, torch.ops.aten.item.default):
            self.reads += 1
        return func(*args, **(kwargs or {}))


def test_no_host_reads_per_batch(torch_trainer, digits_split):
    from epochal.data import DataManager

    train, _ = digits_split
    counts = {}
    for n_batches in (4, 16):
        # SGD: Adam reads its per-parameter step counters with .item() (CPU scalars, no device
        # sync), which would blur what this measures: the trainer's own reads.
        trainer = torch_trainer(optimizer_cls=torch.optim.SGD, optimizer_params={"lr": 0.1})
        batches = list(
            DataManager(train.get_subset(range(64 * n_batches)), 64, 0).get_batchgen(seed=0)
        )
        with CountHostReads() as mode:
            trainer._train_single_epoch(batches, 1)
        counts[n_batches] = mode.reads
    assert counts[4] == counts[16]  # reading happens once per epoch, not per batch


def test_predict_merges_batches_up_to_batch_size(torch_trainer, managers):
    trainer = torch_trainer()
    _, valid = managers()
    calls = []
    trainer.module.register_forward_hook(lambda module, args, out: calls.append(len(args[0])))
    small = list(valid.get_batchgen())  # batches of 128
    assert [len(batch["label"]) for batch in small] == [128, 128, 104]
    merged = trainer.predict(small, batch_size=200)
    assert calls == [256, 104]  # collected until at least 200 samples, the rest forwarded last
    calls.clear()
    plain = trainer.predict(small)
    assert len(calls) == len(small)
    np.testing.assert_allclose(merged[0], plain[0], rtol=1e-5, atol=1e-6)
    assert merged[2] == pytest.approx(plain[2])


def test_prepare_batch_keeps_labels_integer_and_the_batch_untouched():
    batch = {"data": np.zeros((2, 3), np.float32), "label": np.array([1, 2]), "name": ["a", "b"]}
    prepared = prepare_batch(batch, torch.device("cpu"), torch.device("cpu"))
    assert prepared["label"].dtype == torch.int64 and prepared["data"].dtype == torch.float32
    assert prepared["name"] == ["a", "b"]
    assert isinstance(batch["data"], np.ndarray) and isinstance(batch["label"], np.ndarray)


def test_lr_scheduler_cls_goes_through_the_callbacks_plugin(torch_trainer, managers):
    trainer = torch_trainer(
        lr_scheduler_cls="StepLR", lr_scheduler_params={"step_size": 1, "gamma": 0.5}
    )
    train, valid = managers()
    trainer.train(3, train, valid)
    assert trainer.optimizers["default"].param_groups[0]["lr"] == pytest.approx(0.01 * 0.5**3)
    # lr so small that val_CE cannot improve by ReduceLROnPlateau's threshold: a certain plateau
    plateau = torch_trainer(
        optimizer_cls=torch.optim.SGD,
        optimizer_params={"lr": 1e-6},
        lr_scheduler_cls=torch.optim.lr_scheduler.ReduceLROnPlateau,
        lr_scheduler_params={"monitor": "val_CE", "mode": "min", "patience": 0, "factor": 0.5},
    )
    plateau.train(3, train, valid)
    assert plateau.optimizers["default"].param_groups[0]["lr"] == pytest.approx(1e-6 * 0.25)


def test_bad_arguments(torch_trainer):
    with pytest.raises(TypeError, match=r"network must be a torch\.nn\.Module"):
        PyTorchNetworkTrainer(object(), None, {"CE": torch.nn.CrossEntropyLoss()}, torch.optim.SGD)
    with pytest.raises(ValueError, match="criterions is empty"):
        PyTorchNetworkTrainer(torch.nn.Linear(2, 2), None, {}, torch.optim.SGD, {"lr": 0.1})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        torch_trainer()  # a plain construction warns about nothing


def test_plain_fast_path_equals_the_general_loop(torch_trainer, managers):
    """The common case runs a lean loop; any hook sends it through the general one."""

    class BatchHook:
        @hookimpl
        def epochal_at_batch_end(self, batch_nr):
            pass

    train, _ = managers()
    batches = list(train.get_batchgen(seed=3))
    results = {}
    for path, callbacks in (("plain", []), ("general", [BatchHook()])):
        trainer = torch_trainer(
            optimizer_cls=torch.optim.SGD,
            optimizer_params={"lr": 0.1},
            metrics={},
            callbacks=callbacks,
        )
        means = [trainer._train_single_epoch(batches, epoch) for epoch in (1, 2)]
        results[path] = (means, {k: v.clone() for k, v in trainer.module.state_dict().items()})
    assert results["plain"][0] == results["general"][0]  # the same epoch means, exactly
    for key, value in results["plain"][1].items():
        assert torch.equal(value, results["general"][1][key])
