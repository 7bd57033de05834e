"""FROC and CPM of nodule candidates, scored as the LUNA16 challenge scores them.

A candidate closer to an annotated nodule's centre than its radius is a hit; several hits on one
nodule count once, at their highest probability; a candidate hitting an excluded finding
(``annotations_excluded.csv``; diameter -1 read as 10 mm, as the challenge does) is neither a hit
nor a false positive. FROC: nodule sensitivity against mean false positives per scan as the
threshold falls; CPM: the mean sensitivity at 1/8, 1/4, 1/2, 1, 2, 4 and 8 FPs per scan, read off
the curve by linear interpolation (``np.interp``, as the challenge's script does).

Tables (pandas): candidates ``seriesuid, coordX, coordY, coordZ, probability``; annotations and
excluded findings ``seriesuid, coordX, coordY, coordZ, diameter_mm``; coordinates world mm.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from core.intervals import N_BOOT
from core.resampling import resample_counts

FP_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
UNKNOWN_DIAMETER_MM = 10.0  # the challenge's size for an excluded finding marked -1
XYZ = ["coordX", "coordY", "coordZ"]


def _require(table: pd.DataFrame, columns: list[str], name: str) -> None:
    missing = [c for c in columns if c not in table]
    if missing:
        raise ValueError(f"{name} lacks column(s) {missing}; it has {list(table.columns)}, "
                         f"needs {columns}")


def _hits(cands: pd.DataFrame, nodules: pd.DataFrame) -> np.ndarray:
    """(C, A) bool: candidate c lies strictly inside nodule a's sphere."""
    if cands.empty or nodules.empty:
        return np.zeros((len(cands), len(nodules)), dtype=bool)
    diameter = nodules["diameter_mm"].to_numpy(dtype=float)
    radius = np.where(diameter < 0, UNKNOWN_DIAMETER_MM, diameter) / 2.0
    gap = cands[XYZ].to_numpy(float)[:, None, :] - nodules[XYZ].to_numpy(float)[None, :, :]
    return (gap ** 2).sum(-1) < radius[None, :] ** 2


def froc_rows(candidates: pd.DataFrame, annotations: pd.DataFrame,
              excluded: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per nodule (``lesion`` 1, its best hit's probability, -inf when missed) and per
    false-positive candidate (``lesion`` 0); candidates at excluded findings are dropped."""
    excluded = excluded if excluded is not None else annotations.iloc[:0]
    _require(candidates, ["seriesuid", *XYZ, "probability"], "candidates")
    for name, table in (("annotations", annotations), ("excluded findings", excluded)):
        _require(table, ["seriesuid", *XYZ, "diameter_mm"], name)
    rows = []
    for uid in pd.unique(pd.concat([candidates["seriesuid"], annotations["seriesuid"]])):
        cands = candidates[candidates["seriesuid"] == uid]
        probs = cands["probability"].to_numpy(float)
        on_nodule = _hits(cands, annotations[annotations["seriesuid"] == uid])
        on_excluded = _hits(cands, excluded[excluded["seriesuid"] == uid]).any(1)
        for column in on_nodule.T:
            rows.append((uid, 1, probs[column].max() if column.any() else -math.inf))
        for prob in probs[~on_nodule.any(1) & ~on_excluded]:
            rows.append((uid, 0, prob))
    return pd.DataFrame(rows, columns=["seriesuid", "lesion", "probability"])


def _curves(lesion: np.ndarray, prob: np.ndarray, weights: np.ndarray,
            n_scans: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fps (B, T+1), sens (B, T+1), thresholds (T,))`` for each row of weights (B, R)."""
    order = np.argsort(-prob, kind="mergesort")
    lesion, prob, weights = lesion[order], prob[order], weights[:, order]
    found = np.isfinite(prob)
    ends = np.r_[np.flatnonzero(prob[1:] != prob[:-1]), len(prob) - 1]
    ends = ends[found[ends]]  # a missed nodule is never detected, at any threshold
    tp = np.cumsum(weights * (lesion & found), axis=1)[:, ends]
    fp = np.cumsum(weights * ~lesion, axis=1)[:, ends]
    total = (weights * lesion).sum(1, keepdims=True)
    zero = np.zeros((len(weights), 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (np.hstack([zero, fp / n_scans]), np.hstack([zero, tp / total]), prob[ends])


def cpm_of(fps: np.ndarray, sens: np.ndarray) -> tuple[float, np.ndarray]:
    """``(CPM, sensitivity at FP_RATES)`` of one FROC curve (fps non-decreasing)."""
    at = np.interp(FP_RATES, fps, sens)
    return float(at.mean()), at


def froc(candidates: pd.DataFrame, annotations: pd.DataFrame,
         excluded: pd.DataFrame | None = None, *, series: list[str] | None = None,
         n_boot: int = N_BOOT, seed: int = 0) -> dict[str, Any]:
    """FROC curve, CPM and a 95 % percentile interval of CPM from a bootstrap over scans.

    series: every scan evaluated (a scan with no candidate still counts in FPs per scan);
    default: the scans named in candidates or annotations. Scans are resampled within strata
    (with / without a nodule), so every draw keeps the data's number of scans with nodules.
    """
    rows = froc_rows(candidates, annotations, excluded)
    uids = list(series) if series is not None else list(pd.unique(rows["seriesuid"]))
    missing = set(rows["seriesuid"]) - set(uids)
    if missing:
        raise ValueError(f"{len(missing)} scan(s) with candidates or nodules are not in series, "
                         f"e.g. {sorted(missing)[:3]}; pass every evaluated scan")
    scan = pd.Index(uids).get_indexer(rows["seriesuid"])
    lesion, prob = rows["lesion"].to_numpy(bool), rows["probability"].to_numpy(float)
    fps, sens, thresholds = _curves(lesion, prob, np.ones((1, len(rows))), len(uids))
    value, at = cpm_of(fps[0], sens[0])
    strata = np.zeros(len(uids), dtype=np.int64)
    np.maximum.at(strata, scan[lesion], 1)
    counts = np.zeros((n_boot, len(uids)))
    rng = np.random.default_rng(seed)
    for stratum in np.unique(strata):
        members = np.flatnonzero(strata == stratum)
        counts[:, members] = resample_counts(rng, len(members), n_boot)
    boot_fps, boot_sens, _ = _curves(lesion, prob, counts[:, scan], len(uids))
    draws = np.array([cpm_of(f, s)[0] for f, s in zip(boot_fps, boot_sens)])
    low, high = np.nanquantile(draws, [0.025, 0.975]) if lesion.any() else (math.nan, math.nan)
    n_pos = int(strata.sum())
    return {"cpm": {"value": value, "ci_low": float(low), "ci_high": float(high),
                    "method": "bootstrap percentile over scans, stratified", "unit": "series",
                    "n_groups": {"0": len(uids) - n_pos, "1": n_pos}, "n_boot": n_boot,
                    "few_positives": n_pos < 10},
            "sensitivity_at": dict(zip(FP_RATES, at.tolist())),
            "fps": fps[0].tolist(), "sensitivity": sens[0].tolist(),
            "thresholds": thresholds.tolist(), "n_scans": len(uids),
            "n_nodules": int(lesion.sum())}
