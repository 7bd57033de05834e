"""FROC and CPM on hand-made cases whose answers are worked out in the comments."""
import numpy as np
import pandas as pd
import pytest

from core.froc import FP_RATES, froc, froc_rows

COLS = ["seriesuid", "coordX", "coordY", "coordZ"]


def table(rows, last):
    return pd.DataFrame(rows, columns=[*COLS, last])


# Scan A: nodule N1 at the origin (10 mm, radius 5) and N2 at x=50 (6 mm, radius 3).
# Scan B: nodule N3 at the origin (8 mm, radius 4) and an excluded finding at x=30 (diameter -1,
# read as 10 mm). Scans C, D, E have no candidates: 5 scans in all.
ANNOTATIONS = table([("A", 0, 0, 0, 10.0), ("A", 50, 0, 0, 6.0), ("B", 0, 0, 0, 8.0)], "diameter_mm")
EXCLUDED = table([("B", 30, 0, 0, -1.0)], "diameter_mm")
CANDIDATES = table([
    ("A", 1, 0, 0, 0.9),     # hits N1
    ("A", 0, 2, 0, 0.6),     # hits N1 again: counted once, at N1's best probability 0.9
    ("A", 20, 0, 0, 0.8),    # false positive
    ("A", 50, 4, 0, 0.7),    # 4 mm from N2, outside its 3 mm radius: false positive; N2 missed
    ("B", 0, 0, 3.9, 0.8),   # 3.9 mm from N3, inside its 4 mm radius: hit, tied with an FP
    ("B", 32, 0, 0, 0.95),   # 2 mm from the excluded finding: neither hit nor false positive
    ("B", 100, 0, 0, 0.5),   # false positive
], "probability")
SERIES = ["A", "B", "C", "D", "E"]


def test_rows_count_each_nodule_once_and_drop_excluded_marks():
    rows = froc_rows(CANDIDATES, ANNOTATIONS, EXCLUDED)
    lesions = rows[rows["lesion"] == 1]["probability"].tolist()
    assert lesions == [0.9, -np.inf, 0.8]
    assert sorted(rows[rows["lesion"] == 0]["probability"]) == [0.5, 0.7, 0.8]


def test_froc_curve_and_cpm_by_hand():
    # Thresholds 0.9: 1 of 3 nodules, 0 FPs; 0.8: 2 nodules, 1 FP (0.2 per scan); 0.7: 2 FPs;
    # 0.5: 3 FPs (0.6 per scan). Sensitivity at 1/8 FP/scan: 1/3 + (0.125 / 0.2) * 1/3;
    # at 1/4 and above: 2/3 (the missed N2 keeps it below 1). CPM = (0.5417 + 6 * 2/3) / 7.
    out = froc(CANDIDATES, ANNOTATIONS, EXCLUDED, series=SERIES, n_boot=200)
    assert out["fps"] == pytest.approx([0, 0, 0.2, 0.4, 0.6])
    assert out["sensitivity"] == pytest.approx([0, 1 / 3, 2 / 3, 2 / 3, 2 / 3])
    expected = [1 / 3 * 1.625] + [2 / 3] * 6
    assert list(out["sensitivity_at"].values()) == pytest.approx(expected)
    assert out["cpm"]["value"] == pytest.approx((1 / 3 * 1.625 + 4) / 7)
    assert out["n_scans"] == 5 and out["n_nodules"] == 3
    assert out["cpm"]["n_groups"] == {"0": 3, "1": 2}


def test_without_the_exclusion_the_mark_is_a_false_positive():
    # The 0.95 mark becomes the top FP: 0.2 FP/scan before any nodule is found.
    out = froc(CANDIDATES, ANNOTATIONS, None, series=SERIES, n_boot=50)
    assert out["fps"][:3] == pytest.approx([0, 0.2, 0.2])
    assert out["sensitivity"][:3] == pytest.approx([0, 0, 1 / 3])
    assert out["cpm"]["value"] < froc(CANDIDATES, ANNOTATIONS, EXCLUDED, series=SERIES,
                                      n_boot=50)["cpm"]["value"]


def test_no_false_positives_reads_the_final_sensitivity_everywhere():
    cands = CANDIDATES[CANDIDATES["probability"].isin([0.9, 0.6])]  # only N1's hits
    out = froc(cands, ANNOTATIONS, EXCLUDED, series=SERIES, n_boot=50)
    assert out["cpm"]["value"] == pytest.approx(1 / 3)


def test_a_missing_column_is_named():
    with pytest.raises(ValueError, match=r"candidates lacks column\(s\) \['probability'\]"):
        froc(CANDIDATES.drop(columns="probability"), ANNOTATIONS, EXCLUDED, series=SERIES)


def test_every_evaluated_scan_must_be_named():
    with pytest.raises(ValueError, match="not in series"):
        froc(CANDIDATES, ANNOTATIONS, EXCLUDED, series=["A"], n_boot=10)


def test_cpm_interval_over_scans_brackets_the_value_and_has_width():
    rng = np.random.default_rng(0)
    scans = [f"s{i}" for i in range(40)]
    nodules = table([(s, 0, 0, 0, 8.0) for s in scans[:25]], "diameter_mm")
    rows = []
    for i, s in enumerate(scans):
        if i < 25:
            rows.append((s, 1, 0, 0, rng.uniform(0.3, 1.0)))
        rows += [(s, 100 + k, 0, 0, rng.uniform(0, 0.8)) for k in range(rng.integers(1, 8))]
    out = froc(table(rows, "probability"), nodules, None, series=scans, n_boot=500, seed=1)
    cpm = out["cpm"]
    assert cpm["ci_low"] < cpm["value"] < cpm["ci_high"]
    assert cpm["unit"] == "series" and cpm["n_groups"] == {"0": 15, "1": 25}
    assert len(FP_RATES) == 7
