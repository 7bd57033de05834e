"""Types shared by every task's data preparation: reader options in, cached arrays out."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

SPLITS = ("train", "val", "test")


def default_cache_dir() -> Path:
    """``$MEDTUNE_CACHE_DIR``, else ``$XDG_CACHE_HOME/medtune``, else ``~/.cache/medtune``."""
    if os.environ.get("MEDTUNE_CACHE_DIR"):
        return Path(os.environ["MEDTUNE_CACHE_DIR"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "medtune"
    return Path.home() / ".cache" / "medtune"


@dataclass
class DataOptions:
    """Where the data is and how to read its labels (CLI options); root None means the phantom."""

    root: Path | None = None
    labels_csv: Path | None = None
    id_column: str = "Case ID"
    label_column: str = "EGFR mutation status"
    positive_value: str = "Mutant"
    negative_value: str = "Wildtype"
    group_regex: str | None = None  # the first capture group of a file stem is the patient id
    groups_csv: Path | None = None  # a CSV of name (file stem or case id) -> group (patient id)
    cache_dir: Path = field(default_factory=default_cache_dir)
    phantom_difficulty: str = "hard"  # without root: the phantom's difficulty (easy or hard)


@dataclass
class PreparedData:
    """Preprocessed arrays per split plus the manifest with its split column.

    ``arrays["<split>/x"]``: (N, C, *spatial) float16 in [0, 1] (C=1 for CT; the loaders convert
    each batch to float32), ``arrays["<split>/y"]``: (N,) int64 labels or (N, *spatial) uint8
    masks; row i of a split's arrays is row i of ``splits[splits.split == <split>]``. ``manifest``
    lists every row read, also those left out of the arrays (luna16's unpooled train negatives). Arrays from
    the cache are read-only memory maps: copy a batch before handing it to ``torch.from_numpy``.
    """

    arrays: dict[str, np.ndarray]
    splits: pd.DataFrame
    info: dict[str, Any] = field(default_factory=dict)
    manifest: pd.DataFrame | None = None  # every row with its split and ``in_pool`` (in the arrays)

    def without_test(self) -> PreparedData:
        """The same data minus the ``test/*`` arrays, for the sweep (which never sees test)."""
        arrays = {k: v for k, v in self.arrays.items() if not k.startswith("test/")}
        return replace(self, arrays=arrays, info=dict(self.info))
