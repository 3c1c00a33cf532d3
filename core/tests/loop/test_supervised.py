"""SupervisedTrainer's shared part (epochal.loop.supervised), on a real numpy backend written
here from the training primitives alone: delira's constructor and its generated signature, the
setup checks, mixed-precision arguments, the LR-scheduler hook-up, the per-step extension point
and predict's sample-weighted means."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from epochal.loop.backend import TrainingPrimitives
from epochal.loop.callbacks import AbstractCallback
from epochal.loop.supervised import MixedPrecisionArgs, SupervisedTrainer
from epochal_numpy.network import SoftmaxRegression, softmax_cross_entropy


class SGD:
    """Plain gradient descent on a softmax regression's weights."""

    def __init__(self, network: SoftmaxRegression, lr: float = 0.5) -> None:
        self.network, self.lr = network, lr

    def step(self, grad_weight: np.ndarray, grad_bias: np.ndarray) -> None:
        self.network.weight -= self.lr * grad_weight
        self.network.bias -= self.lr * grad_bias


def sgd_optims(network: SoftmaxRegression, optimizer_cls: Any, **params: Any) -> dict[str, Any]:
    return {"default": optimizer_cls(network, **params)}


def ce(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(softmax_cross_entropy(logits, labels)[0].mean())


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(axis=1) == labels).mean())


def default_closure(model, data_dict, optimizers, losses, metrics, fold=0, **kwargs):
    """One step of cross-entropy gradient descent (whatever ``losses`` names, CE's gradient)."""
    data, labels = data_dict["data"].reshape(len(data_dict["data"]), -1), data_dict["label"]
    logits = model(data)
    _, probs = softmax_cross_entropy(logits, labels)
    grad = probs
    grad[np.arange(len(labels)), labels] -= 1.0
    grad /= len(labels)
    optimizers["default"].step(data.T @ grad, grad.sum(axis=0))
    loss_vals = {name: fn(logits, labels) for name, fn in losses.items()}
    return {name: fn(logits, labels) for name, fn in metrics.items()}, loss_vals, logits


class DeliraNet(SoftmaxRegression):
    """delira's base class for this backend: a network with its own ``closure``."""

    closure = staticmethod(default_closure)
    prepare_batch = staticmethod(lambda batch, input_device, output_device: dict(batch))


@dataclass(frozen=True)
class NumpyOptions:
    """The backend's own parameter."""

    momentum: float = 0.0


class NumpySupervised(SupervisedTrainer):
    """A supervised numpy backend: nothing but the primitives."""

    losses_parameter = "criterions"
    options_type = NumpyOptions
    default_optim_fn = staticmethod(sgd_optims)
    network_base = DeliraNet
    default_closure = staticmethod(default_closure)
    mixed_precision_options = {"loss_scale": 1.0}
    losses_example = "{'CE': ce}"

    def check_arguments(self, network: Any) -> None:
        if not isinstance(network, SoftmaxRegression):
            raise TypeError(f"network must be a SoftmaxRegression, got {type(network).__name__}")

    def place_network(self, network: SoftmaxRegression, gpu_ids: list[int]) -> SoftmaxRegression:
        if gpu_ids:
            raise ValueError("numpy runs on the CPU: gpu_ids=[]")
        self.input_device = self.output_device = "cpu"
        return network

    def train_epoch(self, batches, epoch):
        sums: dict[str, float] = {}
        seen = 0
        for batch in batches:
            losses, metrics = self.train_step(dict(batch))
            for name, value in {**losses, **metrics}.items():
                sums[name] = sums.get(name, 0.0) + value * len(batch["label"])
            seen += len(batch["label"])
        if not seen:
            raise ValueError(f"epoch {epoch} received no batches")
        return {name: total / seen for name, total in sums.items()}

    def eval_step(self, batch):
        logits = self.module(batch["data"])
        if "label" not in batch:
            return logits, None
        label = batch["label"]
        values = {name: fn(logits, label) for name, fn in {**self.losses, **self.metrics}.items()}
        return logits, values

    @staticmethod
    def scheduler_callback(scheduler_cls: Any, params: dict[str, Any]) -> object:
        return scheduler_cls(**params)

    def network_state(self) -> dict[str, Any]:  # (a checkpoint primitive: the best weights)
        return self.module.state_dict()

    def load_network_state(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state)


def trainer(*args: Any, network: SoftmaxRegression | None = None, **kwargs: Any):
    kwargs.setdefault("metrics", {"accuracy": accuracy})
    net = network if network is not None else SoftmaxRegression(64, 10, seed=0)
    return NumpySupervised(net, None, {"CE": ce}, SGD, {"lr": 0.5}, *args, **kwargs)


def test_the_constructor_has_delira_signature_with_the_backends_names():
    parameters = inspect.signature(NumpySupervised).parameters
    names = list(parameters)
    assert names[:4] == ["network", "save_path", "criterions", "optimizer_cls"]
    assert names[-3:] == ["on_nonfinite", "momentum", "kwargs"]
    assert parameters["optim_fn"].default is sgd_optims
    assert parameters["momentum"].default == 0.0
    # positional calls bind as in delira, through the backend's own parameters
    args = ({"accuracy": accuracy}, None, None, [], 2, None, 3, None, 4, False, None, "raise", 0.9)
    positional = NumpySupervised(SoftmaxRegression(64, 10), None, {"CE": ce}, SGD, None, *args)
    assert (positional.save_freq, positional.fold, positional.start_epoch) == (2, 3, 4)
    assert positional.options == NumpyOptions(momentum=0.9)
    assert positional.losses == {"CE": ce}  # the core's name for the losses argument
    assert isinstance(positional, TrainingPrimitives)
    with pytest.raises(TypeError, match="multiple values for argument 'criterions'"):
        NumpySupervised(SoftmaxRegression(64, 10), None, {"CE": ce}, SGD, criterions={})


def test_it_trains_predicts_and_weights_means_by_batch_size(managers):
    train, valid = managers()
    model = trainer()
    network = model.train(3, train, valid, val_score_key="accuracy")
    assert network is model.module and model.best_epoch is not None
    predictions, labels, means = model.predict(valid.get_batchgen(), batch_size=None)
    assert predictions.shape == (len(labels[0]), 10)
    assert means["accuracy"] == pytest.approx(accuracy(predictions, labels[0]))
    assert means["accuracy"] > 0.85  # it learned
    # batches of 100 and 7 samples: the means weight each by its size
    data, label = np.concatenate([b["data"] for b in valid.get_batchgen()]), labels[0]
    uneven = [{"data": data[a:b], "label": label[a:b]} for a, b in ((0, 100), (100, 107))]
    _, _, weighted = model.predict(uneven)
    expected = accuracy(model.module(data[:107]), label[:107])
    assert weighted["accuracy"] == pytest.approx(expected)
    # merged up to batch_size; batches without labels give predictions only
    merged, no_labels, none = model.predict([{"data": data[:10]}] * 3, batch_size=30)
    assert merged.shape == (30, 10) and no_labels == [] and none == {}
    with pytest.raises(ValueError, match="predict received no batches"):
        model.predict([])


def test_the_shared_setup_checks():
    with pytest.raises(TypeError, match="optim_fn must return a dict"):
        trainer(optim_fn=lambda network, cls, **params: [cls(network)])
    with pytest.raises(ValueError, match=r"optimizers\['default'\], but optim_fn returned \['a'\]"):
        trainer(optim_fn=lambda network, cls, **params: {"a": cls(network)})
    with pytest.raises(ValueError, match=r"criterions is empty: e.g. criterions=\{'CE': ce\}"):
        NumpySupervised(SoftmaxRegression(64, 10), None, {}, SGD)
    with pytest.raises(TypeError, match=r"NumpySupervised got unexpected arguments \['foo'\]"):
        trainer(foo=1)
    with pytest.raises(TypeError, match="network must be a SoftmaxRegression"):
        NumpySupervised(object(), None, {"CE": ce}, SGD)
    with pytest.raises(ValueError, match="on_nonfinite must be"):
        trainer(on_nonfinite="ignore")
    with pytest.raises(ValueError, match="numpy runs on the CPU"):
        trainer(gpu_ids=[0])


def test_a_network_closure_is_found_and_gets_the_extra_arguments(managers):
    seen: dict[str, Any] = {}

    class OwnStep(DeliraNet):
        @staticmethod
        def closure(model, data_dict, optimizers, losses, metrics, fold=0, **kwargs):
            seen.update(kwargs)
            return default_closure(model, data_dict, optimizers, losses, metrics, fold)

    model = trainer(network=OwnStep(64, 10), weight=2.0)  # extra kwargs go to the closure
    assert model.closure is OwnStep.closure and not model.uses_default_step
    model.train(1, managers()[0])
    assert seen == {"weight": 2.0}
    plain = trainer(network=DeliraNet(64, 10))  # the base class's closure is the default
    assert plain.uses_default_step and plain.network_prepare_batch is None
    with pytest.raises(ValueError, match=r"OwnStep has its own closure.*skip the step yourself"):
        trainer(network=OwnStep(64, 10), on_nonfinite="skip_batch")


def test_train_step_is_the_extension_point(managers):
    class Halved(NumpySupervised):
        """Reports one more loss, and counts its steps."""

        steps = 0

        def train_step(self, data_dict):
            Halved.steps += 1
            losses, metrics = super().train_step(data_dict)
            return {**losses, "half_CE": losses["CE"] / 2}, metrics

    assert list(inspect.signature(Halved).parameters)[2] == "criterions"  # inherited
    model = Halved(SoftmaxRegression(64, 10), None, {"CE": ce}, SGD, {"lr": 0.5})
    assert not model.uses_default_step
    means = model.train_epoch(managers()[0].get_batchgen(seed=1), 1)
    assert Halved.steps == len(list(managers()[0].get_batchgen(seed=1)))
    assert means["half_CE"] == pytest.approx(means["CE"] / 2)
    with pytest.raises(ValueError, match="Halved overrides train_step"):
        Halved(SoftmaxRegression(64, 10), None, {"CE": ce}, SGD, on_nonfinite="skip_batch")


def test_mixed_precision_arguments_are_parsed_once():
    with pytest.warns(UserWarning, match=r"\['verbose'\] are apex options"):
        model = trainer(mixed_precision=True, mixed_precision_kwargs={"verbose": 0})
    assert model.precision == MixedPrecisionArgs(True, None, {"loss_scale": 1.0})
    with pytest.raises(ValueError, match=r"unknown mixed_precision_kwargs \['scale'\]"):
        trainer(mixed_precision=True, mixed_precision_kwargs={"scale": 2})
    with pytest.raises(ValueError, match="dtype 'float8' is not supported"):
        trainer(mixed_precision=True, mixed_precision_kwargs={"dtype": "float8"})
    args = MixedPrecisionArgs.parse(
        True, {"dtype": "torch.float16", "loss_scale": "8"}, {"loss_scale": 1.0}
    )
    assert (args.dtype, args.options["loss_scale"]) == ("float16", 8.0)
    assert not MixedPrecisionArgs.parse(True, {"enabled": False, "dtype": "half"}, {}).enabled


def test_the_lr_scheduler_is_hooked_up_as_a_callback():
    class Halving(AbstractCallback):
        def __init__(self, every: int) -> None:
            self.every = every

    model = trainer(lr_scheduler_cls=Halving, lr_scheduler_params={"every": 2})
    (callback,) = [c for c in model.callbacks if isinstance(c, Halving)]
    assert callback.every == 2
