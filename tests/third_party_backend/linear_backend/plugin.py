"""The entry point epochal loads (``[project.entry-points.epochal] linear = ...plugin``)."""

from epochal import hookimpl


@hookimpl
def epochal_register_trainers(register):
    register("linear", "linear_backend.trainer:LinearTrainer")
