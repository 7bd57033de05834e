"""Grouped, stratified K-fold cross-validation over train + val, for data too small for one val.

The test split stays out: only train and val rows are pooled and folded. ``train/fold`` tells
``core.train.train`` to fit one model per fold in lockstep and report their mean each epoch.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from core.data.prepared import PreparedData
from core.data.splits import stratum_of_groups
from core.errors import DataError

logger = logging.getLogger(__name__)


def assign_folds(rows: pd.DataFrame, *, k: int, seed: int) -> np.ndarray:
    """(N,) fold index per row: groups dealt round-robin to ``k`` folds within each stratum.

    A group's cases share a fold; every fold gets at least one group of each class.
    """
    if k < 2:
        raise DataError(f"--folds {k}: cross-validation needs at least 2 folds.")
    strata = stratum_of_groups(rows)
    rng = np.random.default_rng(seed)
    fold_of: dict[object, int] = {}
    for stratum in sorted(strata.unique()):
        groups = sorted(strata.index[strata == stratum], key=str)
        if len(groups) < k:
            raise DataError(f"--folds {k} needs at least {k} patients of each class in train + val; "
                            f"class {stratum} has {len(groups)}. Use fewer folds.")
        start = rng.integers(k)  # spread the remainders over the folds
        fold_of.update((groups[j], int((start + i) % k)) for i, j in enumerate(rng.permutation(len(groups))))
    folds = rows["group"].map(fold_of).to_numpy(np.int64)
    for fold in range(k):
        if rows["label"].to_numpy()[folds == fold].max() < 1:
            raise DataError(f"Fold {fold} of {k} has no positive case; use fewer folds.")
    return folds


def cross_validation_arrays(data: PreparedData, *, k: int, seed: int) -> dict[str, np.ndarray]:
    """train + val pooled as ``train/x``, ``train/y`` with ``train/fold`` (N,) in 0..k-1."""
    rows = data.splits[data.splits["split"].isin(["train", "val"])]
    ordered = pd.concat([rows[rows["split"] == "train"], rows[rows["split"] == "val"]])
    folds = assign_folds(ordered, k=k, seed=seed)
    sizes = np.bincount(folds, minlength=k).tolist()
    logger.info("%d-fold cross-validation over %d train + val cases (fold sizes %s)", k, len(ordered), sizes)
    return {"train/x": np.concatenate([data.arrays["train/x"], data.arrays["val/x"]]),
            "train/y": np.concatenate([data.arrays["train/y"], data.arrays["val/y"]]),
            "train/fold": folds}
