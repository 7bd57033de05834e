"""Test intervals: grouped, stratified, never a point, and with measured coverage."""
import time

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from benchmarks.interval_coverage import run_cell
from core.intervals import (
    auroc_interval,
    binary_intervals,
    clopper_pearson,
    mean_interval,
    ratio_interval,
    wilson,
)
from core.resampling import variance_parts, weighted_auroc


def scores(n=120, share=0.3, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < share).astype(int)
    return y, np.round(rng.normal(size=n) + 1.2 * y, 1)  # rounded: ties


def test_weighted_auroc_matches_sklearn_with_ties_and_repeats():
    y, p = scores()
    assert weighted_auroc(y, p, np.ones((1, len(y))))[0] == pytest.approx(roc_auc_score(y, p))
    counts = np.random.default_rng(1).integers(0, 3, len(y))
    repeated = np.repeat(np.arange(len(y)), counts)
    assert weighted_auroc(y, p, counts[None].astype(float))[0] == pytest.approx(
        roc_auc_score(y[repeated], p[repeated]))


def test_wilson_and_clopper_pearson_known_values():
    assert wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert clopper_pearson(0, 10) == pytest.approx((0.0, 0.3085), abs=1e-4)
    assert clopper_pearson(1, 1) == pytest.approx((0.025, 1.0), abs=1e-4)


def test_perfect_separation_with_six_positives_is_not_a_point():
    y = np.r_[np.zeros(40), np.ones(6)].astype(int)
    p = np.r_[np.linspace(0, 0.4, 40), np.linspace(0.6, 0.9, 6)]
    out = binary_intervals(y, p, 0.5)
    for name in ("auroc", "sensitivity", "specificity", "precision", "accuracy", "f1"):
        assert out[name]["value"] == 1.0 and out[name]["ci_high"] == 1.0
        assert out[name]["ci_low"] < 0.95, (name, out[name])
    assert out["auroc"]["few_positives"] and out["auroc"]["n_groups"] == {"0": 40, "1": 6}
    assert out["sensitivity"]["method"] == "Clopper-Pearson"  # 6 positives
    assert out["specificity"]["method"] == "Wilson"


def test_perfect_separation_by_groups_is_not_a_point():
    y = np.repeat(np.r_[np.zeros(10), np.ones(5)], 3).astype(int)
    p = y * 0.5 + np.linspace(0, 0.4, len(y))
    out = auroc_interval(y, p, groups=np.repeat(np.arange(15), 3), unit="patient")
    assert out["value"] == 1.0 and out["ci_low"] < 0.9 and out["unit"] == "patient"


def test_repeated_rows_as_groups_keep_the_width_of_the_originals():
    """Five copies of each case carry no more evidence than one: grouped intervals see that,
    row intervals (the copies taken as independent) come out far narrower."""
    y, p = scores(80, seed=3)
    copies = np.repeat(np.arange(80), 5)
    one = binary_intervals(y, p, 0.5)
    grouped = binary_intervals(y[copies], p[copies], 0.5, groups=copies, unit="patient")
    rows = binary_intervals(y[copies], p[copies], 0.5)
    for name in ("auroc", "sensitivity", "specificity"):
        width = {k: v[name]["ci_high"] - v[name]["ci_low"]
                 for k, v in (("one", one), ("grouped", grouped), ("rows", rows))}
        assert width["grouped"] == pytest.approx(width["one"], rel=0.25), (name, width)
        assert width["rows"] < 0.6 * width["grouped"], (name, width)
    assert grouped["auroc"]["method"].startswith("cluster bootstrap, stratified")
    assert grouped["auroc"]["n_boot"] >= 2000


def test_every_draw_keeps_both_classes():
    y = np.r_[np.ones(2), np.zeros(30)].astype(int)
    p = np.random.default_rng(0).random(32)
    seen = []
    variance_parts(lambda c: seen.append(c) or weighted_auroc(y, p, c), y, n_boot=500, seed=0)
    for counts in seen:
        assert (counts[:, y == 1].sum(1) == 2).all() and (counts[:, y == 0].sum(1) == 30).all()
        assert np.isfinite(weighted_auroc(y, p, counts)).all()


def test_series_holding_both_classes_count_in_both():
    """luna16: every test series may hold a nodule and many other candidates."""
    rng = np.random.default_rng(2)
    groups = np.repeat(np.arange(12), 20)
    y = np.tile(np.r_[1, 1, np.zeros(18)], 12).astype(int)
    p = y + rng.normal(size=len(y))
    out = auroc_interval(y, p, groups=groups, unit="series")
    assert out["n_groups"] == {"0": 12, "1": 12} and not out["few_positives"]
    assert out["ci_low"] < out["value"] < out["ci_high"]


def test_one_positive_group_leaves_auroc_undefined_not_faked():
    y = np.r_[1, np.zeros(19)].astype(int)
    out = auroc_interval(y, np.linspace(1, 0, 20))
    assert out["value"] == 1.0 and np.isnan(out["ci_low"]) and out["method"].startswith("undefined")


def test_groups_must_align_with_rows():
    with pytest.raises(ValueError, match="one group id per row"):
        auroc_interval(np.array([0, 1, 1]), np.array([0.1, 0.5, 0.9]), groups=np.array([1, 2]))


def test_mean_interval_resamples_groups():
    values = np.repeat(np.random.default_rng(0).random(20), 4)
    groups = np.repeat(np.arange(20), 4)
    grouped, rows = mean_interval(values, groups=groups), mean_interval(values)
    assert grouped["ci_low"] < grouped["value"] < grouped["ci_high"]
    assert (rows["ci_high"] - rows["ci_low"]) < 0.6 * (grouped["ci_high"] - grouped["ci_low"])
    assert grouped["n_groups"] == {"all": 20}


def test_ratio_interval_counts_groups_in_the_denominator():
    y = np.array([1, 1, 1, 1, 0, 0])
    out = ratio_interval(np.array([1, 1, 1, 1, 0, 0]), y, y=y, groups=np.array([0, 0, 1, 1, 2, 3]))
    assert out["value"] == 1.0 and out["ci_low"] == pytest.approx(clopper_pearson(2, 2)[0])


def test_two_thousand_grouped_draws_over_three_thousand_rows_are_fast():
    rng = np.random.default_rng(0)
    y = (rng.random(3000) < 0.2).astype(int)
    p = rng.normal(size=3000) + y
    started = time.perf_counter()
    auroc_interval(y, p, groups=rng.integers(0, 600, 3000), unit="patient", n_boot=2000)
    assert time.perf_counter() - started < 2.0


@pytest.mark.parametrize("clustered,cases,share", [(True, 200, 0.5), (False, 60, 0.2)])
def test_measured_coverage_on_a_fast_seeded_grid(clustered, cases, share):
    """80 simulations per cell: a true 95 % interval covers at least 87 % with probability
    > 0.998 (binomial SE 2.4 %, 3.3 SE below 95 %); intervals that ignore the groups
    (design effect 2.5 here) cover about 80 % in the clustered cell and fail."""
    cell = run_cell(cases=cases, share=share, clustered=clustered, auroc=0.8, sims=80, seed=7)
    assert cell["auroc_coverage"] >= 0.87 and cell["sensitivity_coverage"] >= 0.87, cell
    assert cell["auroc_undefined"] == 0
