"""2D segmentation: the image reader, mask encodings, stem matching, UNet, loss, overlays, a sweep."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from core.config import DataConfig, LossConfig, ModelConfig
from core.data.phantoms.segmentation import segmentation_phantom
from core.data.prepared import DataOptions
from core.errors import ConfigError, DataError
from core.imageio import read_image_2d, resize_image_2d, write_image_2d
from core.losses import build_loss
from core.models import build_model
from core.tasks import prepare
from core.tasks.segmentation import TASK, load_pair, read_mask, read_segmentation_manifest, split_segmentation

GREY = (np.arange(12 * 16).reshape(12, 16) % 256).astype(np.uint8)
RGB = np.stack([GREY, 255 - GREY, GREY // 2], axis=-1)
LUMA = 0.299 * RGB[..., 0] + 0.587 * RGB[..., 1] + 0.114 * RGB[..., 2]


def _square_mask() -> np.ndarray:
    mask = np.zeros((12, 16), dtype=bool)
    mask[3:9, 4:12] = True
    return mask


@pytest.mark.parametrize("suffix,array,want,tolerance", [
    (".png", GREY, GREY, 0.0), (".png", RGB, LUMA, 1e-3),
    (".jpg", GREY, GREY, 8.0), (".jpeg", RGB, LUMA, 8.0)],  # JPEG is lossy: mean error, 0-255 units
    ids=["grey-png", "rgb-png", "grey-jpg", "rgb-jpeg"])
def test_read_image_2d_gives_grey_float_hw(tmp_path, suffix, array, want, tolerance):
    write_image_2d(array, tmp_path / f"a{suffix}")
    got = read_image_2d(tmp_path / f"a{suffix}")
    assert got.dtype == np.float32 and got.shape == (12, 16)
    assert np.abs(got - want).mean() <= tolerance


def test_unreadable_image_names_the_file(tmp_path):
    (tmp_path / "broken.png").write_text("not a png")
    with pytest.raises(DataError, match="broken.png"):
        read_image_2d(tmp_path / "broken.png")


def test_resize_image_2d_shrinks_without_aliasing():
    stripes = np.tile([0.0, 1.0], (64, 32)).astype(np.float32)  # 1-pixel stripes average to 0.5
    small = resize_image_2d(stripes, (8, 8))
    assert small.shape == (8, 8) and np.allclose(small, 0.5, atol=0.02)


@pytest.mark.parametrize("encoding", ["0-255", "0-1", "rgb", "rgb-dim"])
def test_every_mask_encoding_reads_as_the_same_binary_mask(tmp_path, encoding):
    mask = _square_mask()
    arrays = {"0-255": mask * np.uint8(255), "0-1": mask.astype(np.uint8),
              "rgb": np.stack([mask * np.uint8(255), mask * np.uint8(0), mask * np.uint8(0)], -1),
              "rgb-dim": np.stack([mask * np.uint8(0), mask * np.uint8(0), mask * np.uint8(1)], -1)}
    write_image_2d(arrays[encoding], tmp_path / "m.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), mask)
    write_image_2d(GREY, tmp_path / "i.png")
    _, y = load_pair(tmp_path / "i.png", tmp_path / "m.png", shape=(12, 16))
    assert y.dtype == np.uint8
    np.testing.assert_array_equal(y, mask.astype(np.uint8))


def _dataset(root, images: dict[str, np.ndarray], masks: dict[str, np.ndarray]):
    for name, array in images.items():
        write_image_2d(array, root / "images" / name)
    for name, array in masks.items():
        write_image_2d(array, root / "masks" / name)
    return root


def test_pairs_match_by_stem_and_unpaired_files_are_counted(tmp_path, caplog):
    mask, empty = _square_mask().astype(np.uint8) * 255, np.zeros((12, 16), np.uint8)
    root = _dataset(tmp_path, {"a.png": GREY, "b.jpg": GREY, "c.jpeg": RGB, "lonely.png": GREY},
                    {"a.png": mask, "b.png": empty, "c.png": mask, "orphan1.png": mask,
                     "orphan2.png": mask})
    for litter in ("images/.DS_Store", "images/Thumbs.db", "masks/._a.png"):
        (root / litter).write_bytes(b"\0")
    (root / "images" / "notes.txt").write_text("hello")
    with caplog.at_level(logging.WARNING):
        manifest = read_segmentation_manifest(root)
    assert list(manifest["id"]) == ["a", "b", "c"]
    assert list(manifest["label"]) == [1, 0, 1]
    assert (manifest["group"] == manifest["id"]).all()
    text = caplog.text
    assert "1 images" in text and "lonely" in text
    assert "2 masks" in text and "orphan1" in text
    assert "notes.txt" in text and "Thumbs.db" not in text and "DS_Store" not in text


@pytest.mark.parametrize("layout,message", [
    ({"images": True, "masks": False}, "masks/"),
    ({"images": False, "masks": True}, "images/"),
    ({"images": True, "masks": True}, "No PNG/JPEG image"),
])
def test_missing_or_empty_folders_raise(tmp_path, layout, message):
    for name, present in layout.items():
        if present:
            (tmp_path / name).mkdir()
    if layout == {"images": True, "masks": True}:
        write_image_2d(GREY, tmp_path / "masks" / "a.png")
    with pytest.raises(DataError, match=message):
        read_segmentation_manifest(tmp_path)


def test_no_pair_left_raises_and_duplicate_stems_raise(tmp_path):
    root = _dataset(tmp_path / "a", {"x.png": GREY}, {"y.png": GREY})
    with pytest.raises(DataError, match="same name"):
        read_segmentation_manifest(root)
    root = _dataset(tmp_path / "b", {"x.png": GREY, "x.jpg": GREY}, {"x.png": GREY})
    with pytest.raises(DataError, match="Two files named 'x'"):
        read_segmentation_manifest(root)


def test_mask_of_another_size_is_resized_with_a_warning(tmp_path, caplog):
    image = np.zeros((40, 60), np.uint8)
    mask = np.zeros((20, 30), np.uint8)
    mask[:, 15:] = 255  # right half
    write_image_2d(image, tmp_path / "i.png")
    write_image_2d(mask, tmp_path / "small_mask.png")
    with caplog.at_level(logging.WARNING):
        x, y = load_pair(tmp_path / "i.png", tmp_path / "small_mask.png", shape=(16, 16))
    assert "small_mask.png" in caplog.text
    assert x.shape == y.shape == (16, 16)
    assert y[:, 8:].all() and not y[:, :8].any()


def test_split_falls_back_to_object_size_when_every_mask_has_foreground():
    import pandas as pd

    ids = [f"c{i:02d}" for i in range(20)]
    manifest = pd.DataFrame({"id": ids, "group": ids, "label": 1,
                             "foreground": np.linspace(0.01, 0.2, 20)})
    out = split_segmentation(manifest, fractions=(0.6, 0.2, 0.2), seed=1)
    assert list(out["label"]) == [1] * 20
    assert out["split"].value_counts().to_dict() == {"train": 12, "val": 4, "test": 4}


@pytest.fixture(scope="module")
def tiny_seg(tmp_path_factory):
    return segmentation_phantom(tmp_path_factory.mktemp("phantoms"), n_images=30, seed=5)


def _contrast(image: np.ndarray, mask: np.ndarray) -> float:
    """Mean brightness inside the mask minus outside it, in units of the image's spread."""
    return float((image[mask].mean() - image[~mask].mean()) / image.std())


def test_easy_phantom_keeps_its_masks_and_hard_lesions_are_fainter(tmp_path):
    easy = segmentation_phantom(tmp_path, n_images=12, seed=3, difficulty="easy")
    hard = segmentation_phantom(tmp_path, n_images=12, seed=3, difficulty="hard")
    stems = [f"lesion_{i:04d}" for i in range(1, 13)]
    assert sorted(p.stem for p in (easy / "images").glob("lesion_*")) == stems
    assert sorted(p.name for p in (easy / "images").glob("*.jpg")) == ["lesion_0003.jpg", "lesion_0008.jpg"]
    easy_masks = [read_mask(easy / "masks" / f"{s}.png") for s in stems]
    np.testing.assert_allclose([m.mean() for m in easy_masks],  # as first released, per seed
                               [0.0, 0.1057, 0.0, 0.0, 0.1481, 0.0337, 0.0854, 0.0656, 0.0552, 0.0596,
                                0.129, 0.0677], atol=1e-4)
    contrasts = {"easy": [], "hard": []}
    for name, root in (("easy", easy), ("hard", hard)):
        for stem in stems:
            mask = read_mask(root / "masks" / f"{stem}.png")
            image = read_image_2d(next((root / "images").glob(f"{stem}.*")))
            if mask.any():
                contrasts[name].append(_contrast(image, mask))
    assert len(contrasts["hard"]) >= 8
    assert np.median(contrasts["hard"]) < 0.6 * np.median(contrasts["easy"])


def test_prepare_segmentation_arrays_and_cache(tiny_seg, tmp_path, caplog):
    cfg = DataConfig(task="segmentation", shape=(32, 32), split=(0.6, 0.2, 0.2))
    options = DataOptions(root=tiny_seg, cache_dir=tmp_path)
    data = prepare(TASK, cfg, options, seed=0)
    sizes = {name: len(data.arrays[f"{name}/x"]) for name in ("train", "val", "test")}
    assert sum(sizes.values()) == 30 and sizes["train"] == 18
    x, y = data.arrays["train/x"], data.arrays["train/y"]
    assert x.shape[1:] == (1, 32, 32) and x.dtype == np.float16 and 0 <= x.min() and x.max() <= 1
    assert y.shape[1:] == (32, 32) and y.dtype == np.uint8 and set(np.unique(y)) <= {0, 1}
    assert set(data.splits.columns) >= {"id", "group", "label", "image", "mask", "split"}
    with caplog.at_level(logging.INFO):
        prepare(TASK, cfg, options, seed=0)
    assert "cache hit" in caplog.text


def test_segmentation_rejects_3d_shapes_and_accepts_augment(tiny_seg, tmp_path):
    options = DataOptions(root=tiny_seg, cache_dir=tmp_path)
    with pytest.raises(DataError, match="2D data/shape"):
        prepare(TASK, DataConfig(task="segmentation", shape=(8, 8, 8)), options, seed=0)
    data = prepare(TASK, DataConfig(task="segmentation", shape=(8, 8), augment=True), options, seed=0)
    assert data.arrays["train/x"].shape[1:] == (1, 8, 8)


@pytest.mark.parametrize("channels,shape", [((4, 8), (16, 16)), ((4, 8, 16), (32, 24)),
                                            ((4, 8, 16, 32), (16, 32))])
@pytest.mark.parametrize("kernel", [3, 5, 2])
def test_unet_keeps_the_image_shape(channels, shape, kernel):
    cfg = ModelConfig(name="unet", channels=channels, kernel_size=kernel, num_res_units=1, dropout=0.1)
    net = build_model(cfg, spatial_shape=shape, in_channels=1, out_channels=1)
    assert net(torch.zeros(2, 1, *shape)).shape == (2, 1, *shape)


def test_unet_rejects_a_shape_it_cannot_halve():
    with pytest.raises(ConfigError, match="multiple of 8"):
        build_model(ModelConfig(name="unet", channels=(4, 8, 16, 32)), spatial_shape=(20, 32))


def test_generalized_dice_shapes_and_a_perfect_prediction_scores_lower():
    loss = build_loss(LossConfig(name="generalized_dice"))
    assert loss.out_channels == 1
    target = torch.zeros(3, 16, 16, dtype=torch.uint8)
    target[:, 4:10, 5:12] = 1
    perfect = (target[:, None].float() * 2 - 1) * 20  # confident and right
    wrong = -perfect
    assert loss.probabilities(perfect).shape == (3, 16, 16)
    assert loss(perfect, target).ndim == 0
    assert loss(perfect, target) < 0.01 < loss(torch.zeros(3, 1, 16, 16), target) < loss(wrong, target)


def test_overlays_are_non_blank_pngs(tmp_path):
    from tuning.results.overlays import save_overlays

    rng = np.random.default_rng(0)
    images = rng.random((9, 1, 32, 32)).astype(np.float32)
    masks = np.zeros((9, 32, 32), np.uint8)
    masks[:, 8:20, 8:20] = 1
    masks[4] = 0  # an empty mask draws no outline and must not fail
    probs = np.roll(masks, 3, axis=2).astype(np.float32)
    paths = save_overlays(tmp_path / "overlays", images, masks, probs, n=4)
    assert len(paths) == 4 and all(p.suffix == ".png" and p.is_file() for p in paths)
    import matplotlib.image

    picture = matplotlib.image.imread(paths[0])
    assert picture.std() > 0.05
    red = (picture[..., 0] > 0.8) & (picture[..., 1] < 0.3) & (picture[..., 2] < 0.3)
    green = (picture[..., 1] > 0.7) & (picture[..., 0] < 0.3)
    assert red.sum() > 20 and green.sum() > 20


@pytest.mark.slow
def test_a_two_trial_sweep_runs_end_to_end(ray_local, tiny_seg, tmp_path):
    import json

    import pandas as pd

    from tuning.config.options import RunOptions
    from tuning.pipeline import run_pipeline
    from tuning.search.settings import SweepSettings

    options = RunOptions(
        space="segmentation", data=DataOptions(root=tiny_seg, cache_dir=tmp_path / "cache"),
        sweep=SweepSettings(num_samples=2, max_epochs=1, max_concurrent=2, seed=1),
        overrides={"data/shape": (32, 32), "model/channels": (4, 8, 16)},
        name="tiny-seg", results_dir=tmp_path / "results", top_k=1, retrain_seeds=1, wandb=False)
    payload = run_pipeline(options)
    folder = options.results_path()
    assert payload["selection_metric"] == "val/dice" and set(payload["test"]) == {"dice", "iou"}
    dice = payload["test"]["dice"]
    assert 0 <= dice["ci_low"] <= dice["value"] <= dice["ci_high"] <= 1
    assert len(pd.read_csv(folder / "trials.csv")) == 2
    saved = json.loads((folder / "best" / "config.json").read_text(encoding="utf-8"))
    assert saved["model/name"] == "unet" and saved["data/shape"] == [32, 32]
    splits = pd.read_csv(folder / "splits.csv")
    assert splits.groupby("group")["split"].nunique().max() == 1
