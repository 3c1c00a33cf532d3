"""k-fold cross-validation of an :class:`~epochal.runs.experiment.Experiment`: train and test on
each fold, then the mean and standard deviation of every test metric (``kfold.json``)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from epochal.runs.files import atomic_write
from epochal.runs.folder import _jsonable

__all__ = ["KFoldResult", "cross_validate"]


@dataclass
class KFoldResult:
    """Per-fold test metrics, and their mean and standard deviation over the folds."""

    folds: list[dict[str, Any]] = field(default_factory=list)
    mean: dict[str, float] = field(default_factory=dict)
    std: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"folds": self.folds, "mean": self.mean, "std": self.std}


def cross_validate(
    experiment: Any,
    dataset: Any,
    metrics: Mapping[str, Any] | None,
    num_epochs: int | None,
    num_splits: int,
    shuffle: bool,
    seed: int | None,
    split_type: str,
    val_split: float | None,
    label_key: str,
    root: str,
) -> KFoldResult:
    """What :meth:`Experiment.kfold` does, its arguments checked: a run per fold under
    ``root/fold_<k>``, each tested on its held-out part."""
    if split_type == "stratified":
        folds = dataset.stratified_kfold(num_splits, shuffle, seed, label_key=label_key)
    else:
        folds = dataset.kfold(num_splits, shuffle, seed)
    result = KFoldResult()
    for fold, (train_part, test_part) in enumerate(folds):
        val_part = None
        if val_split:
            stratify = label_key if split_type == "stratified" else None
            train_part, val_part = train_part.train_test_split(
                test_size=val_split, random_state=seed, stratify=stratify
            )
        fold_dir = os.path.join(root, f"fold_{fold}")
        network = experiment.run(
            train_part, val_part, run_dir=fold_dir, num_epochs=num_epochs, fold=fold
        )
        assert experiment.last_run is not None
        _, _, scores = experiment.test(network, test_part, metrics)
        result.folds.append(
            {
                "fold": fold,
                "run_dir": fold_dir,
                "best_epoch": experiment.last_run.best_epoch,
                "best_val_score": experiment.last_run.best_val_score,
                "test": scores,
            }
        )
    keys = sorted({key for fold in result.folds for key in fold["test"]})
    for key in keys:
        values = [fold["test"][key] for fold in result.folds if key in fold["test"]]
        mean = sum(values) / len(values)
        result.mean[key] = mean
        result.std[key] = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    if experiment.last_run is not None and not experiment.last_run.trainer.is_main_process:
        return result  # in several processes, rank 0 writes
    with atomic_write(os.path.join(root, "kfold.json")) as handle:
        handle.write(json.dumps(result.as_dict(), indent=2, default=_jsonable).encode())
    return result
