"""The one data-preparation skeleton every task runs: root or phantom, manifest, split, selection,
fingerprint, cache, arrays per split, info."""
from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.config import DataConfig
from core.data.cache import Allocate, cached_build, hash_settings
from core.data.groups import regroup
from core.data.prepared import SPLITS, DataOptions, PreparedData
from core.tasks.task import Preprocess, Task

logger = logging.getLogger(__name__)

STORED_X = np.float16  # inputs in [0, 1] lose < 0.05 % (under 1 HU of a 1400 HU window); half of float32
Unit = tuple[np.ndarray, pd.DataFrame]  # (row positions in the selection, those rows)
Mapper = Callable[[Callable[[pd.DataFrame], Any], Iterable[pd.DataFrame]], Iterable[Any]]


def prepare(task: Task, cfg: DataConfig, options: DataOptions, *, seed: int,
            mapper: Mapper = map) -> PreparedData:
    """Read, split, select, preprocess (cached on disk) and return ``task``'s arrays per split.

    ``options.root`` None uses the task's phantom, generated under ``options.cache_dir`` once.
    ``mapper`` maps the per-unit preprocessing over the read units in order (``map`` here; a
    parallel map spreads it over processes or a cluster).
    """
    task.check_shape(cfg)
    root = Path(options.root) if options.root is not None else task.phantom(options.cache_dir,
                                                                            difficulty=options.phantom_difficulty)
    manifest = regroup(task.read_manifest(root, options), pattern=options.group_regex,
                       csv=options.groups_csv)
    split = task.split(manifest, cfg, seed)
    selected = task.select(split, cfg, seed).reset_index(drop=True)
    key = cache_key(task, root, selected, cfg, options, seed)
    arrays = cached_build(cache_dir=options.cache_dir, key=key,
                          fill=lambda allocate: build_arrays(task, selected, cfg, allocate, mapper=mapper))
    train_y = np.asarray(arrays["train/y"])
    info = {"task": task.name, "kind": task.kind, "group_unit": task.group_unit,
            "n_cases": len(selected), "n_groups": int(selected["group"].nunique()),
            "n_positive": int(selected["label"].sum()),
            "prevalence": {name: float(selected.loc[selected["split"] == name, "label"].mean())
                           for name in SPLITS if (selected["split"] == name).any()},
            "pos_fraction_train": float(train_y.mean()) if train_y.size else 0.0,
            "cache_key": key, "source": str(root) if options.root is not None else "phantom",
            "data_dir": str(root), **task.describe(manifest, selected)}
    audit = split.assign(in_pool=split["id"].isin(selected["id"]).to_numpy())
    return PreparedData(arrays=arrays, splits=selected, info=info, manifest=audit)


def cache_key(task: Task, root: Path, selected: pd.DataFrame, cfg: DataConfig,
              options: DataOptions, seed: int) -> str:
    """``<task>-<dataset content>-<settings>``: a new key whenever the files or settings change."""
    content = task.fingerprint(root, selected, options)
    settings = {**task.cache_settings(cfg, options, seed), "stored_x": np.dtype(STORED_X).name}
    if options.group_regex or options.groups_csv:  # the groups decide the split
        settings["groups"] = hash_settings(dict(zip(selected["id"], selected["group"])))
    return f"{task.name}-{content[:16]}-{hash_settings(settings)}"


def read_units(task: Task, selected: pd.DataFrame) -> list[Unit]:
    """The selection's rows grouped by ``task.read_unit`` (each read once), in first-seen order."""
    positions = selected.groupby(task.read_unit, sort=False).indices
    return [(rows, selected.iloc[rows]) for rows in positions.values()]


def _preprocess_unit(preprocess: Preprocess, cfg: DataConfig, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    x, y = preprocess(rows, cfg)
    if len(x) != len(rows) or len(y) != len(rows):
        raise ValueError(f"preprocess returned {len(x)} inputs and {len(y)} targets for {len(rows)} rows")
    return x, y


def build_arrays(task: Task, selected: pd.DataFrame, cfg: DataConfig, allocate: Allocate, *,
                 mapper: Mapper = map) -> None:
    """Preprocess every read unit once into ``<split>/x`` and ``<split>/y``, in the selection's order.

    Each unit's output goes straight into the arrays ``allocate`` makes (memory-mapped files),
    so only a few units are ever in memory. Inputs are stored as float16 (the loaders hand
    float32 to the model).
    """
    units = read_units(task, selected)
    split = selected["split"].to_numpy()
    within = selected.groupby("split", sort=False).cumcount().to_numpy()  # row index in its split
    counts = {name: int((split == name).sum()) for name in SPLITS}
    work = functools.partial(_preprocess_unit, task.preprocess, cfg)
    out: dict[str, np.ndarray] = {}
    done = progress(mapper(work, [rows for _, rows in units]), total=len(units),
                    desc=f"Preprocessing {task.name}")
    for (positions, _), (unit_x, unit_y) in zip(units, done):
        if not out:  # the first unit shows the output shapes and types
            for name, n in counts.items():
                out[f"{name}/x"] = allocate(f"{name}/x", (n, *unit_x.shape[1:]), STORED_X)
                out[f"{name}/y"] = allocate(f"{name}/y", (n, *unit_y.shape[1:]), unit_y.dtype)
        for i, position in enumerate(positions):
            name = split[position]
            out[f"{name}/x"][within[position]] = unit_x[i]
            out[f"{name}/y"][within[position]] = unit_y[i]


def progress(items: Iterable[Any], *, total: int, desc: str) -> Iterator[Any]:
    """``items`` with a tqdm bar (rate and ETA) on a terminal, else an INFO line every ~10 %."""
    if sys.stderr.isatty():
        from tqdm.auto import tqdm

        yield from tqdm(items, total=total, desc=desc, unit="scan")
        return
    step = max(1, total // 10)
    for i, item in enumerate(items, 1):
        yield item
        if i % step == 0 or i == total:
            logger.info("%s: %d/%d", desc, i, total)
