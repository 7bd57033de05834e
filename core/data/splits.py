"""Patient-grouped, label-stratified, seeded train/val/test splits, saved for audit.

Hand-written because scikit-learn's ``StratifiedGroupKFold`` makes K equal folds, not
70/15/15 splits, and cannot promise each split a patient of every class.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from core.data.prepared import SPLITS
from core.errors import DataError

logger = logging.getLogger(__name__)


def _allocate(n_groups: int, fractions: tuple[float, ...]) -> list[int]:
    """Groups per split for one class: largest remainders, then at least one per non-empty split."""
    raw = np.asarray(fractions) * n_groups
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts), kind="stable")[: n_groups - counts.sum()]:
        counts[i] += 1
    for i, fraction in enumerate(fractions):
        if fraction > 0 and counts[i] == 0:
            donor = int(np.argmax(counts))
            if counts[donor] <= 1:
                return counts.tolist()  # too few groups; the caller reports it
            counts[donor] -= 1
            counts[i] += 1
    return counts.tolist()


def _check_fractions(fractions: tuple[float, ...]) -> tuple[float, float, float]:
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise DataError(f"Split fractions {tuple(fractions)} must be three non-negative numbers "
                        "(train, val, test) that sum to 1, e.g. (0.7, 0.15, 0.15).")
    train, val, test = (float(f) for f in fractions)
    return train, val, test


def _class_summary(manifest: pd.DataFrame, group_labels: pd.Series) -> str:
    parts = []
    for label in sorted(group_labels.unique()):
        n_cases = int((manifest["label"] == label).sum())
        parts.append(f"{n_cases} cases of class {label} ({int((group_labels == label).sum())} patients)")
    return ", ".join(parts)


def stratum_of_groups(manifest: pd.DataFrame) -> pd.Series:
    """Each group's stratum: its highest case label, or, when every group holds a positive case
    (a scan with a nodule among its candidates), whether it holds more positives than the median."""
    labels = sorted(manifest["label"].unique())
    if len(labels) < 2:
        missing = "positive (1)" if labels == [0] else "negative (0)"
        raise DataError(f"Only one class in the manifest ({len(manifest)} cases of class {labels[0]}); "
                        f"the {missing} class is missing. Check the labels (or --positive-value).")
    group_labels = manifest.groupby("group", sort=False)["label"].max()
    if group_labels.nunique() > 1:
        return group_labels
    positives = manifest.groupby("group", sort=False)["label"].sum()
    logger.info("Every group holds a positive case: stratifying groups by their number of positives")
    return (positives > positives.median()).astype(np.int64)


def split_manifest(manifest: pd.DataFrame, *, fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
                   seed: int = 42) -> pd.DataFrame:
    """Add a ``split`` column: no group in two splits, each stratum spread by ``fractions``.

    A group's stratum is its highest case label (when every group holds a positive: whether it
    holds more than the median number). The same seed gives the same split whatever the row
    order. Every split with a non-zero fraction gets at least one group of each stratum.
    """
    fractions = _check_fractions(fractions)
    group_labels = stratum_of_groups(manifest)
    rng = np.random.default_rng(seed)
    assignment: dict[object, str] = {}
    for label in sorted(group_labels.unique()):
        groups = sorted(group_labels.index[group_labels == label], key=str)
        groups = [groups[i] for i in rng.permutation(len(groups))]
        counts = _allocate(len(groups), fractions)
        for name, count, fraction in zip(SPLITS, counts, fractions):
            if fraction > 0 and count == 0:
                raise DataError(
                    f"Cannot give the {name} split a patient of class {label}: the dataset has "
                    f"{_class_summary(manifest, group_labels)}. Each class needs at least one patient per "
                    f"split ({sum(f > 0 for f in fractions)} splits); add data or change the split "
                    f"fractions {fractions}.")
        bounds = np.cumsum([0, *counts])
        for name, start, stop in zip(SPLITS, bounds[:-1], bounds[1:]):
            assignment.update((g, name) for g in groups[start:stop])
    out = manifest.copy()
    out["split"] = out["group"].map(assignment)
    counts = out.groupby(["split", "label"]).size().unstack(fill_value=0)
    logger.info("Split %d cases (seed %d): %s", len(out), seed, counts.to_dict(orient="index"))
    return out


def write_splits(df: pd.DataFrame, path: Path) -> Path:
    """Write ``splits.csv`` (id, group, label, split, then the rest); ``path`` is a file or a folder."""
    path = Path(path)
    if path.suffix.lower() != ".csv":
        path = path / "splits.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    first = ["id", "group", "label", "split"]
    df[first + [c for c in df.columns if c not in first]].to_csv(path, index=False)
    return path
