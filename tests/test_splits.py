"""Grouped, stratified, seeded splits: determinism, no leakage, both classes everywhere."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.data.splits import split_manifest, write_splits
from core.errors import DataError


def _manifest(n_groups=100, pos_fraction=0.2, seed=0) -> pd.DataFrame:
    """Patients with one to three cases each; a patient's cases share its label."""
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(n_groups):
        label = int(g < round(pos_fraction * n_groups))
        rows += [{"id": f"P{g:03d}-{k}", "group": f"P{g:03d}", "label": label} for k in range(rng.integers(1, 4))]
    return pd.DataFrame(rows)


def _assignment(df: pd.DataFrame) -> dict[str, str]:
    return dict(zip(df["id"], df["split"]))


def test_deterministic_and_independent_of_row_order():
    manifest = _manifest()
    first = split_manifest(manifest, seed=7)
    again = split_manifest(manifest, seed=7)
    shuffled = split_manifest(manifest.sample(frac=1.0, random_state=3), seed=7)
    assert _assignment(first) == _assignment(again) == _assignment(shuffled)
    assert _assignment(first) != _assignment(split_manifest(manifest, seed=8))


def test_no_group_in_two_splits():
    out = split_manifest(_manifest())
    assert (out.groupby("group")["split"].nunique() == 1).all()


def test_each_split_has_both_classes_and_fractions_hold():
    fractions = (0.7, 0.15, 0.15)
    out = split_manifest(_manifest(n_groups=200), fractions=fractions)
    groups = out.drop_duplicates("group")
    for name, fraction in zip(("train", "val", "test"), fractions):
        chosen = groups[groups["split"] == name]
        assert set(chosen["label"]) == {0, 1}
        assert abs(len(chosen) / len(groups) - fraction) < 0.02
        assert abs(chosen["label"].mean() - 0.2) < 0.03  # stratified


@pytest.mark.parametrize("n_pos", [3, 4, 5])
def test_smallest_workable_class_still_reaches_every_split(n_pos):
    manifest = pd.DataFrame({"id": [f"c{i}" for i in range(30)], "label": [1] * n_pos + [0] * (30 - n_pos)})
    manifest["group"] = manifest["id"]
    out = split_manifest(manifest)
    assert out.groupby("split")["label"].agg(set).map(len).eq(2).all()


def test_group_label_is_its_max_label():
    # Two positive patients plus one with a negative and a positive case: three positive groups,
    # just enough for one per split, and that patient's cases stay together.
    ids = [f"n{i}" for i in range(27)] + ["p0", "p1", "mixed-a", "mixed-b"]
    groups = ids[:29] + ["mixed", "mixed"]
    manifest = pd.DataFrame({"id": ids, "group": groups, "label": [0] * 27 + [1, 1, 0, 1]})
    out = split_manifest(manifest)
    assert out.loc[out["group"] == "mixed", "split"].nunique() == 1
    assert out.groupby("split")["label"].max().eq(1).all()


def test_too_small_dataset_names_class_counts():
    manifest = pd.DataFrame({"id": list("abcdefgh"), "group": list("abcdefgh"), "label": [1, 1] + [0] * 6})
    with pytest.raises(DataError, match=r"2 cases of class 1.*6 cases of class 0|6 cases of class 0.*2 cases of class 1"):
        split_manifest(manifest)


def test_one_class_raises_naming_the_missing_class():
    manifest = pd.DataFrame({"id": list("abcdef"), "group": list("abcdef"), "label": [0] * 6})
    with pytest.raises(DataError, match=r"Only one class.*the positive \(1\) class is missing"):
        split_manifest(manifest)


def test_groups_that_all_hold_a_positive_still_split():
    # Eight scans, each with one or two nodules among many negative candidates (a downloaded subset).
    rows = [{"id": f"s{g}-{k}", "group": f"s{g}", "label": int(k < 1 + g % 2)}
            for g in range(8) for k in range(20)]
    out = split_manifest(pd.DataFrame(rows), fractions=(0.5, 0.25, 0.25))
    assert (out.groupby("group")["split"].nunique() == 1).all()
    assert out.groupby("split")["label"].agg(set).map(len).eq(2).all()


@pytest.mark.parametrize("fractions", [(0.7, 0.2, 0.2), (0.5, 0.5), (1.2, -0.1, -0.1)])
def test_bad_fractions_raise(fractions):
    with pytest.raises(DataError, match="sum to 1"):
        split_manifest(_manifest(), fractions=fractions)


def test_zero_fraction_leaves_that_split_empty():
    out = split_manifest(_manifest(), fractions=(0.8, 0.2, 0.0))
    assert set(out["split"]) == {"train", "val"}


def test_write_splits_puts_key_columns_first(tmp_path):
    manifest = _manifest(n_groups=20)
    manifest["image"] = "x.nii.gz"
    path = write_splits(split_manifest(manifest), tmp_path / "results")
    written = pd.read_csv(path)
    assert path.name == "splits.csv"
    assert list(written.columns) == ["id", "group", "label", "split", "image"]
    assert len(written) == len(manifest)
