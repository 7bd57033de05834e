"""``Task``: everything the pipeline knows about one task, in one frozen object.

Callers ask the task (``task.kind``, ``task.spatial_dims``, ``task.class_names``) instead of
guessing from array shapes; ``core.tasks.prepare`` runs the one data-preparation skeleton over it.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from core.config import DataConfig
from core.data.prepared import DataOptions
from core.data.splits import split_manifest
from core.errors import DataError

Kind = Literal["classification", "segmentation"]
ManifestReader = Callable[[Path, DataOptions], pd.DataFrame]
Preprocess = Callable[[pd.DataFrame, DataConfig], "tuple[np.ndarray, np.ndarray]"]
InputLoader = Callable[[Any, DataConfig, dict], "tuple[np.ndarray, tuple[int, ...] | None]"]


def shape_2d(shape: Sequence[int]) -> tuple[int, int]:
    """``data/shape`` as the (H, W) a 2D task's loaders take."""
    if len(shape) != 2:
        raise DataError(f"A 2D task needs data/shape (H, W), got data/shape={tuple(shape)}.")
    return int(shape[0]), int(shape[1])


def shape_3d(shape: Sequence[int]) -> tuple[int, int, int]:
    """``data/shape`` as the (D, H, W) a 3D task's loaders take."""
    if len(shape) != 3:
        raise DataError(f"A 3D task needs data/shape (D, H, W), got data/shape={tuple(shape)}.")
    return int(shape[0]), int(shape[1]), int(shape[2])


def grouped_split(manifest: pd.DataFrame, cfg: DataConfig, seed: int) -> pd.DataFrame:
    """The default split: grouped by ``group``, stratified by label, ``cfg.split`` fractions."""
    return split_manifest(manifest, fractions=cfg.split, seed=seed)


def keep_all(splits: pd.DataFrame, cfg: DataConfig, seed: int) -> pd.DataFrame:
    """The default selection: every row of the split manifest is preprocessed."""
    return splits


def no_extra(manifest: pd.DataFrame, selected: pd.DataFrame) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class Task:
    """One task: what it predicts, how its data is read, split, preprocessed and cached, and
    how a saved model reads a new input.

    ``preprocess(rows, cfg)`` turns the manifest rows of one read unit (rows sharing
    ``read_unit``, e.g. the candidates of one scan) into ``x`` (n, C, *cfg.shape) float32 and
    ``y`` (n,) int64 labels or (n, *cfg.shape) uint8 masks. ``cache_settings(cfg, options, seed)``
    lists every setting that changes the arrays; ``fingerprint(root, selected, options)`` hashes
    the content of the files they are read from.
    """

    name: str
    kind: Kind
    spatial_dims: int
    class_names: tuple[str, str]  # (negative, positive): what a saved model calls its outputs
    group_unit: str  # what the manifest's ``group`` holds: "patient", "series" or "image"
    read_manifest: ManifestReader
    preprocess: Preprocess
    load_input: InputLoader
    phantom: Callable[..., Path]  # (cache folder, difficulty=) -> a generated dataset in the real layout
    cache_settings: Callable[[DataConfig, DataOptions, int], dict[str, Any]]
    fingerprint: Callable[[Path, pd.DataFrame, DataOptions], str]
    split: Callable[[pd.DataFrame, DataConfig, int], pd.DataFrame] = grouped_split
    select: Callable[[pd.DataFrame, DataConfig, int], pd.DataFrame] = keep_all
    describe: Callable[[pd.DataFrame, pd.DataFrame], dict[str, Any]] = no_extra  # (manifest, selected) -> extra info
    read_unit: str = "id"  # manifest column whose rows are read and preprocessed together
    # (test rows, their probabilities, data folder) -> metrics the task's own field reports
    test_metrics: Callable[[pd.DataFrame, np.ndarray, Path], dict[str, Any]] | None = None
    inputs: frozenset[str] = field(default_factory=frozenset)  # extra inputs: "mask", "point"

    @property
    def segmentation(self) -> bool:
        return self.kind == "segmentation"

    def check_shape(self, cfg: DataConfig) -> None:
        """Raise ``DataError`` when ``data/shape`` does not have ``spatial_dims`` entries."""
        if len(cfg.shape) != self.spatial_dims:
            axes = "(D, H, W)" if self.spatial_dims == 3 else "(H, W)"
            raise DataError(f"{self.name} needs a {self.spatial_dims}D data/shape {axes}, "
                            f"got data/shape={tuple(cfg.shape)}.")
