"""Entry point of `epochal-tf`: the backend ``"tf"`` and its Keras LR schedule callbacks,
registered by name without importing TensorFlow."""

from __future__ import annotations

from typing import Any

from epochal import hookimpl
from epochal.plugins.hookspecs import Register

#: name -> "module:attr" of the callbacks this backend brings (configs' ``[callbacks]`` names).
CALLBACKS = {
    "tf_step_decay": "epochal_tf.schedulers:StepDecay",
    "tf_cosine_decay": "epochal_tf.schedulers:CosineDecay",
    "tf_warmup": "epochal_tf.schedulers:WarmUp",
    "tf_reduce_on_plateau": "epochal_tf.schedulers:ReduceOnPlateau",
}


@hookimpl
def epochal_register_trainers(register: Register) -> None:
    register("tf", "epochal_tf.trainer:TfNetworkTrainer")


@hookimpl
def epochal_register_callbacks(register: Register) -> None:
    for name, target in CALLBACKS.items():
        register(name, target)


@hookimpl
def epochal_register_default_job(job: dict[str, Any]) -> None:
    job.setdefault("experiment", {}).setdefault("backend", "tf")
