"""Volume IO round trips in every accepted format, world/voxel maps, volume discovery, and damaged
input refused with a DataError naming the file."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from core.errors import DataError
from core.imageio import (
    Geometry,
    check_input,
    find_volumes,
    read_geometry,
    read_image_2d,
    read_volume,
    resize,
    voxel_to_world,
    world_to_voxel,
    write_dicom_series,
    write_volume,
)
from tests import damaged

IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
FLIPPED = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)
ROTATED_Z = (0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)  # 90 degrees about z
DIRECTIONS = {"identity": IDENTITY, "flipped": FLIPPED, "rotated": ROTATED_Z}


def _volume(shape=(4, 5, 6), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-1000, 1500, size=shape).astype(np.int16)


def _geometry(direction=IDENTITY) -> Geometry:
    return Geometry(spacing=(0.7, 0.8, 2.5), origin=(10.5, -20.25, 30.0), direction=direction)


def _assert_same_geometry(got: Geometry, want: Geometry, atol=1e-5) -> None:
    np.testing.assert_allclose(got.spacing, want.spacing, atol=atol)
    np.testing.assert_allclose(got.origin, want.origin, atol=atol)
    np.testing.assert_allclose(got.direction, want.direction, atol=atol)


@pytest.mark.parametrize("direction", DIRECTIONS.values(), ids=DIRECTIONS.keys())
@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".mhd", ".mha", ".nrrd", ".nhdr"])
def test_file_round_trip(tmp_path, suffix, direction):
    array, geometry = _volume(), _geometry(direction)
    path = tmp_path / f"case{suffix}"
    write_volume(array, geometry, path)
    got, got_geometry = read_volume(path)
    assert got.dtype == np.float32 and got.shape == array.shape
    np.testing.assert_array_equal(got, array)
    _assert_same_geometry(got_geometry, geometry)
    shape, header_geometry = read_geometry(path)
    assert shape == array.shape
    _assert_same_geometry(header_geometry, geometry)


def test_mhd_writes_raw_beside(tmp_path):
    write_volume(_volume(), _geometry(), tmp_path / "a.mhd")
    assert (tmp_path / "a.raw").is_file()


@pytest.mark.parametrize("direction", [IDENTITY, FLIPPED, ROTATED_Z], ids=["identity", "flipped", "rotated"])
def test_dicom_series_round_trip(tmp_path, direction):
    array, geometry = _volume(), _geometry(direction)
    write_dicom_series(array, geometry, tmp_path / "case")
    got, got_geometry = read_volume(tmp_path / "case")
    np.testing.assert_array_equal(got, array)
    _assert_same_geometry(got_geometry, geometry, atol=1e-4)


@pytest.mark.parametrize("intercept, slope", [(-1024, 1), (-1024, 0.5), (0, 1)])
def test_dicom_rescale_reads_back_in_hu(tmp_path, intercept, slope):
    array = _volume(shape=(3, 4, 5))
    array[0, 0, :2] = (-1000, 1400)
    paths = write_dicom_series(array, _geometry(), tmp_path / "s", rescale_intercept=intercept,
                               rescale_slope=slope)
    # Pixel data ends the file: the stored int16 values are (HU - intercept) / slope.
    stored = np.frombuffer(paths[0].read_bytes()[-2 * 20:], dtype="<i2").reshape(4, 5)
    np.testing.assert_array_equal(stored, (array[0] - intercept) / slope)
    got, _ = read_volume(tmp_path / "s")
    np.testing.assert_array_equal(got, array)


def test_dicom_nested_without_extension_takes_largest_series(tmp_path, caplog):
    array, geometry = _volume(shape=(6, 5, 4)), _geometry(FLIPPED)
    series = tmp_path / "case1" / "1.000-study" / "2.000-CT"
    write_dicom_series(array, geometry, series, suffix="")
    write_dicom_series(_volume(shape=(2, 5, 4), seed=1), geometry, tmp_path / "case1" / "1.000-study" / "3.000-scout")
    assert all(p.suffix == "" for p in series.iterdir())
    with caplog.at_level(logging.INFO, logger="core.imageio"):
        got, got_geometry = read_volume(tmp_path / "case1")
    np.testing.assert_array_equal(got, array)
    _assert_same_geometry(got_geometry, geometry, atol=1e-4)
    assert "2 DICOM series" in caplog.text


def test_dicom_rejects_left_handed_direction(tmp_path):
    with pytest.raises(DataError, match="left-handed"):
        write_dicom_series(_volume(), _geometry((1, 0, 0, 0, 1, 0, 0, 0, -1)), tmp_path / "s")


def test_unreadable_inputs_raise_data_error_naming_them(tmp_path):
    corrupt = tmp_path / "bad.nii.gz"
    corrupt.write_bytes(b"not a volume")
    with pytest.raises(DataError, match="bad.nii.gz.*export the volume again"):
        read_volume(corrupt)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="No DICOM series found"):
        read_volume(tmp_path / "empty")
    with pytest.raises(DataError, match="missing.nrrd"):
        read_volume(tmp_path / "missing.nrrd")


# (voxel index z, y, x) -> world (x, y, z) mm for spacing (0.7, 0.8, 2.5) and origin (10.5, -20.25, 30).
WORLD_TABLE = [
    (IDENTITY, (0, 0, 0), (10.5, -20.25, 30.0)),
    (IDENTITY, (2, 3, 4), (13.3, -17.85, 35.0)),
    (FLIPPED, (2, 3, 4), (7.7, -22.65, 35.0)),
    (FLIPPED, (1, 4, 5), (7.0, -23.45, 32.5)),
    (ROTATED_Z, (2, 3, 4), (8.1, -17.45, 35.0)),
]


@pytest.mark.parametrize("direction, index_zyx, world_xyz", WORLD_TABLE)
def test_world_voxel_table(direction, index_zyx, world_xyz):
    geometry = _geometry(direction)
    np.testing.assert_allclose(voxel_to_world(np.array([index_zyx]), geometry), [world_xyz], atol=1e-9)
    np.testing.assert_allclose(world_to_voxel(np.array([world_xyz]), geometry), [index_zyx], atol=1e-9)


def test_world_to_voxel_finds_a_known_voxel_in_a_flipped_file(tmp_path):
    array = np.zeros((5, 6, 7), dtype=np.int16)
    array[3, 1, 5] = 1000
    write_volume(array, _geometry(FLIPPED), tmp_path / "flip.nii.gz")
    got, geometry = read_volume(tmp_path / "flip.nii.gz")
    world = (10.5 - 5 * 0.7, -20.25 - 1 * 0.8, 30.0 + 3 * 2.5)  # flipped x and y axes
    index = world_to_voxel(np.array([world]), geometry)
    np.testing.assert_allclose(index, [[3, 1, 5]], atol=1e-6)
    assert got[tuple(np.round(index[0]).astype(int))] == 1000


def _write_dataset(root):
    geometry = _geometry()
    write_volume(_volume(), geometry, root / "a.nii.gz")
    write_volume(_volume(), geometry, root / "b.mhd")
    write_volume(_volume(), geometry, root / "c.nrrd")
    write_dicom_series(_volume(), geometry, root / "d" / "study" / "series", suffix="")
    write_volume(_volume(), geometry, root / "masks" / "a.nii.gz")
    for name in ("clinical.csv", "notes.txt", "README.md", "meta.json", ".DS_Store", "._a.nii.gz", "LICENSE"):
        (root / name).write_bytes(b"x")
    (root / "__MACOSX").mkdir()
    (root / "__MACOSX" / "._a.nii.gz").write_bytes(b"x")
    (root / ".hidden").mkdir()
    (root / "empty").mkdir()


def test_find_volumes_ignores_what_is_not_an_image(tmp_path, caplog):
    _write_dataset(tmp_path)
    found = find_volumes(tmp_path)
    assert {k: v.name for k, v in found.items()} == {"a": "a.nii.gz", "b": "b.mhd", "c": "c.nrrd", "d": "d"}
    # Only the unexplained empty folder is worth a warning; masks/ is excluded, the rest is download litter.
    assert "Ignored 1 entries" in caplog.text and "empty" in caplog.text and "masks" not in caplog.text
    assert set(find_volumes(tmp_path / "masks")) == {"a"}


def test_find_volumes_duplicate_ids_raise(tmp_path):
    write_volume(_volume(), _geometry(), tmp_path / "a.nii")
    write_volume(_volume(), _geometry(), tmp_path / "a.nii.gz")
    with pytest.raises(DataError, match=r"a\.nii and a\.nii\.gz"):
        find_volumes(tmp_path)


@pytest.mark.parametrize("in_shape, out_shape", [((8, 10, 12), (4, 5, 6)), ((3, 4, 5), (6, 8, 10)), ((10, 12), (5, 6))])
def test_resize_shapes(in_shape, out_shape):
    array = np.random.default_rng(0).uniform(size=in_shape)
    out = resize(array, out_shape)
    assert out.shape == out_shape and out.dtype == np.float32
    assert array.min() - 1e-6 <= out.min() and out.max() <= array.max() + 1e-6


def test_resize_nearest_keeps_label_values():
    labels = np.zeros((6, 6, 6))
    labels[2:4, 2:4, 2:4] = 3
    out = resize(labels, (12, 12, 12), mode="nearest")
    assert set(np.unique(out)) == {0.0, 3.0} and (out == 3).sum() == 8 * 8


# --- damaged input stops with a DataError naming the file and the fix ------------------------

DAMAGED_VOLUMES = [  # (builder of a damaged file or DICOM folder, fragment of the DataError message)
    (lambda f: damaged.truncated(f, ".nii.gz"), r"scan\.nii\.gz: its compressed data is damaged or truncated"),
    (lambda f: damaged.truncated(f, ".nii"), r"scan\.nii: holds \d+ bytes .* needs 3712 \(truncated\)"),
    (lambda f: damaged.truncated(f, ".mha"), r"scan\.mha: holds \d+ bytes .* needs 3360 \(truncated\)"),
    (lambda f: damaged.truncated(f, ".nrrd"), r"scan\.nrrd: holds \d+ bytes .* \(truncated\)"),
    (damaged.truncated_raw, r"scan\.raw: holds 1000 bytes of voxel data but its header needs 3360"),
    (damaged.nrrd_gzip_truncated, r"scan\.nrrd: its compressed data is damaged or truncated"),
    (damaged.mha_zlib_truncated, r"scan\.mha: its compressed data is damaged or truncated"),
    (damaged.nifti_pair_header, r"separate \.img file .*convert it to a single \.nii\.gz"),
    (lambda f: damaged.with_values(f, ".nii.gz", np.nan), r"scan\.nii\.gz holds 1 NaN or infinite voxels"),
    (lambda f: damaged.with_values(f, ".nrrd", np.inf), r"scan\.nrrd holds 1 NaN or infinite voxels"),
    (lambda f: damaged.with_values(f, ".mha", -np.inf), r"scan\.mha holds 1 NaN or infinite voxels"),
    (damaged.dicom_missing_slice, r"between slices 0004\.dcm and 0006\.dcm is 4\.000 mm .* missing slice"),
    (damaged.dicom_truncated_slice, r"0005\.dcm belongs to DICOM series .* cannot be read \(truncated"),
    (damaged.dicom_duplicate_slice, r"slices 0005\.dcm and 0005b\.dcm share the position"),
    (lambda f: damaged.mha_header(f, "/etc/passwd"), r"'/etc/passwd' is an absolute path"),
    (lambda f: damaged.nrrd_header(f, "data file: ../../etc/passwd"), r"'\.\./\.\./etc/passwd' .*climbs out"),
    (lambda f: damaged.mha_header(f, "LIST"), r"'LIST' is a LIST, a pattern"),
    (lambda f: damaged.mhd_pair(f, "other.raw"), r"other\.raw: its data file is missing"),
]


@pytest.mark.parametrize("build, message", DAMAGED_VOLUMES)
def test_damaged_volumes_raise_data_error(tmp_path, build, message):
    path = build(tmp_path)
    with pytest.raises(DataError, match=message):
        read_volume(path)


@pytest.mark.parametrize("build, message", [
    (lambda f: damaged.truncated_image(f, ".png"), r"picture\.png: is damaged or truncated"),
    (lambda f: damaged.truncated_image(f, ".jpg"), r"picture\.jpg: is damaged or truncated"),
    (damaged.gif_named_png, r"fake\.png: holds a GIF image, not PNG or JPEG"),
])
def test_damaged_images_raise_data_error(tmp_path, build, message):
    with pytest.raises(DataError, match=message):
        read_image_2d(build(tmp_path))


def test_limits_refuse_before_decoding(tmp_path):
    with pytest.raises(DataError, match=r"1024x1024x1024 = 1073741824 voxels is over the limit of 1000000"):
        read_volume(damaged.nifti_bomb(tmp_path), max_voxels=10 ** 6)
    with pytest.raises(DataError, match=r"12000x12000 = 144000000 pixels is over the limit"):
        read_image_2d(damaged.huge_png(tmp_path), max_pixels=64_000_000)
    with pytest.raises(DataError, match=r"10 slices of 12x14 = 1680 voxels is over the limit of 1000"):
        read_volume(damaged.dicom_series(tmp_path)[0], max_voxels=1000)


def test_a_data_file_in_the_folder_is_read_and_one_elsewhere_refused(tmp_path):
    header = damaged.mhd_pair(tmp_path / "a", "scan.raw")
    assert read_volume(header)[0].shape == damaged.SHAPE
    (tmp_path / "secret.raw").write_bytes(b"\0" * 4000)
    linked = damaged.mhd_pair(tmp_path / "b", "link.raw")
    (tmp_path / "b" / "link.raw").symlink_to(tmp_path / "secret.raw")
    with pytest.raises(DataError, match="leads outside the folder"):
        check_input(linked, root=tmp_path / "b")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "zero.raw").symlink_to("/dev/zero")  # a device behind a harmless name
    with pytest.raises(DataError, match="its data file is not a regular file"):
        read_volume(damaged.mha_header(tmp_path / "c", "zero.raw"))


def test_itk_warnings_that_mean_damage_become_data_errors(tmp_path, caplog):
    from core.itklog import refuse_damage
    with pytest.raises(DataError, match="x.jpg is damaged or incomplete.*Premature end of JPEG file"):
        refuse_damage(Path("x.jpg"), "Premature end of JPEG file\n")
    with caplog.at_level(logging.WARNING, logger="core.itklog"):
        refuse_damage(Path("x.nii"), "some harmless note\n")
    assert "harmless note" in caplog.text


def _as_dicom_missing_a_slice(root, case):
    (root / f"{case}.nii.gz").unlink()
    damaged.dicom_missing_slice(root / case)  # root/<case>/series/, slice 5 gone


@pytest.mark.parametrize("damage, message", [
    (lambda root: damaged.cut(root / "R03.nii.gz"), r"R03\.nii\.gz: its compressed data is damaged or truncated"),
    (lambda root: write_volume(np.full((6, 8, 8), np.nan, np.float32), damaged.GEOMETRY, root / "R03.nii.gz"),
     r"R03\.nii\.gz holds 384 NaN or infinite voxels"),
    (lambda root: _as_dicom_missing_a_slice(root, "R03"), r"R03.*a missing slice"),
])
def test_training_data_preparation_stops_on_damaged_input_before_caching(tmp_path, damage, message):
    import pandas as pd

    from core.config import DataConfig
    from core.data.prepared import DataOptions
    from core.tasks import get_task, prepare

    root = tmp_path / "data"
    root.mkdir()
    labels = {f"R{i:02d}": "Mutant" if i < 4 else "Wildtype" for i in range(10)}
    for case in labels:
        write_volume(damaged.ct((6, 8, 8)), damaged.GEOMETRY, root / f"{case}.nii.gz")
    pd.DataFrame({"Case ID": list(labels), "EGFR mutation status": list(labels.values())}).to_csv(
        root / "clinical.csv", index=False)
    damage(root)
    with pytest.raises(DataError, match=message):
        prepare(get_task("egfr"), DataConfig(shape=(4, 4, 4)), DataOptions(root=root, cache_dir=tmp_path / "cache"),
                seed=0)
    assert not list((tmp_path / "cache").rglob("*.npy"))  # nothing half-built was cached
