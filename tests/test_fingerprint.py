"""egfr's dataset fingerprint on DICOM series: a bounded read per slice, still content-sensitive,
and independent of where the files are and when they were copied."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import core.data.cache
from core.data.cache import dataset_fingerprint
from core.data.prepared import DataOptions
from core.imageio import Geometry, volume_files, write_dicom_series, write_volume
from core.tasks import egfr

GEOMETRY = Geometry(spacing=(0.8, 0.8, 2.0), origin=(0.0, 0.0, 0.0))
LABELS = {"R01": "Mutant", "R02": "Wildtype", "R03": "Wildtype"}


def dicom_set(root: Path) -> Path:
    """Three cases, each a series of 3 slices of 256x256 int16 (~130 KiB a slice), and the CSV."""
    rng = np.random.default_rng(0)
    for case in LABELS:
        write_dicom_series(rng.integers(-1000, 400, size=(3, 256, 256)).astype(np.int16), GEOMETRY,
                           root / case)
    pd.DataFrame({"Case ID": list(LABELS), "EGFR mutation status": list(LABELS.values())}).to_csv(
        root / "clinical.csv", index=False)
    return root


def key(root: Path) -> str:
    options = DataOptions(root=root)
    return egfr.fingerprint(root, egfr.read_manifest(root, options), options)


@pytest.fixture(scope="module")
def original(tmp_path_factory) -> tuple[Path, str]:
    root = dicom_set(tmp_path_factory.mktemp("dicom") / "set")
    return root, key(root)


def edited(original: tuple[Path, str], tmp_path: Path, edit) -> str:
    """The key of a plain copy (new mtimes, new place) of the set after ``edit(first slice)``."""
    copy = tmp_path / "copy"
    shutil.copytree(original[0], copy, copy_function=shutil.copyfile)
    edit(sorted((copy / "R02").iterdir())[1])
    return key(copy)


def flip(offset: int):
    def edit(path: Path) -> None:
        data = bytearray(path.read_bytes())
        data[offset] ^= 0xFF
        path.write_bytes(bytes(data))
    return edit


def test_a_copy_elsewhere_with_new_mtimes_keeps_the_key(original, tmp_path):
    def touch(path: Path) -> None:
        os.utime(path, (1_000_000_000, 1_000_000_000))
    assert edited(original, tmp_path, touch) == original[1]


@pytest.mark.parametrize("edit", [
    flip(200),                                    # the header (geometry, rescale, UIDs live there)
    flip(60_000),                                 # the first rows of pixels
    flip(-1),                                     # the last pixel
    lambda p: p.write_bytes(p.read_bytes()[:-2]),  # a truncated slice
    lambda p: p.unlink(),                         # a slice gone
    lambda p: shutil.copyfile(p, p.with_name("extra.dcm")),  # a slice more
], ids=["header", "first-rows", "last-pixel", "truncated", "removed", "added"])
def test_a_changed_slice_changes_the_key(original, tmp_path, edit):
    assert edited(original, tmp_path, edit) != original[1]


def test_a_changed_labels_csv_changes_the_key(original, tmp_path):
    copy = Path(shutil.copytree(original[0], tmp_path / "copy"))
    with open(copy / "clinical.csv", "a") as handle:
        handle.write("R04,Mutant\n")
    assert key(copy) != original[1]


def test_each_slice_is_read_only_at_its_head_and_tail(original, monkeypatch):
    read: dict[str, int] = {}
    real_open = open

    class Counting:
        def __init__(self, path, mode="r", *args, **kwargs):
            self.name, self.handle = str(path), real_open(path, mode, *args, **kwargs)

        def read(self, size=-1):
            data = self.handle.read(size)
            read[self.name] = read.get(self.name, 0) + len(data)
            return data

        def __getattr__(self, name):
            return getattr(self.handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

    monkeypatch.setattr(core.data.cache, "open", Counting, raising=False)
    assert key(original[0]) == original[1]
    slices = {name: size for name, size in read.items() if name.endswith(".dcm")}
    sizes = [p.stat().st_size for p in original[0].rglob("*.dcm")]
    assert len(sizes) == len(slices) == 9 and min(sizes) > 2 * egfr.SLICE_HEAD_BYTES
    assert max(slices.values()) == egfr.SLICE_HEAD_BYTES + egfr.SLICE_TAIL_BYTES


def test_a_set_without_dicom_series_keeps_its_former_key(tmp_path):
    root = tmp_path / "nifti"
    root.mkdir()
    for case in LABELS:
        write_volume(np.zeros((4, 8, 8), dtype=np.int16), GEOMETRY, root / f"{case}.nii.gz")
    pd.DataFrame({"Case ID": list(LABELS), "EGFR mutation status": list(LABELS.values())}).to_csv(
        root / "clinical.csv", index=False)
    selected = egfr.read_manifest(root, DataOptions(root=root))
    files = [root / "clinical.csv", *(f for p in selected["image"] for f in volume_files(Path(p)))]
    assert key(root) == dataset_fingerprint(files)
