"""Predictions of a trained module on arrays, and test metrics with 95 % intervals over patients."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from core.intervals import N_BOOT
from core.metrics import binary_metrics_with_ci, confusion, mean_with_ci, pick_threshold, segmentation_scores
from core.module import TaskModule


@torch.no_grad()
def predict(module: TaskModule, x: np.ndarray, *, batch_size: int = 32) -> np.ndarray:
    """Probabilities for x (N, C, *spatial): (N,) for classification, (N, *spatial) for masks."""
    module.eval()
    device = next(module.parameters()).device
    out = []
    for start in range(0, len(x), batch_size):
        batch = torch.from_numpy(np.array(x[start:start + batch_size], dtype=np.float32))
        out.append(module.loss.probabilities(module(batch.to(device))).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0,), dtype=np.float32)


def evaluate_predictions(*, val_y: np.ndarray, val_p: np.ndarray, test_y: np.ndarray,
                         test_p: np.ndarray, segmentation: bool, threshold_rule: str = "youden",
                         n_boot: int = N_BOOT, seed: int = 0, groups: np.ndarray | None = None,
                         unit: str | None = None) -> dict[str, Any]:
    """Test metrics ``{name: interval}`` (``core.intervals``) with the threshold picked on val only.

    groups: (N_test,) the patient/series of each test row, in row order (the ``group`` column of
    the test rows of ``splits.csv``); the intervals resample these. None: each row is its own
    group. unit: what a group is ("patient", "series"); default "case" when every row is its
    own group, else "group".
    """
    if unit is None:
        single = groups is None or len(np.unique(np.asarray(groups).astype(str))) == len(groups)
        unit = "case" if single else "group"
    kw: dict[str, Any] = {"groups": groups, "unit": unit, "n_boot": n_boot, "seed": seed}
    if segmentation:
        scores = segmentation_scores(test_y, test_p)
        return {"threshold": 0.5, "test": {k: mean_with_ci(v, **kw) for k, v in scores.items()}}
    threshold = pick_threshold(val_y, val_p, rule=threshold_rule)
    return {"threshold": threshold,
            "test": binary_metrics_with_ci(test_y, test_p, threshold, **kw),
            "confusion": confusion(test_y, test_p, threshold)}
