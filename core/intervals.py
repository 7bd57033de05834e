"""95 % intervals for test metrics that resample the unit of evidence (patient, series).

Rows that share a ``group`` (a patient's films, a series' candidates) are not independent, so
an interval must resample groups, not rows. Every bootstrap here draws groups with replacement
within class strata (a group is positive when it holds a positive row), so every draw keeps both
classes. AUROC gets a t interval on the logit scale from the bootstrap's variance; proportions
get Wilson intervals (with an effective n when groups hold several rows). None collapses to a
point at 0 or 1; coverage is measured by ``benchmarks/interval_coverage.py``.

Every interval is a dict: ``{"value", "ci_low", "ci_high", "method", "unit", "n_groups":
{"0": groups holding a negative row, "1": groups holding a positive row}, "n_boot",
"few_positives"}``.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.special import expit, logit
from scipy.stats import beta

from core.resampling import (
    Z95,
    GroupAUROC,
    combine,
    group_codes,
    group_strata,
    quantile,
    variance_parts,
    weighted_auroc,
)

N_BOOT = 2000
FEW_POSITIVES = 10  # fewer positive groups than this: the interval is flagged as fragile
SMALL_N = 10  # proportions over fewer (effective) cases use Clopper-Pearson, not Wilson



def plural(unit: str) -> str:
    """``patient`` -> ``patients``; ``series`` stays ``series``."""
    return unit if unit.endswith("s") else f"{unit}s"

def hanley_mcneil(auc: float, n_pos: float, n_neg: float) -> float:
    """Hanley & McNeil's (1982) variance of an AUROC from its value and the class sizes."""
    q1, q2 = auc / (2 - auc), 2 * auc ** 2 / (1 + auc)
    return (auc * (1 - auc) + (n_pos - 1) * (q1 - auc ** 2)
            + (n_neg - 1) * (q2 - auc ** 2)) / (n_pos * n_neg)


def logit_interval(auc: float, var: float, n_pos: float, n_neg: float, *,
                   q: float = Z95) -> tuple[float, float, bool]:
    """``(low, high, boundary)``: logit(auc) +/- q sqrt(var), ``var`` on the logit scale, mapped
    back into (0, 1).

    At 0 or 1, or with zero variance (perfect separation), the logit is infinite: then a Wilson
    score interval with the effective sample size c(1-c) / Hanley-McNeil variance at c, the
    AUROC moved half a pair inwards (after Newcombe 2006; the larger of the variances at c and
    1 - c, as Hanley-McNeil's is not symmetric), keeps a width.
    """
    if 0.0 < auc < 1.0 and var > 0:
        mid, half = float(logit(auc)), q * math.sqrt(var)
        return float(expit(mid - half)), float(expit(mid + half)), False
    pairs = n_pos * n_neg
    centre = (auc * pairs + 0.5) / (pairs + 1)
    n_eff = centre * (1 - centre) / max(hanley_mcneil(centre, n_pos, n_neg),
                                        hanley_mcneil(1 - centre, n_pos, n_neg))
    low, high = wilson(auc * n_eff, n_eff)
    return min(low, auc), max(high, auc), True


def wilson(k: float, n: float, *, q: float = Z95) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials (n may be an effective, non-integer n)."""
    if n <= 0:
        return math.nan, math.nan
    phat, z2 = k / n, q ** 2
    centre = (phat + z2 / (2 * n)) / (1 + z2 / n)
    half = q * math.sqrt(phat * (1 - phat) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def clopper_pearson(k: float, n: float) -> tuple[float, float]:
    """Clopper-Pearson ("exact") interval for k successes in n trials (n may be non-integer)."""
    low = float(beta.ppf(0.025, k, n - k + 1)) if k > 0 else 0.0
    high = float(beta.ppf(0.975, k + 1, n - k)) if k < n else 1.0
    return low, high


def proportion_bounds(k: float, n: float, *, q: float = Z95) -> tuple[tuple[float, float], str]:
    """Wilson, or Clopper-Pearson below SMALL_N trials, where Wilson's coverage dips (measured:
    87 % with one positive case)."""
    if n < SMALL_N:
        return clopper_pearson(k, n), "Clopper-Pearson"
    return wilson(k, n, q=q), "Wilson"


def class_groups(y: np.ndarray, codes: np.ndarray, n_groups: int) -> dict[str, int]:
    """``{"0": groups holding a negative row, "1": groups holding a positive row}`` (a series
    with nodules and other candidates counts in both)."""
    y = np.asarray(y, dtype=np.int64)
    return {"0": int(np.unique(codes[y == 0]).size), "1": int(np.unique(codes[y == 1]).size)}


def describe(value: float, low: float, high: float, *, method: str, unit: str,
             n_groups: dict[str, int], n_boot: int) -> dict[str, Any]:
    """The interval dict every metric shares; ``few_positives`` below FEW_POSITIVES positive groups."""
    return {"value": float(value), "ci_low": float(low), "ci_high": float(high),
            "method": method, "unit": unit, "n_groups": dict(n_groups), "n_boot": int(n_boot),
            "few_positives": n_groups.get("1", FEW_POSITIVES) < FEW_POSITIVES}


def auroc_interval(y: np.ndarray, p: np.ndarray, *, groups: np.ndarray | None = None,
                   unit: str = "case", n_boot: int = N_BOOT, seed: int = 0) -> dict[str, Any]:
    """AUROC of (N,) labels and scores with a 95 % interval over groups.

    The variance of logit(AUROC) over a class-stratified (cluster) bootstrap (``variance_parts``;
    each draw's AUROC moved half a pair inwards so a perfect draw stays finite), then a t
    interval on the logit scale with Welch-Satterthwaite df; at 0 or 1 a Wilson interval with a
    Hanley-McNeil n of groups. Undefined (NaN bounds) with fewer than 2 groups in a class.
    (Measured: DeLong's delta-method variance under-covered near AUROC 0.95 with few positives.)
    """
    y, p = np.asarray(y).astype(np.int64), np.asarray(p, dtype=np.float64)
    codes, n_groups = group_codes(groups, len(y))
    strata, classes = group_strata(y, codes, n_groups), class_groups(y, codes, n_groups)
    n_pos, n_neg = classes["1"], classes["0"]
    if y.min(initial=1) == 1 or y.max(initial=0) == 0:
        return describe(math.nan, math.nan, math.nan, method="undefined: one class only",
                        unit=unit, n_groups=classes, n_boot=0)
    auc = float(weighted_auroc(y, p, np.ones((1, len(y))))[0])
    if n_pos < 2 or n_neg < 2:
        return describe(auc, math.nan, math.nan, unit=unit, n_groups=classes, n_boot=0,
                        method=f"undefined: fewer than 2 {plural(unit)} in a class")
    pairs, draw_auroc = float(y.sum() * (len(y) - y.sum())), GroupAUROC(y, p, codes, n_groups)
    var, df = combine(variance_parts(
        lambda c: logit((draw_auroc(c) * pairs + 0.5) / (pairs + 1)),
        strata, n_boot=n_boot, seed=seed))
    low, high, edge = logit_interval(auc, var, n_pos, n_neg, q=quantile(df))
    method = ("cluster bootstrap, stratified" if n_groups < len(y) else "bootstrap, stratified")
    method += ", t on the logit scale"
    if edge:
        method += f"; at {auc:g}: Wilson with Hanley-McNeil n of {plural(unit)}"
    return describe(auc, low, high, method=method, unit=unit, n_groups=classes, n_boot=n_boot)


def ratio_interval(num: np.ndarray, den: np.ndarray, *, y: np.ndarray,
                   groups: np.ndarray | None = None, unit: str = "case", binomial: bool = True,
                   n_boot: int = N_BOOT, seed: int = 0) -> dict[str, Any]:
    """A proportion sum(num) / sum(den) over rows (e.g. tp / (tp + fn)) with a 95 % interval.

    One row per group and 0/1 counts (``binomial``): Wilson (Clopper-Pearson below 10 cases).
    Otherwise the same with the effective sample size p(1-p) / variance of a class-stratified
    cluster bootstrap and a t quantile, that n kept between the groups in the denominator and
    its rows (at 0 or 1: the groups).
    """
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    codes, n_groups = group_codes(groups, len(num))
    strata, classes = group_strata(y, codes, n_groups), class_groups(y, codes, n_groups)
    total = den.sum()
    if total <= 0:
        return describe(math.nan, math.nan, math.nan, method="undefined: empty denominator",
                        unit=unit, n_groups=classes, n_boot=0)
    value = float(num.sum() / total)
    if n_groups == len(num) and binomial:
        (low, high), method = proportion_bounds(num.sum(), total)
        return describe(value, low, high, method=method, unit=unit, n_groups=classes, n_boot=0)
    num_g, den_g = np.bincount(codes, num, n_groups), np.bincount(codes, den, n_groups)
    var, df = combine(variance_parts(lambda c: (c @ num_g) / (c @ den_g), strata,
                                     n_boot=n_boot, seed=seed))
    used = float((den_g > 0).sum())
    inside = var > 0 and 0.0 < value < 1.0
    n_eff = min(max(value * (1 - value) / var if inside else used, used), total)
    (low, high), method = proportion_bounds(value * n_eff, n_eff, q=quantile(df) if inside else Z95)
    return describe(value, low, high, unit=unit, n_groups=classes, n_boot=n_boot,
                    method=f"{method}, effective n from a cluster bootstrap, stratified")


def mean_interval(values: np.ndarray, *, groups: np.ndarray | None = None, unit: str = "case",
                  n_boot: int = N_BOOT, seed: int = 0) -> dict[str, Any]:
    """Mean of (N,) per-row scores (e.g. per-image Dice) with a 95 % interval over groups:
    cluster-bootstrap variance times G / (G - 1), a t quantile with G - 1 df, clipped to the
    range of the scores."""
    values = np.asarray(values, dtype=np.float64)
    codes, n_groups = group_codes(groups, len(values))
    strata = np.zeros(n_groups, dtype=np.int64)
    value = float(values.mean()) if len(values) else math.nan
    if n_groups < 2:
        out = describe(value, math.nan, math.nan, method=f"undefined: fewer than 2 {plural(unit)}",
                       unit=unit, n_groups={"all": int(n_groups)}, n_boot=0)
    else:
        sums, sizes = np.bincount(codes, values, n_groups), np.bincount(codes, None, n_groups)
        var, df = combine(variance_parts(lambda c: (c @ sums) / (c @ sizes), strata,
                                         n_boot=n_boot, seed=seed))
        half = quantile(df) * math.sqrt(var)
        out = describe(value, max(value - half, values.min()), min(value + half, values.max()),
                       method="cluster bootstrap, t", unit=unit, n_groups={"all": int(n_groups)},
                       n_boot=n_boot)
    return out


def binary_intervals(y: np.ndarray, p: np.ndarray, threshold: float, *,
                     groups: np.ndarray | None = None, unit: str = "case",
                     n_boot: int = N_BOOT, seed: int = 0) -> dict[str, dict[str, Any]]:
    """AUROC and the thresholded metrics of (N,) labels and probabilities, each with its interval."""
    y = np.asarray(y).astype(np.int64)
    pred = (np.asarray(p) >= threshold).astype(np.int64)
    tp, fp = pred * y, pred * (1 - y)
    tn, fn = (1 - pred) * (1 - y), (1 - pred) * y
    kw: dict[str, Any] = {"y": y, "groups": groups, "unit": unit, "n_boot": n_boot, "seed": seed}
    return {"auroc": auroc_interval(y, p, groups=groups, unit=unit, n_boot=n_boot, seed=seed),
            "accuracy": ratio_interval(tp + tn, np.ones_like(y), **kw),
            "f1": ratio_interval(tp, tp + 0.5 * (fp + fn), binomial=False, **kw),
            "sensitivity": ratio_interval(tp, tp + fn, **kw),
            "specificity": ratio_interval(tn, tn + fp, **kw),
            "precision": ratio_interval(tp, tp + fp, **kw)}
