"""EGFR reader, preprocessing, cache and phantom on tiny datasets in the real layout."""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.config import DataConfig
from core.data.cache import cached_arrays, dataset_fingerprint
from core.data.phantoms.egfr import egfr_phantom
from core.data.prepared import DataOptions
from core.errors import DataError
from core.imageio import Geometry, read_volume, write_volume
from core.tasks import prepare
from core.tasks.egfr import TASK, load_case, preprocess_case, read_egfr_manifest

GEOMETRY = Geometry(spacing=(0.8, 0.8, 2.0), origin=(0.0, 0.0, 0.0))


def _dataset(root: Path, labels: dict[str, str], *, volumes=None, csv_name="clinical.csv") -> Path:
    """Write one small .nii.gz per case in ``volumes`` (default: the labelled ids) and the CSV."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for case in labels if volumes is None else volumes:
        write_volume(rng.integers(-1000, 400, size=(6, 8, 8)).astype(np.int16), GEOMETRY, root / f"{case}.nii.gz")
    table = pd.DataFrame({"Case ID": list(labels), "Gender": "Female", "EGFR mutation status": list(labels.values())})
    table.to_csv(root / csv_name, index=False)
    return root


def _balanced(n_pos=4, n_neg=6) -> dict[str, str]:
    return {f"R{i:02d}": "Mutant" if i < n_pos else "Wildtype" for i in range(n_pos + n_neg)}


def test_unknown_labels_dropped_with_count(tmp_path, caplog):
    labels = {"R1": "Mutant", "R2": "Wildtype", "R3": " unknown ", "R4": "Not collected", "R5": "",
              "R6": "N/A", "R7": "MUTANT ", "R8": "wildtype"}
    manifest = read_egfr_manifest(_dataset(tmp_path, labels))
    assert list(manifest.columns) == ["id", "group", "label", "image", "mask"]
    assert dict(zip(manifest["id"], manifest["label"])) == {"R1": 1, "R2": 0, "R7": 1, "R8": 0}
    assert (manifest["group"] == manifest["id"]).all() and manifest["mask"].isna().all()
    assert "Dropped 4 of 8 rows" in caplog.text


def test_numeric_labels_and_padded_ids(tmp_path):
    root = _dataset(tmp_path, {" R1 ": "1", "R2": "0", "R3": " 1", "R4": "0"}, volumes=["R1", "R2", "R3", "R4"])
    manifest = read_egfr_manifest(root, positive_value="1", negative_value="0")
    assert dict(zip(manifest["id"], manifest["label"])) == {"R1": 1, "R2": 0, "R3": 1, "R4": 0}


@pytest.mark.parametrize("option, flag", [("label_column", "--label-column"), ("id_column", "--id-column")])
def test_missing_column_lists_columns(tmp_path, option, flag):
    root = _dataset(tmp_path, _balanced())
    with pytest.raises(DataError, match=rf"no column 'Nope'.*'Case ID', 'Gender', 'EGFR mutation status'.*{flag}"):
        read_egfr_manifest(root, **{option: "Nope"})


def test_column_names_match_loosely(tmp_path):
    root = _dataset(tmp_path, _balanced())
    assert len(read_egfr_manifest(root, label_column="egfr mutation status ")) == 10


def test_missing_folder_and_file_root(tmp_path):
    with pytest.raises(DataError, match="does not exist or is not a folder"):
        read_egfr_manifest(tmp_path / "nowhere")
    (tmp_path / "file.nii.gz").write_bytes(b"x")
    with pytest.raises(DataError, match="not a folder"):
        read_egfr_manifest(tmp_path / "file.nii.gz")


def test_no_volumes_names_accepted_formats(tmp_path):
    _dataset(tmp_path, _balanced(), volumes=[])
    with pytest.raises(DataError, match=r"No volume found.*\.nii\.gz.*DICOM"):
        read_egfr_manifest(tmp_path)


def test_csv_missing_or_ambiguous(tmp_path):
    root = _dataset(tmp_path, _balanced())
    (root / "clinical.csv").unlink()
    with pytest.raises(DataError, match="Found 0 CSV files.*--labels-csv"):
        read_egfr_manifest(root)
    with pytest.raises(DataError, match="other.csv does not exist"):
        read_egfr_manifest(root, labels_csv=root / "other.csv")
    _dataset(root, _balanced(), volumes=[], csv_name="a.csv")
    _dataset(root, _balanced(), volumes=[], csv_name="b.csv")
    with pytest.raises(DataError, match="Found 2 CSV files.*a.csv, b.csv"):
        read_egfr_manifest(root)
    assert len(read_egfr_manifest(root, labels_csv=root / "a.csv")) == 10


def test_duplicate_ids_in_csv(tmp_path):
    root = _dataset(tmp_path, _balanced())
    table = pd.read_csv(root / "clinical.csv")
    pd.concat([table, table.iloc[:2]]).to_csv(root / "clinical.csv", index=False)
    with pytest.raises(DataError, match="2 case ids more than once.*R00, R01"):
        read_egfr_manifest(root)


def test_unmatched_cases_and_volumes_counted(tmp_path, caplog):
    labels = _balanced()
    root = _dataset(tmp_path, labels, volumes=[*list(labels)[:8], "X1"])
    manifest = read_egfr_manifest(root)
    assert len(manifest) == 8
    assert "2 cases in clinical.csv have no volume" in caplog.text and "R08, R09" in caplog.text
    assert "1 volumes in" in caplog.text and "X1" in caplog.text


def test_nothing_left(tmp_path):
    root = _dataset(tmp_path, _balanced(), volumes=["A", "B"])
    with pytest.raises(DataError, match="No labelled case with a volume"):
        read_egfr_manifest(root)


def test_values_outside_the_vocabulary_are_listed(tmp_path):
    root = _dataset(tmp_path, {"R1": "EGFR+", "R2": "Wildtype", "R3": "Unknown", "R4": "Not tested"})
    with pytest.raises(DataError, match=r"neither positive \('Mutant'\), negative \('Wildtype'\).*"
                                        r"'EGFR\+': 1.*--positive-value / --negative-value"):
        read_egfr_manifest(root)
    assert read_egfr_manifest(root, positive_value="egfr+")["label"].tolist() == [1, 0]


def test_a_typo_is_not_read_as_the_negative_class(tmp_path):
    root = _dataset(tmp_path, {"R1": "Mutant", "R2": "Wildtype", "R3": "Mutnat", "R4": "Mutnat"})
    with pytest.raises(DataError, match=r"'Mutnat': 2"):
        read_egfr_manifest(root)


def test_one_class_left_suggests_positive_value(tmp_path):
    root = _dataset(tmp_path, {"R1": "Wildtype", "R2": "Wildtype", "R3": "Unknown"})
    with pytest.raises(DataError, match=r"Only one class.*--positive-value"):
        read_egfr_manifest(root)


def test_masks_matched_by_case_name(tmp_path):
    root = _dataset(tmp_path, _balanced())
    write_volume(np.ones((6, 8, 8), np.uint8), GEOMETRY, root / "masks" / "R01.nii.gz")
    manifest = read_egfr_manifest(root).set_index("id")
    assert manifest.loc["R01", "mask"].endswith("masks/R01.nii.gz") and manifest["mask"].notna().sum() == 1
    with pytest.raises(DataError, match="Masks folder"):
        read_egfr_manifest(root, masks_dir=tmp_path / "elsewhere")


def test_prepare_names_an_unreadable_volume(tmp_path):
    root = _dataset(tmp_path / "data", _balanced())
    (root / "R03.nii.gz").write_bytes(b"\x1f\x8b not really a gzip")
    options = DataOptions(root=root, cache_dir=tmp_path / "cache")
    with pytest.raises(DataError, match="R03.nii.gz"):
        prepare(TASK, DataConfig(shape=(4, 4, 4)), options, seed=0)


def _lesion_case():
    """(20, 40, 40) lung-like -800 HU volume with a +100 HU cube that its mask marks."""
    image = np.full((20, 40, 40), -800.0, dtype=np.float32)
    mask = np.zeros(image.shape, np.uint8)
    image[2:6, 5:11, 5:11] = 100.0
    mask[2:6, 5:11, 5:11] = 1
    return image, mask, Geometry(spacing=(1.0, 1.0, 2.0), origin=(0.0, 0.0, 0.0))


def test_preprocess_crops_around_the_mask():
    image, mask, geometry = _lesion_case()
    kwargs = dict(shape=(8, 8, 8), hu_window=(-1000.0, 400.0), crop_margin_mm=2.0)
    whole = preprocess_case(image, geometry, None, **kwargs)
    cropped = preprocess_case(image, geometry, mask, **kwargs)
    assert whole.shape == cropped.shape == (8, 8, 8) and cropped.dtype == np.float32
    assert 0.0 <= cropped.min() and cropped.max() <= 1.0
    bright = lambda x: (x > 0.5).mean()  # noqa: E731  (+100 HU -> 0.79, -800 HU -> 0.14)
    assert bright(whole) < 0.01 and bright(cropped) > 0.15  # the cube fills 0.24 of the crop box


def test_preprocess_pads_with_window_minimum_at_the_border():
    image, mask, geometry = _lesion_case()
    mask[:] = 0
    mask[0:2, 0:3, 0:3] = 1  # touches the corner: the margin box leaves the volume
    # Box: z -2..4 (4 mm / 2 mm), y and x -4..7: a (6, 11, 11) box, so the resize is an identity.
    out = preprocess_case(image, geometry, mask, shape=(6, 11, 11), hu_window=(-1000.0, 400.0), crop_margin_mm=4.0)
    assert np.all(out[:2] == 0.0) and np.all(out[:, :4] == 0.0) and np.all(out[:, :, :4] == 0.0)
    np.testing.assert_allclose(out[2:, 4:, 4:], image[0:4, 0:7, 0:7].clip(-1000, 400) / 1400 + 1000 / 1400, atol=1e-6)


def test_preprocess_empty_mask_uses_whole_volume(caplog):
    image, mask, geometry = _lesion_case()
    kwargs = dict(shape=(8, 8, 8), hu_window=(-1000.0, 400.0), crop_margin_mm=2.0)
    out = preprocess_case(image, geometry, np.zeros_like(mask), **kwargs)
    np.testing.assert_array_equal(out, preprocess_case(image, geometry, None, **kwargs))
    assert "Empty tumour mask" in caplog.text


def test_prepare_phantom_shapes_and_cache_hit(tmp_path, monkeypatch, caplog):
    task = dataclasses.replace(TASK, phantom=lambda cache_dir, **kw: egfr_phantom(cache_dir, n_cases=30, **kw))
    data_cfg, options = DataConfig(shape=(16, 16, 16)), DataOptions(cache_dir=tmp_path / "cache")
    with caplog.at_level(logging.INFO, logger="core.data.cache"):
        first = prepare(task, data_cfg, options, seed=42)
        assert "cache miss" in caplog.text
        caplog.clear()
        second = prepare(task, data_cfg, options, seed=42)
        assert "cache hit" in caplog.text and "cache miss" not in caplog.text
    counts = first.splits["split"].value_counts()
    assert counts.sum() == first.info["n_cases"] == 28  # 30 minus one Unknown and one Not collected
    for split in ("train", "val", "test"):
        x, y = first.arrays[f"{split}/x"], first.arrays[f"{split}/y"]
        assert x.shape == (counts[split], 1, 16, 16, 16) and x.dtype == np.float16
        assert y.shape == (counts[split],) and y.dtype == np.int64 and set(np.asarray(y)) == {0, 1}
        np.testing.assert_array_equal(x, second.arrays[f"{split}/x"])
        np.testing.assert_array_equal(y, first.splits.loc[first.splits["split"] == split, "label"])
    row = first.splits[first.splits["split"] == "train"].iloc[0]  # float16 storage: < 0.5 HU lost
    exact = load_case(Path(row["image"]), data_cfg, mask_path=Path(row["mask"]) if isinstance(row["mask"], str) else None)
    np.testing.assert_allclose(first.arrays["train/x"][0, 0], exact, atol=1 / 2048)
    assert first.info["source"] == "phantom" and first.info["cache_key"] == second.info["cache_key"]
    assert set(first.without_test().arrays) == {"train/x", "train/y", "val/x", "val/y"}
    other = prepare(task, DataConfig(shape=(8, 8, 8)), options, seed=42)
    assert other.info["cache_key"] != first.info["cache_key"] and other.arrays["train/x"].shape[2:] == (8, 8, 8)


def test_phantom_layout_and_reuse(tmp_path):
    folder = egfr_phantom(tmp_path, n_cases=20, seed=3)
    stamp = (folder / "R01-001.nii.gz").stat().st_mtime_ns
    assert egfr_phantom(tmp_path, n_cases=20, seed=3) == folder
    assert (folder / "R01-001.nii.gz").stat().st_mtime_ns == stamp
    assert egfr_phantom(tmp_path, n_cases=20, seed=4) != folder
    table = pd.read_csv(folder / "clinical.csv")
    assert {"Case ID", "EGFR mutation status", "Gender", "Age at Histological Diagnosis"} <= set(table.columns)
    assert set(table["EGFR mutation status"]) == {"Mutant", "Wildtype", "Unknown", "Not collected"}
    image, geometry = read_volume(folder / "R01-001.nii.gz")
    mask, mask_geometry = read_volume(folder / "masks" / "R01-001.nii.gz")
    assert image.shape == mask.shape == (48, 64, 64) and geometry == mask_geometry
    assert np.all(image == np.round(image)) and set(np.unique(mask)) == {0.0, 1.0}
    assert 0.6 <= geometry.spacing[0] <= 0.9 and 1.25 <= geometry.spacing[2] <= 2.5


def test_cached_arrays_builds_once_and_maps_read_only(tmp_path):
    calls = []

    def build():
        calls.append(1)
        return {"train/x": np.arange(6, dtype=np.float32).reshape(2, 3), "train/y": np.array([0, 1])}

    first = cached_arrays(cache_dir=tmp_path, key="k1", build=build)
    second = cached_arrays(cache_dir=tmp_path, key="k1", build=build)
    assert len(calls) == 1 and isinstance(second["train/x"], np.memmap) and not second["train/x"].flags.writeable
    np.testing.assert_array_equal(first["train/x"], second["train/x"])
    assert [p.name for p in (tmp_path / "preprocessed").iterdir()] == ["k1"]  # no staging folder left


@pytest.mark.parametrize("damage", ["truncate", "delete", "index"])
def test_a_damaged_cache_entry_is_rebuilt_with_a_warning(tmp_path, caplog, damage):
    build = lambda: {"train/x": np.arange(600, dtype=np.float32).reshape(20, 30)}  # noqa: E731
    cached_arrays(cache_dir=tmp_path, key="k", build=build)
    folder = tmp_path / "preprocessed" / "k"
    if damage == "truncate":
        data = (folder / "train" / "x.npy").read_bytes()
        (folder / "train" / "x.npy").write_bytes(data[: len(data) // 2])
    elif damage == "delete":
        (folder / "train" / "x.npy").unlink()
    else:
        (folder / "arrays.json").write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="core.data.cache"):
        again = cached_arrays(cache_dir=tmp_path, key="k", build=build)
    assert "cannot be read" in caplog.text and "rebuilding" in caplog.text
    np.testing.assert_array_equal(again["train/x"], build()["train/x"])


def test_fingerprint_tracks_content_not_location(tmp_path):
    root = _dataset(tmp_path / "a", _balanced())
    files = sorted(root.iterdir())
    before = dataset_fingerprint(files)
    copy = Path(shutil.copytree(root, tmp_path / "b"))
    assert dataset_fingerprint(sorted(copy.iterdir())) == before
    with open(copy / "clinical.csv", "a") as handle:
        handle.write("R99,Female,Mutant\n")
    assert dataset_fingerprint(sorted(copy.iterdir())) != before


def test_cached_arrays_keeps_the_copy_of_a_builder_that_finished_first(tmp_path):
    # The outer build finishes after an inner one for the same key, as a second process would.
    inner = lambda: {"x": np.ones(3)}  # noqa: E731

    def outer():
        cached_arrays(cache_dir=tmp_path, key="k", build=inner)
        return {"x": np.zeros(3)}

    np.testing.assert_array_equal(cached_arrays(cache_dir=tmp_path, key="k", build=outer)["x"], np.ones(3))
    assert [p.name for p in (tmp_path / "preprocessed").iterdir()] == ["k"]


def _ellipsoid_case(spacing_zyx=(2.5, 0.7, 0.7), semi_axes_mm=(8.0, 8.0, 8.0)):
    """A +100 HU ellipsoid in a -800 HU volume of anisotropic voxels, and its mask."""
    shape = (40, 120, 120)
    grid = np.indices(shape).transpose(1, 2, 3, 0) * np.asarray(spacing_zyx)
    centre = np.asarray([20, 50, 70]) * np.asarray(spacing_zyx)
    inside = np.linalg.norm((grid - centre) / np.asarray(semi_axes_mm), axis=-1) <= 1
    image = np.where(inside, 100.0, -800.0).astype(np.float32)
    return image, inside.astype(np.uint8), Geometry(spacing=spacing_zyx[::-1], origin=(0.0, 0.0, 0.0))


def _extents(out: np.ndarray) -> list[int]:
    """Voxels the bright region spans along z, y and x."""
    bright = out > 0.5
    return [int(np.ptp(np.flatnonzero(bright.any(axis=tuple(a for a in range(3) if a != k))))) + 1
            for k in range(3)]


def test_resampling_to_a_spacing_keeps_proportions_and_centre():
    image, mask, geometry = _ellipsoid_case(semi_axes_mm=(12.0, 6.0, 6.0))  # 24 mm tall, 12 mm wide
    kwargs = dict(shape=(24, 24, 24), hu_window=(-1000.0, 400.0), crop_margin_mm=2.0)
    resampled = preprocess_case(image, geometry, mask, spacing=(1.25, 1.25, 1.25), **kwargs)
    np.testing.assert_allclose(np.asarray(_extents(resampled)) * 1.25, [24.0, 12.0, 12.0], atol=2.5)
    np.testing.assert_allclose(np.argwhere(resampled > 0.5).mean(axis=0), (23 / 2,) * 3, atol=0.75)
    z, y, x = _extents(preprocess_case(image, geometry, mask, **kwargs))  # the seed's margin box
    assert z < 1.5 * y  # resized box by box: the 2:1 tumour comes out nearly round


def test_resampling_without_a_mask_fits_the_whole_volume_isotropically():
    image, _, geometry = _ellipsoid_case()
    out = preprocess_case(image, geometry, None, shape=(16, 16, 16), hu_window=(-1000.0, 400.0),
                          crop_margin_mm=2.0, spacing=(1.25, 1.25, 1.25))
    # 100 mm (z) x 84 mm (y, x) fits 16 voxels of 6.25 mm: y and x are padded, z is not
    assert out.shape == (16, 16, 16) and out[:, 0].max() == 0.0 and out[:, :, -1].max() == 0.0
    assert out[0].max() > 0.0 and out[-1].max() > 0.0


def test_a_mask_off_its_image_grid_is_refused(tmp_path):
    image, mask, geometry = _lesion_case()
    write_volume(image, geometry, tmp_path / "case.nii.gz")
    shifted = Geometry(spacing=geometry.spacing, origin=(5.0, 0.0, 0.0))
    write_volume(mask, shifted, tmp_path / "mask.nii.gz")
    with pytest.raises(DataError, match="mask.nii.gz is not on its image's voxel grid.*resample the mask"):
        load_case(tmp_path / "case.nii.gz", DataConfig(shape=(8, 8, 8)), mask_path=tmp_path / "mask.nii.gz")


def _tumour_stats(folder: Path) -> pd.DataFrame:
    """Per labelled case: mutant (bool), mean HU inside the tumour mask, share of it below -200 HU."""
    table = pd.read_csv(folder / "clinical.csv")
    rows = []
    for case, status in zip(table["Case ID"], table["EGFR mutation status"]):
        if status in ("Mutant", "Wildtype"):
            image, _ = read_volume(folder / f"{case}.nii.gz")
            mask, _ = read_volume(folder / "masks" / f"{case}.nii.gz")
            inside = image[mask > 0]
            rows.append((status == "Mutant", inside.mean(), (inside < -200).mean()))
    return pd.DataFrame(rows, columns=["mutant", "mean_hu", "glass"])


def test_hard_and_easy_differ_and_easy_keeps_its_arrays(tmp_path):
    easy = egfr_phantom(tmp_path, n_cases=20, seed=3, difficulty="easy")
    hard = egfr_phantom(tmp_path, n_cases=20, seed=3, difficulty="hard")
    assert easy.name == "egfr-v1-easy-n20-s3" and hard.name.startswith("egfr-v2-hard-n20-s3")
    pd.testing.assert_frame_equal(pd.read_csv(easy / "clinical.csv"), pd.read_csv(hard / "clinical.csv"))
    image, geometry = read_volume(easy / "R01-001.nii.gz")
    mask, _ = read_volume(easy / "masks" / "R01-001.nii.gz")
    # The easy case R01-001 of seed 3 as the phantom has always written it (float32 as read back).
    digest = hashlib.sha256(np.ascontiguousarray(image).tobytes() + np.ascontiguousarray(mask).tobytes())
    assert digest.hexdigest() == "4e1113011c106fc4dc289ea18bf0a34ec8643e534f36eeb662d7428808429823"
    hard_image, _ = read_volume(hard / "R01-001.nii.gz")
    assert hard_image.shape == image.shape == (48, 64, 64) and geometry.spacing[0] < geometry.spacing[2]
    assert not np.array_equal(hard_image, image)


def test_the_hard_tumour_contrast_is_subtler_than_the_easy_one(tmp_path):
    easy = _tumour_stats(egfr_phantom(tmp_path, n_cases=60, seed=1, difficulty="easy"))
    hard = _tumour_stats(egfr_phantom(tmp_path, n_cases=60, seed=1, difficulty="hard"))
    gap = {name: t.groupby("mutant")["mean_hu"].mean().diff().abs().iloc[-1] for name, t in
           (("easy", easy), ("hard", hard))}
    assert gap["easy"] > 450 and gap["hard"] < 0.8 * gap["easy"]  # HU between the class means
    # Easy wild-type tumours are solid throughout; hard ones are part-solid like the mutants.
    assert easy.loc[~easy["mutant"], "glass"].max() == 0.0
    assert hard.loc[~hard["mutant"], "glass"].median() > 0.05
