"""Data preparation by task name: the space names its task, core knows how to read it."""
from __future__ import annotations

import importlib

from core.config import DataConfig
from core.data.prepared import DataOptions, PreparedData
from core.errors import ConfigError

# task name -> "module:function" preparing it; imported lazily so one task's deps stay optional
PREPARERS = {
    "egfr": "core.data.egfr:prepare_egfr",
    "luna16": "core.data.luna16:prepare_luna16",
    "segmentation": "core.data.segmentation:prepare_segmentation",
    "xray": "core.data.xray:prepare_xray",
}

# task name -> (negative, positive) class names: what a saved model calls its two outputs
CLASS_NAMES = {
    "egfr": ("Wildtype", "Mutant"),
    "luna16": ("non-nodule", "nodule"),
    "segmentation": ("background", "foreground"),
    "xray": ("NORMAL", "PNEUMONIA"),
}


def class_names(task: str) -> tuple[str, str]:
    """``(negative, positive)`` names of ``task``'s classes, e.g. ("NORMAL", "PNEUMONIA")."""
    if task not in CLASS_NAMES:
        raise ConfigError(f"Unknown task {task!r}; known tasks: {sorted(CLASS_NAMES)}")
    return CLASS_NAMES[task]


def prepare(cfg: DataConfig, options: DataOptions, *, seed: int) -> PreparedData:
    """Read, split, preprocess (cached) and return the arrays of ``cfg.task``."""
    if cfg.task not in PREPARERS:
        raise ConfigError(f"Unknown task {cfg.task!r}; known tasks: {sorted(PREPARERS)}")
    module, _, name = PREPARERS[cfg.task].partition(":")
    return getattr(importlib.import_module(module), name)(cfg, options, seed=seed)
