"""Metric names (constants the spaces import) and the binary metrics computed from probabilities."""
from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import precision_recall_curve, roc_auc_score, roc_curve

from core.intervals import N_BOOT, binary_intervals, mean_interval

TRAIN_LOSS = "train/loss"
VAL_LOSS = "val/loss"
VAL_AUROC = "val/auroc"
VAL_DICE = "val/dice"
VAL_IOU = "val/iou"
# What searchers, schedulers and top-k rank a trial by: the best value of the selection metric
# over the epochs so far, reported every epoch beside the raw metric.
SCORE = "score"


def auroc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve; NaN when only one class is present."""
    if len(np.unique(y)) < 2:
        return float("nan")
    return float(roc_auc_score(y, p))


def binary_metrics(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """AUROC plus thresholded accuracy, F1, sensitivity, specificity, precision.

    y: (N,) 0/1 labels; p: (N,) positive-class probabilities.
    """
    counts = confusion(y, p, threshold)
    tp, fp, tn, fn = counts["tp"], counts["fp"], counts["tn"], counts["fn"]
    sens = tp / (tp + fn) if tp + fn else float("nan")
    spec = tn / (tn + fp) if tn + fp else float("nan")
    prec = tp / (tp + fp) if tp + fp else float("nan")
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")
    return {"auroc": auroc(y, p), "accuracy": (tp + tn) / max(tp + fp + tn + fn, 1), "f1": f1,
            "sensitivity": sens, "specificity": spec, "precision": prec}


def confusion(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, int]:
    """Counts of tp/fp/tn/fn at a threshold."""
    y = np.asarray(y).astype(int)
    pred = (np.asarray(p) >= threshold).astype(int)
    return {"tp": int(((pred == 1) & (y == 1)).sum()), "fp": int(((pred == 1) & (y == 0)).sum()),
            "tn": int(((pred == 0) & (y == 0)).sum()), "fn": int(((pred == 0) & (y == 1)).sum())}


def pick_threshold(y: np.ndarray, p: np.ndarray, *, rule: str = "youden") -> float:
    """Decision threshold chosen on validation data: Youden's J on the ROC, or best F1 on PR."""
    if len(np.unique(y)) < 2:
        return 0.5
    if rule == "youden":
        fpr, tpr, thr = roc_curve(y, p)
        best = int(np.argmax(tpr - fpr))
        return float(min(thr[best], 1.0))
    if rule == "f1":
        prec, rec, thr = precision_recall_curve(y, p)
        f1 = 2 * prec[:-1] * rec[:-1] / np.clip(prec[:-1] + rec[:-1], 1e-12, None)
        return float(thr[int(np.argmax(f1))])
    raise ValueError(f"Unknown threshold rule {rule!r}; use 'youden' or 'f1'")


def segmentation_scores(masks: np.ndarray, probs: np.ndarray, *,
                        threshold: float = 0.5) -> dict[str, np.ndarray]:
    """Per-image Dice and IoU of thresholded probabilities; masks/probs (N, H, W).

    An image with an empty mask and an empty prediction scores 1 (nothing to find, nothing found).
    """
    truth = np.asarray(masks).reshape(len(masks), -1) > 0
    pred = np.asarray(probs).reshape(len(probs), -1) >= threshold
    inter = (truth & pred).sum(1)
    total = truth.sum(1) + pred.sum(1)
    union = (truth | pred).sum(1)
    dice = np.where(total > 0, 2 * inter / np.maximum(total, 1), 1.0)
    iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    return {"dice": dice.astype(float), "iou": iou.astype(float)}


def mean_with_ci(values: np.ndarray, *, groups: np.ndarray | None = None, unit: str = "case",
                 n_boot: int = N_BOOT, seed: int = 0) -> dict[str, Any]:
    """Mean of per-case scores with a 95 % interval over groups (``core.intervals.mean_interval``)."""
    return mean_interval(values, groups=groups, unit=unit, n_boot=n_boot, seed=seed)


def binary_metrics_with_ci(y: np.ndarray, p: np.ndarray, threshold: float, *,
                           groups: np.ndarray | None = None, unit: str = "case",
                           n_boot: int = N_BOOT, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Each binary metric with its 95 % interval over groups (``core.intervals.binary_intervals``)."""
    return binary_intervals(y, p, threshold, groups=groups, unit=unit, n_boot=n_boot, seed=seed)
