"""Entry point of `epochal-tf`: registers the backend ``"tf"`` without importing TensorFlow."""

from __future__ import annotations

from epochal import hookimpl
from epochal.plugins.hookspecs import Register


@hookimpl
def epochal_register_trainers(register: Register) -> None:
    register("tf", "epochal_tf.trainer:TfNetworkTrainer")
