"""LUNA16: world-to-voxel cutouts, padding, 1:5 sampling, reader errors, luna3d shapes, cache, sweep."""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from core.config import DataConfig, ModelConfig, TrialConfig
from core.data.phantoms import luna16 as phantom
from core.data.phantoms.luna16 import luna16_phantom
from core.data.prepared import DataOptions
from core.data.sampling import NegativeRatioSampler, sampler_for
from core.errors import DataError
from core.imageio import Geometry, read_volume, voxel_to_world, world_to_voxel, write_volume
from core.models import build_model
from core.tasks import prepare
from core.tasks.luna16 import TASK, cutout, read_luna16_manifest, select_pool, window
from search_spaces import get_space

SPACE = get_space("luna16")
FLIPPED = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)
Z_FLIPPED = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
SHAPE = (12, 20, 20)  # small test volumes, (z, y, x)
COLUMNS = ["seriesuid", "coordX", "coordY", "coordZ"]


def _series(root: Path, uid: str, *, nodule=(6, 9, 11), direction=FLIPPED,
            subset="subset0") -> tuple[np.ndarray, Geometry]:
    """Write a -900 HU series with a +100 HU blob peaking at +500 on voxel ``nodule`` (z, y, x).

    Returns the nodule's world (x, y, z) mm through the anisotropic, flipped geometry, and the geometry.
    """
    geometry = Geometry(spacing=(0.7, 0.8, 2.5), origin=(-101.5, 87.25, -310.0), direction=direction)
    volume = np.full(SHAPE, -900, np.int16)
    z, y, x = nodule
    volume[z - 1:z + 2, y - 2:y + 3, x - 2:x + 3] = 100
    volume[z, y, x] = 500
    write_volume(volume, geometry, root / subset / f"{uid}.mhd")
    return voxel_to_world(np.array(nodule, float), geometry), geometry


def _layout(root: Path, *, n_pos: int = 3, n_neg: int = 3, candidates: str = "candidates_V2.csv") -> Path:
    """A LUNA16 folder: n_pos series with a nodule candidate (class 1) and a lung candidate each,
    n_neg series with lung candidates only; annotations.csv for the nodules; a stray file."""
    rows, notes = [], []
    for i in range(n_pos + n_neg):
        uid = f"1.3.6.1.4.1.14519.5.2.1.6279.6001.{i:03d}"
        world, geometry = _series(root, uid, direction=FLIPPED if i % 2 else Z_FLIPPED, subset=f"subset{i % 2}")
        lung = voxel_to_world(np.array([3.0, 3.0, 3.0]), geometry)
        if i < n_pos:
            rows.append((uid, *world, 1))
            notes.append((uid, *world, 4.0))
        rows += [(uid, *lung, 0), (uid, *(lung + 1.0), 0)]
    pd.DataFrame(rows, columns=[*COLUMNS, "class"]).to_csv(root / candidates, index=False)
    pd.DataFrame(notes, columns=[*COLUMNS, "diameter_mm"]).to_csv(root / "annotations.csv", index=False)
    (root / "subset0" / "notes.txt").write_text("not a volume")
    return root


@pytest.mark.parametrize("direction", [FLIPPED, Z_FLIPPED], ids=["xy-flipped", "z-flipped"])
def test_world_coordinates_land_on_the_nodule_through_a_flipped_anisotropic_geometry(tmp_path, direction):
    world, _ = _series(tmp_path, "s1", nodule=(5, 12, 7), direction=direction)
    volume, geometry = read_volume(tmp_path / "subset0" / "s1.mhd")
    centre = world_to_voxel(world, geometry)
    np.testing.assert_allclose(centre, (5, 12, 7), atol=1e-6)
    naive = (world - np.array(geometry.origin)) / np.array(geometry.spacing)  # identity assumed: wrong
    assert not np.allclose(naive[::-1], (5, 12, 7))
    cut = window(cutout(volume, centre, (8, 12, 12), fill=-1000.0), (-1000.0, 1000.0))
    assert cut.shape == (8, 12, 12)
    assert np.unravel_index(np.argmax(cut), cut.shape) == (4, 6, 6)
    assert cut[4, 6, 6] == pytest.approx(0.75)  # +500 HU in a [-1000, 1000] window


def test_manifest_centres_and_diameters(tmp_path):
    manifest = read_luna16_manifest(_layout(tmp_path))
    assert list(manifest.columns[:4]) == ["id", "group", "label", "image"]
    assert {"center_z", "center_y", "center_x", "diameter_mm", "coordX"} <= set(manifest.columns)
    positives = manifest[manifest["label"] == 1]
    np.testing.assert_allclose(positives[["center_z", "center_y", "center_x"]], [(6, 9, 11)] * 3, atol=1e-6)
    assert (positives["diameter_mm"] == 4.0).all()
    assert manifest.loc[manifest["label"] == 0, "diameter_mm"].isna().all()
    assert manifest["id"].is_unique and len(manifest) == 3 + 2 * 6


def test_border_candidate_is_padded_with_the_window_minimum():
    volume = np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)
    cut = cutout(volume, np.array([1.2, 0.4, 18.6]), (6, 8, 8), fill=-1000.0)
    assert cut.shape == (6, 8, 8)
    # centre voxel (1, 0, 19) sits at (3, 4, 4): 2 slices before z=0, 4 rows before y=0, 3 columns past x=19
    assert np.all(cut[:2] == -1000.0) and np.all(cut[:, :4] == -1000.0) and np.all(cut[:, :, 5:] == -1000.0)
    np.testing.assert_array_equal(cut[2:, 4:, :5], volume[0:4, 0:4, 15:20])
    assert cut[3, 4, 4] == volume[1, 0, 19]
    assert np.all(window(cut, (-1000.0, 400.0))[:2] == 0.0)
    far = cutout(volume, np.array([50.0, 50.0, 50.0]), (4, 4, 4), fill=-1000.0)
    assert np.all(far == -1000.0)


def test_one_to_five_sampling_draws_fresh_negatives_each_epoch():
    labels = np.array([1] * 12 + [0] * 240)  # a cached pool: 20 negatives per positive
    factory = sampler_for(TrialConfig.from_dict(SPACE.fixed).data)
    sampler = factory(labels, 0)
    assert isinstance(sampler, NegativeRatioSampler) and len(sampler) == 12 * 6
    epochs = [np.array(list(sampler)) for _ in range(3)]
    negatives = []
    for order in epochs:
        assert sorted(order[labels[order] == 1]) == list(range(12))  # every positive, once
        drawn = order[labels[order] == 0]
        assert len(drawn) == 60 and len(set(drawn)) == 60
        negatives.append(set(drawn))
    assert negatives[0] != negatives[1] and negatives[1] != negatives[2]


def test_pool_subsamples_train_negatives_only():
    splits = pd.DataFrame({"label": [1] * 6 + [0] * 60, "split": ["train"] * 4 + ["val", "test"]
                           + ["train"] * 40 + ["val"] * 10 + ["test"] * 10})
    pool = select_pool(splits, ratio=2, seed=7)
    counts = pool.groupby(["split", "label"]).size().to_dict()
    assert counts == {("train", 0): 8, ("train", 1): 4, ("val", 0): 10, ("val", 1): 1,
                      ("test", 0): 10, ("test", 1): 1}
    pd.testing.assert_frame_equal(pool, select_pool(splits, ratio=2, seed=7))
    assert len(select_pool(splits, ratio=0, seed=7)) == 66


def test_candidates_v2_preferred_over_v1(tmp_path, caplog):
    root = _layout(tmp_path)
    v1 = pd.read_csv(root / "candidates_V2.csv").assign(**{"class": 0})
    v1.loc[0, "class"] = 1
    v1.to_csv(root / "candidates.csv", index=False)
    with caplog.at_level(logging.INFO, logger="core.tasks.luna16"):
        manifest = read_luna16_manifest(root)
    assert "candidates_V2.csv (preferred over candidates.csv)" in caplog.text
    assert manifest.attrs["candidates_csv"].endswith("candidates_V2.csv") and manifest["label"].sum() == 3
    (root / "candidates_V2.csv").unlink()
    manifest = read_luna16_manifest(root)
    assert manifest.attrs["candidates_csv"].endswith("candidates.csv") and manifest["label"].sum() == 1


def test_one_class_only_is_an_error(tmp_path):
    root = _layout(tmp_path)
    pd.read_csv(root / "candidates_V2.csv").assign(**{"class": 0}).to_csv(root / "negatives.csv", index=False)
    with pytest.raises(DataError, match="Only class 0 is left.*both 0 and 1"):
        read_luna16_manifest(root, candidates=root / "negatives.csv")


def test_candidates_of_missing_series_are_counted_then_an_error_when_none_is_left(tmp_path, caplog):
    root = _layout(tmp_path)
    table = pd.read_csv(root / "candidates_V2.csv")
    absent = pd.DataFrame([("9.9.9", 1.0, 2.0, 3.0, 1), ("9.9.9", 1.0, 2.0, 3.0, 0), ("8.8", 0, 0, 0, 0)],
                          columns=table.columns)
    pd.concat([table, absent]).to_csv(root / "candidates_V2.csv", index=False)
    manifest = read_luna16_manifest(root)
    assert len(manifest) == len(table)
    assert "Skipped 3 candidates of 2 series not found" in caplog.text and "8.8, 9.9.9" in caplog.text
    absent.to_csv(root / "candidates_V2.csv", index=False)
    with pytest.raises(DataError, match="None of the 3 candidates.*has its series on disk"):
        read_luna16_manifest(root)


@pytest.mark.parametrize("name, drop", [("candidates_V2.csv", "class"), ("annotations.csv", "diameter_mm"),
                                        ("candidates_V2.csv", "coordZ")])
def test_missing_column_lists_the_columns(tmp_path, name, drop):
    root = _layout(tmp_path)
    table = pd.read_csv(root / name).drop(columns=drop)
    table.to_csv(root / name, index=False)
    present = ", ".join(repr(c) for c in table.columns)
    with pytest.raises(DataError, match=rf"{name} has no column '{drop}'; its columns are \[{present}\]"):
        read_luna16_manifest(root)


def test_layout_errors_name_the_fix(tmp_path):
    with pytest.raises(DataError, match="does not exist or is not a folder"):
        read_luna16_manifest(tmp_path / "nowhere")
    (tmp_path / "subset0.zip").write_bytes(b"PK")
    with pytest.raises(DataError, match="No subset\\* folder.*Unzip subset0.zip"):
        read_luna16_manifest(tmp_path)
    (tmp_path / "subset0").mkdir()
    (tmp_path / "subset0" / "a.raw").write_bytes(b"")
    with pytest.raises(DataError, match="No .mhd file in subset0"):
        read_luna16_manifest(tmp_path)
    root = _layout(tmp_path / "data")
    (root / "candidates_V2.csv").unlink()
    with pytest.raises(DataError, match="No candidates file.*candidates_V2.csv or candidates.csv"):
        read_luna16_manifest(root)


def test_bad_class_values_and_too_small_splits(tmp_path):
    root = _layout(tmp_path, n_pos=2)
    with pytest.raises(DataError, match="patient of class 1"):
        prepare(TASK, DataConfig(task="luna16", shape=(4, 4, 4)), DataOptions(root=root, cache_dir=tmp_path),
                seed=0)
    table = pd.read_csv(root / "candidates_V2.csv", dtype={"class": str})
    table.loc[0, "class"] = "maybe"
    table.to_csv(root / "candidates_V2.csv", index=False)
    with pytest.raises(DataError, match="'class'.*must be 0 or 1.*maybe"):
        read_luna16_manifest(root)


KERNELS = SPACE.search["model/kernel_size"].values
POOLS = SPACE.search["model/pool_size"].values


@pytest.mark.parametrize("kernel,pool", list(itertools.product(KERNELS, POOLS)))
@pytest.mark.parametrize("shape", [SPACE.fixed["data/shape"], (8, 12, 12)])
def test_luna3d_output_shape_for_every_searched_kernel_and_pool(kernel, pool, shape):
    cfg = TrialConfig.from_dict({**SPACE.fixed, "model/kernel_size": kernel, "model/pool_size": pool}).model
    net = build_model(cfg, spatial_shape=shape, in_channels=1, out_channels=2)
    assert isinstance(net.tail, torch.nn.BatchNorm3d)
    assert net(torch.rand(2, 1, *shape)).shape == (2, 2)


@pytest.mark.parametrize("kernel,pool", [(2, 3), (4, 4), (7, 2)])
def test_luna3d_adapts_to_inputs_smaller_than_its_pooling(kernel, pool):
    cfg = ModelConfig(name="luna3d", channels=(4, 4, 4, 4), kernel_size=kernel, pool_size=pool)
    net = build_model(cfg, spatial_shape=(3, 5, 5), in_channels=1, out_channels=2)
    assert net(torch.rand(2, 1, 3, 5, 5)).shape == (2, 2)


def test_luna3d_channels_last_gives_the_default_layouts_outputs():
    torch.manual_seed(0)
    cfg = ModelConfig(name="luna3d", channels=(4, 8), kernel_size=3, pool_size=2)
    net = build_model(cfg, spatial_shape=(8, 12, 12), in_channels=1, out_channels=2).eval()
    conv = net.body[0].layers[2].weight  # 4 -> 4 channels: the layouts differ
    assert conv.is_contiguous(memory_format=torch.channels_last_3d) and not conv.is_contiguous()
    x = torch.rand(3, 1, 8, 12, 12)
    fast = net(x)
    plain = build_model(cfg, spatial_shape=(8, 12, 12), in_channels=1, out_channels=2).use_channels_last(False)
    plain.load_state_dict(net.state_dict())
    assert plain.eval().body[0].layers[2].weight.is_contiguous()
    torch.testing.assert_close(plain(x), fast, rtol=1e-4, atol=1e-5)


def test_luna3d_seed_head_matches_the_seed_flattened_size():
    net = build_model(ModelConfig(name="luna3d", channels=(8, 16, 32, 64), kernel_size=3, pool_size=2),
                      spatial_shape=(32, 48, 48), in_channels=1, out_channels=2)
    assert net.head[-1].in_features == 64 * 2 * 3 * 3  # the seed's 1152


def test_prepare_tiny_phantom_shapes_pool_and_cache_hit(tmp_path, monkeypatch, caplog):
    task = dataclasses.replace(TASK, phantom=lambda cache_dir, **kw: luna16_phantom(cache_dir, n_series=8, **kw))
    data_cfg = DataConfig(task="luna16", shape=(8, 16, 16), negative_pool_ratio=3.0)
    options = DataOptions(cache_dir=tmp_path, phantom_difficulty="easy")  # a plain blob at the centre
    with caplog.at_level(logging.INFO):
        first = prepare(task, data_cfg, options, seed=42)
        assert "cache miss" in caplog.text and "candidates_V2.csv" in caplog.text
        caplog.clear()
        second = prepare(task, data_cfg, options, seed=42)
        assert "cache hit" in caplog.text and "cache miss" not in caplog.text
    pool = first.splits
    assert pool.groupby("group")["split"].nunique().max() == 1
    for split in ("train", "val", "test"):
        x, y = first.arrays[f"{split}/x"], first.arrays[f"{split}/y"]
        chosen = pool[pool["split"] == split]
        assert x.shape == (len(chosen), 1, 8, 16, 16) and x.dtype == np.float16 and 0 <= x.min() and x.max() <= 1
        np.testing.assert_array_equal(y, chosen["label"])
        assert (y == 1).sum() >= 1
        if split == "train":  # val and test keep every candidate of their series
            assert (y == 0).sum() <= 3 * (y == 1).sum()
        else:
            assert len(y) == int((first.manifest["split"] == split).sum())
        np.testing.assert_array_equal(x, second.arrays[f"{split}/x"])
    assert first.info["n_pool"] == len(pool) < first.info["n_candidates"]
    centre = np.asarray(first.arrays["train/x"])[:, 0, 4, 8, 8]
    labels = np.asarray(first.arrays["train/y"])
    assert centre[labels == 1].mean() > centre[labels == 0].mean() + 0.2  # nodules sit at the centre
    other = prepare(task, DataConfig(task="luna16", shape=(8, 12, 12)), options, seed=42)
    assert other.info["cache_key"] != first.info["cache_key"]


def _content(folder: Path) -> str:
    """sha256 of the phantom's volumes, headers and CSVs (names and bytes)."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix in (".csv", ".raw", ".mhd"):
            digest.update(path.relative_to(folder).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


# The easy phantom (n_series=6, seed=1) as it was written before the hard one existed.
EASY_CONTENT = "8441926d1c7313ddfc4849972536eebe7fbab3e1f882be84e59b0ef7a83bb9ab"


@pytest.fixture(scope="module")
def hard_phantom(tmp_path_factory) -> Path:
    """The hard phantom of 6 series (seed 1), generated once for this module's tests."""
    return luna16_phantom(tmp_path_factory.mktemp("hard"), n_series=6, seed=1, difficulty="hard")


def test_easy_phantom_is_unchanged_and_hard_differs(tmp_path, hard_phantom):
    easy, hard = luna16_phantom(tmp_path, n_series=6, seed=1, difficulty="easy"), hard_phantom
    assert _content(easy) == EASY_CONTENT
    assert easy.name == "luna16-v3-easy-n6-s1" and hard.name == "luna16-hard-v4-hard-n6-s1"
    assert _content(hard) != EASY_CONTENT
    assert not (easy / "annotations_excluded.csv").exists()
    names = lambda folder: sorted(p.relative_to(folder).parts[0] for p in folder.iterdir())  # noqa: E731
    assert names(hard) == sorted([*names(easy), "annotations_excluded.csv"])
    for folder in (easy, hard):  # the same reader takes both
        manifest = read_luna16_manifest(folder)
        assert manifest["group"].nunique() == 6 and set(manifest["label"]) == {0, 1}
    excluded = pd.read_csv(hard / "annotations_excluded.csv")
    assert list(excluded.columns) == [*COLUMNS, "diameter_mm"]
    annotated = pd.read_csv(hard / "annotations.csv")["diameter_mm"]
    assert annotated.between(3.5, 15.5).all() and annotated.median() < 9.0  # small, as in LUNA16


def test_default_sizes_easy_24_series_hard_44(tmp_path, monkeypatch):
    """Hard default: more series than easy, so val and test each get several nodule series."""
    made = {}
    monkeypatch.setattr(phantom, "generate_once", lambda folder, fill, *, meta: made.setdefault(
        meta["difficulty"], (folder.name, meta["n_series"])))
    luna16_phantom(tmp_path, difficulty="easy")
    luna16_phantom(tmp_path, difficulty="hard")
    assert made == {"easy": ("luna16-v3-easy-n24-s0", 24), "hard": ("luna16-hard-v4-hard-n44-s0", 44)}


def test_hard_series_carry_up_to_six_nodules():
    """A quarter of the series (at least 3) hold no nodule, the rest 1-6, about 3.5 on average."""
    counts = phantom._counts(np.random.default_rng(0), 400, most=phantom.HARD_MOST_NODULES)
    assert (counts == 0).sum() == 100 and counts.max() == 6
    assert 3.2 < counts[counts > 0].mean() < 3.8


def test_hard_phantom_positives_are_off_centre_and_negatives_look_alike(hard_phantom):
    """Hard candidates: positives off the nodule's centre, negatives on bright look-alikes."""
    folder = hard_phantom
    manifest = read_luna16_manifest(folder)
    notes = pd.read_csv(folder / "annotations.csv", dtype={"seriesuid": str})
    positives = manifest[manifest["label"] == 1]
    gaps = [np.linalg.norm(notes.loc[notes["seriesuid"] == row.group, COLUMNS[1:]].to_numpy()
                           - row[COLUMNS[1:]].to_numpy(float), axis=1).min() for _, row in positives.iterrows()]
    assert np.max(gaps) > 0.5 and np.all(np.array(gaps) <= positives["diameter_mm"] / 2)
    centre_hu = []
    for image, rows in manifest[manifest["label"] == 0].groupby("image"):
        volume, _ = read_volume(Path(image))
        index = np.rint(rows[["center_z", "center_y", "center_x"]].to_numpy()).astype(int)
        centre_hu += list(volume[tuple(index.T)])
    assert np.mean(np.array(centre_hu) > -400) > 0.3  # many negatives sit on something bright


def test_phantom_layout_and_reuse(tmp_path):
    folder = luna16_phantom(tmp_path, n_series=6, seed=1)
    assert luna16_phantom(tmp_path, n_series=6, seed=1) == folder
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == ["subset0", "subset1"]
    series = sorted(folder.glob("subset*/*.mhd"))
    assert len(series) == 6 and all(p.with_suffix(".raw").is_file() for p in series)
    table = pd.read_csv(folder / "candidates_V2.csv", dtype={"seriesuid": str})
    assert list(table.columns) == [*COLUMNS, "class"] and set(table["class"]) == {0, 1}
    assert list(pd.read_csv(folder / "annotations.csv").columns) == [*COLUMNS, "diameter_mm"]
    directions = {read_volume(p)[1].direction for p in series}
    assert len(directions) > 1
    marker = json.loads((folder / ".complete.json").read_text(encoding="utf-8"))
    assert marker["n_series"] == 6


@pytest.mark.slow
def test_two_trial_sweep_end_to_end(ray_local, tmp_path):
    from tuning.pipeline import RunOptions, run_pipeline
    from tuning.search.settings import SweepSettings

    root = luna16_phantom(tmp_path / "phantoms", n_series=8, seed=2)
    options = RunOptions(
        space="luna16", data=DataOptions(root=root, cache_dir=tmp_path / "cache"),
        sweep=SweepSettings(num_samples=2, max_epochs=1, max_concurrent=2, seed=1),
        overrides={"data/shape": (8, 16, 16), "data/negative_pool_ratio": 5.0},
        name="tiny", results_dir=tmp_path / "results", top_k=1, retrain_seeds=1, wandb=False)
    payload = run_pipeline(options)
    folder = options.results_path()
    assert payload["space"] == "luna16" and payload["trials"]["total"] == 2
    assert payload["chosen_config"]["model/name"] == "luna3d"
    auroc = payload["test"]["auroc"]  # resampled by series: a tiny test split may leave it undefined
    assert (auroc["ci_low"] <= auroc["value"] <= auroc["ci_high"]
            or (auroc["method"].startswith("undefined") and min(auroc["n_groups"].values()) < 2))
    splits = pd.read_csv(folder / "splits.csv")
    assert splits.groupby("group")["split"].nunique().max() == 1 and "center_z" in splits.columns
    cpm = payload["froc"]["cpm"]  # the challenge's metric over the test scans, beside AUROC
    assert 0.0 <= cpm["value"] <= 1.0 and cpm["unit"] == "series"
    assert payload["froc"]["n_scans"] == splits.loc[splits["split"] == "test", "group"].nunique()
    assert 0.0 < payload["test_prevalence"] < 0.5
    assert not splits["in_pool"].all()  # unpooled train negatives are listed too
    assert splits.loc[splits["split"] != "train", "in_pool"].all()
    assert "CPM (FROC)" in (folder / "report.md").read_text(encoding="utf-8")
