"""Group (cluster) resampling, stratified by class: the machinery behind ``core.intervals``.

Rows sharing a group (a patient's films, a series' candidates) move together; a draw is a
vector of how often each group is taken (B, G). Strata are groups with / without a positive
row, resampled one at a time so every draw keeps both classes.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
from scipy.stats import norm
from scipy.stats import t as student_t

Z95 = float(norm.ppf(0.975))


def group_codes(groups: np.ndarray | None, n: int) -> tuple[np.ndarray, int]:
    """``(codes (n,) int, n_groups)``: each row's group as 0..G-1; no groups: one group per row."""
    if groups is None:
        return np.arange(n), n
    groups = np.asarray(groups)
    if len(groups) != n:
        raise ValueError(f"groups has {len(groups)} entries but there are {n} test rows; "
                         "pass one group id per row, in row order")
    _, codes = np.unique(groups.astype(str), return_inverse=True)
    return codes.astype(np.int64), int(codes.max()) + 1 if n else 0


def group_strata(y: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """(G,) 0/1: 1 for a group holding at least one positive row."""
    strata = np.zeros(n_groups, dtype=np.int64)
    np.maximum.at(strata, codes, np.asarray(y, dtype=np.int64))
    return strata


def resample_counts(rng: np.random.Generator, size: int, n_boot: int) -> np.ndarray:
    """(n_boot, size) times each of ``size`` groups is drawn, with replacement, ``size`` draws."""
    picks = rng.integers(0, size, (n_boot, size)) + size * np.arange(n_boot)[:, None]
    return np.bincount(picks.ravel(), minlength=n_boot * size).reshape(n_boot, size).astype(float)


def variance_parts(statistic: Callable[[np.ndarray], np.ndarray], strata: np.ndarray, *,
                   n_boot: int, seed: int) -> list[tuple[float, int]]:
    """Per class stratum: ``(variance, G)`` of ``statistic(counts (B, G_all))`` over ``n_boot``
    draws that resample that stratum's G groups with replacement and hold the others fixed.

    Resampling one stratum at a time keeps both classes in every draw and lets each stratum's
    variance get its own small-sample correction (``combine``).
    """
    rng = np.random.default_rng(seed)
    parts = []
    for stratum in np.unique(strata):
        members = np.flatnonzero(strata == stratum)
        counts = np.ones((n_boot, len(strata)))
        counts[:, members] = resample_counts(rng, len(members), n_boot)
        with np.errstate(invalid="ignore", divide="ignore"):
            draws = statistic(counts)
        parts.append((float(np.nanvar(draws, ddof=1)), len(members)))
    return parts


def combine(parts: list[tuple[float, int]]) -> tuple[float, float]:
    """``(variance, df)``: the strata's bootstrap variances times G / (G - 1) (the bootstrap's
    shrinkage with G groups), summed; Welch-Satterthwaite degrees of freedom for a t quantile."""
    terms = [(var * size / (size - 1), size) for var, size in parts if size > 1 and var > 0]
    total = sum(term for term, _ in terms)
    spread = sum(term ** 2 / (size - 1) for term, size in terms)
    return total, (total ** 2 / spread if spread > 0 else math.inf)


def quantile(df: float) -> float:
    """The two-sided 95 % quantile of Student's t with ``df`` degrees of freedom (z when infinite)."""
    return Z95 if not math.isfinite(df) else float(student_t.ppf(0.975, max(df, 1.0)))


def weighted_auroc(y: np.ndarray, p: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUROC of each row of ``weights`` (B, N) as row multiplicities; ties count half.

    Rank-based and vectorised: one sort of the scores, then cumulative sums per draw.
    """
    order = np.argsort(p, kind="mergesort")
    sorted_p, sorted_y = p[order], y[order].astype(bool)
    starts = np.flatnonzero(np.r_[True, sorted_p[1:] != sorted_p[:-1]])
    w = weights[:, order]
    pos = np.add.reduceat(np.where(sorted_y, w, 0.0), starts, axis=1)
    neg = np.add.reduceat(np.where(sorted_y, 0.0, w), starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    pairs = pos.sum(1) * neg.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (pos * (below + 0.5 * neg)).sum(1) / pairs


class GroupAUROC:
    """AUROC of group-resampled data from group counts (B, G), without expanding to rows.

    Precomputes K[g, h]: pairs (positive row of g, negative row of h) with the positive scored
    higher, ties half; a draw's AUROC is c K c / ((c . positives) (c . negatives)). Draws that
    resample one class stratum (``variance_parts``) reduce to products with vectors.
    """

    def __init__(self, y: np.ndarray, p: np.ndarray, codes: np.ndarray, n_groups: int) -> None:
        pos = y == 1
        self.rows = np.unique(codes[pos])                      # groups holding positives
        self.n_pos = np.bincount(codes[pos], minlength=n_groups).astype(float)
        self.n_neg = np.bincount(codes[~pos], minlength=n_groups).astype(float)
        neg_order = np.lexsort((p[~pos], codes[~pos]))
        neg_p, neg_g = p[~pos][neg_order], codes[~pos][neg_order]
        bounds = np.searchsorted(neg_g, np.arange(n_groups + 1))
        per_group = np.zeros((int(pos.sum()), n_groups))
        for h in np.flatnonzero(np.diff(bounds)):
            scores = neg_p[bounds[h]:bounds[h + 1]]
            low, high = np.searchsorted(scores, p[pos], "left"), np.searchsorted(scores, p[pos], "right")
            per_group[:, h] = low + 0.5 * (high - low)
        self.k = np.zeros((len(self.rows), n_groups))
        np.add.at(self.k, np.searchsorted(self.rows, codes[pos]), per_group)

    def __call__(self, counts: np.ndarray) -> np.ndarray:
        """(B,) AUROC of each row of counts (B, G)."""
        c_rows = counts[:, self.rows]
        if np.all(c_rows == 1):
            pairs = counts @ self.k.sum(0)
        elif np.all(np.delete(counts, self.rows, axis=1) == 1):
            inner = self.k[:, self.rows]
            pairs = c_rows @ (self.k.sum(1) - inner.sum(1))
            if inner.any():
                pairs = pairs + (c_rows * (c_rows @ inner.T)).sum(1)
        else:
            pairs = (c_rows * (counts @ self.k.T)).sum(1)
        return pairs / ((counts @ self.n_pos) * (counts @ self.n_neg))
