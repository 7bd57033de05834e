"""Measured coverage of the test intervals in ``core.intervals`` on simulated scores.

    python benchmarks/interval_coverage.py                      # 400 simulations per cell
    python benchmarks/interval_coverage.py --sims 100 --cases 60 200

Binormal scores with a known AUROC (negatives N(0, 1), positives N(d, 1), AUROC = Phi(d / sqrt 2))
and a fixed threshold d / 2 with known sensitivity Phi(d / 2). Clustered cells put 4 cases in
each group (patient) with a shared random effect (intra-group correlation 0.5, total variance
still 1) and one label per group; unclustered cells have one case per group. A cell's positive
share is of groups, at least one. Each simulation computes the 95 % intervals of AUROC and
sensitivity; coverage is the share of defined intervals holding the true value.
"""
from __future__ import annotations

import argparse
import itertools
import math
import time

import numpy as np
from scipy.stats import norm

from core.intervals import binary_intervals

GROUP_SIZE = 4
ICC = 0.5


def simulate(rng: np.random.Generator, *, cases: int, positive_share: float, clustered: bool,
             d: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(y, scores, groups)`` for one simulated test split."""
    size = GROUP_SIZE if clustered else 1
    n_groups = cases // size
    n_pos = max(1, round(positive_share * n_groups))
    group_y = np.r_[np.ones(n_pos), np.zeros(n_groups - n_pos)].astype(np.int64)
    groups = np.repeat(np.arange(n_groups), size)
    y = group_y[groups]
    shared = rng.normal(0, math.sqrt(ICC), n_groups)[groups] if clustered else 0.0
    own = rng.normal(0, math.sqrt(1 - ICC) if clustered else 1.0, len(y))
    return y, d * y + shared + own, groups


def run_cell(*, cases: int, share: float, clustered: bool, auroc: float, sims: int,
             seed: int) -> dict[str, float]:
    """Coverage, mean width and undefined share of the AUROC and sensitivity intervals."""
    d = math.sqrt(2) * norm.ppf(auroc)
    truth = {"auroc": auroc, "sensitivity": float(norm.cdf(d / 2))}
    rng = np.random.default_rng(seed)
    hits = {k: [] for k in truth}
    widths = {k: [] for k in truth}
    undefined = {k: 0 for k in truth}
    boundary = 0
    for i in range(sims):
        y, p, groups = simulate(rng, cases=cases, positive_share=share, clustered=clustered, d=d)
        stats = binary_intervals(y, p, d / 2, groups=groups, unit="patient", seed=seed + i)
        boundary += "Hanley-McNeil" in stats["auroc"]["method"]
        for name in truth:
            low, high = stats[name]["ci_low"], stats[name]["ci_high"]
            if not (math.isfinite(low) and math.isfinite(high)):
                undefined[name] += 1
                continue
            hits[name].append(low <= truth[name] <= high)
            widths[name].append(high - low)
    out: dict[str, float] = {}
    for name in truth:
        out[f"{name}_coverage"] = float(np.mean(hits[name])) if hits[name] else math.nan
        out[f"{name}_width"] = float(np.mean(widths[name])) if widths[name] else math.nan
        out[f"{name}_undefined"] = undefined[name] / sims
    out["auroc_boundary"] = boundary / sims
    out["positive_groups"] = int(stats["auroc"]["n_groups"]["1"])
    out["method"] = stats["auroc"]["method"].split(";")[0]
    return out


def table(rows: list[dict]) -> str:
    """The cells as a markdown table."""
    head = ("| groups | cases | positive groups | AUROC cover | width | undefined | at 0/1 | "
            "sens cover | width | AUROC method |")
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        lines.append(
            f"| {'clustered x4' if r['clustered'] else 'one case'} | {r['cases']} | "
            f"{r['share']:.0%} ({r['positive_groups']}) | {fmt(r['auroc_coverage'])} | {fmt(r['auroc_width'])} | "
            f"{r['auroc_undefined']:.0%} | {r['auroc_boundary']:.0%} | "
            f"{fmt(r['sensitivity_coverage'])} | "
            f"{fmt(r['sensitivity_width'])} | {r['method']} |")
    return "\n".join(lines)


def fmt(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sims", type=int, default=400)
    parser.add_argument("--cases", type=int, nargs="+", default=[20, 60, 200])
    parser.add_argument("--shares", type=float, nargs="+", default=[0.05, 0.2, 0.5])
    parser.add_argument("--auroc", type=float, default=0.8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows, started = [], time.time()
    for clustered, cases, share in itertools.product((False, True), args.cases, args.shares):
        cell = run_cell(cases=cases, share=share, clustered=clustered, auroc=args.auroc,
                        sims=args.sims, seed=args.seed)
        rows.append({"clustered": clustered, "cases": cases, "share": share, **cell})
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    print(f"\ntrue AUROC {args.auroc}, {args.sims} simulations per cell, seed {args.seed}, "
          f"{time.time() - started:.0f} s\n")
    print(table(rows))


if __name__ == "__main__":
    main()
