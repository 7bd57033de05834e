"""Patient grouping for 2D sets: a regex over file names or a groups CSV; warnings without them."""
import logging

import pandas as pd
import pytest

from core.config import DataConfig
from core.data.groups import regroup
from core.data.phantoms.segmentation import segmentation_phantom
from core.data.prepared import DataOptions
from core.errors import DataError
from core.tasks import get_task, prepare


def _manifest(names):
    return pd.DataFrame({"id": names, "group": names, "label": [0] * len(names),
                         "image": [f"/data/images/{n}.png" for n in names]})


def test_regex_takes_the_first_capture_group_and_keeps_unmatched_names(caplog):
    manifest = _manifest(["pt01_a", "pt01_b", "pt02_a", "scan9"])
    with caplog.at_level(logging.WARNING):
        out = regroup(manifest, pattern=r"^(pt\d+)_", csv=None)
    assert out["group"].tolist() == ["pt01", "pt01", "pt02", "scan9"]
    assert "matched no patient id in 1 of 4" in caplog.text


@pytest.mark.parametrize("pattern, message", [("pt\\d+", "no capture group"), ("(pt", "not a valid")])
def test_bad_regex_names_the_fix(pattern, message):
    with pytest.raises(DataError, match=message):
        regroup(_manifest(["pt01_a"]), pattern=pattern, csv=None)


def test_groups_csv_by_stem_and_missing_rows(tmp_path):
    manifest = _manifest(["a", "b", "c"])
    path = tmp_path / "groups.csv"
    path.write_text("name,group\na,P1\nb,P1\nc,P2\n")
    assert regroup(manifest, pattern=None, csv=path)["group"].tolist() == ["P1", "P1", "P2"]
    path.write_text("name,group\na,P1\n")
    with pytest.raises(DataError, match="no row for 2 of 3 images"):
        regroup(manifest, pattern=None, csv=path)
    path.write_text("file,patient\na,P1\n")
    with pytest.raises(DataError, match="needs columns 'name'"):
        regroup(manifest, pattern=None, csv=path)


def test_segmentation_groups_by_csv_and_warns_without(tmp_path, caplog):
    root = segmentation_phantom(tmp_path / "phantoms", n_images=24, seed=5)
    names = sorted(p.stem for p in (root / "images").iterdir() if not p.name.startswith("."))
    cfg = DataConfig(task="segmentation", shape=(16, 16), split=(0.5, 0.25, 0.25))
    with caplog.at_level(logging.WARNING):
        prepare(get_task("segmentation"), cfg, DataOptions(root=root, cache_dir=tmp_path), seed=0)
    assert "Each image counts as its own patient" in caplog.text
    caplog.clear()
    groups = tmp_path / "groups.csv"  # two images per patient
    groups.write_text("name,group\n" + "".join(f"{n},P{i // 2}\n" for i, n in enumerate(names)))
    data = prepare(get_task("segmentation"), cfg,
                   DataOptions(root=root, cache_dir=tmp_path, groups_csv=groups), seed=0)
    assert "Each image counts as its own patient" not in caplog.text
    assert data.splits["group"].nunique() == len(names) // 2
    assert (data.splits.groupby("group")["split"].nunique() == 1).all()
