"""2D binary segmentation: ``images/<name>.(png|jpg|jpeg)`` + ``masks/<name>.png``, matched by stem.

Images may be grey or RGB (read as luminance) and of any size; every non-zero mask pixel is
foreground, whatever the encoding (0/255, 0/1, RGB). Arrays: x (N, 1, H, W) float32 in [0, 1],
y (N, H, W) uint8 0/1, both at ``DataConfig.shape``.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from core.config import DataConfig
from core.data.cache import dataset_fingerprint
from core.data.phantoms.segmentation import segmentation_phantom
from core.data.prepared import DataOptions
from core.data.splits import split_manifest
from core.errors import DataError
from core.imageio import IMAGE_2D_SUFFIXES, read_image_2d, resize, resize_image_2d
from core.tasks.task import Task, shape_2d

if TYPE_CHECKING:
    from core.inference import Case

logger = logging.getLogger(__name__)

PREPROCESS_VERSION = 1  # bump when preprocessing changes, to invalidate old caches
MASK_SUFFIXES = (".png",)  # lossless only: JPEG artefacts would turn background into foreground
LITTER = frozenset({"thumbs.db", "desktop.ini", "__macosx"})


def _subfolder(root: Path, name: str) -> Path:
    """``root/name``, matching the name's case loosely (``Images/`` is fine)."""
    exact = root / name
    if exact.is_dir():
        return exact
    loose = [p for p in root.iterdir() if p.is_dir() and p.name.lower() == name]
    if not loose:
        raise DataError(f"{root} has no {name}/ folder; a segmentation dataset holds images/<name>.png "
                        f"(or .jpg) and masks/<name>.png with the same names.")
    return loose[0]


def _examples(names: list[str] | set[str]) -> str:
    names = sorted(names)
    return ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")


def list_images(folder: Path, *, suffixes: tuple[str, ...] = IMAGE_2D_SUFFIXES) -> dict[str, Path]:
    """File stem -> path of each image in ``folder`` (not recursive); litter is skipped.

    Hidden files, Thumbs.db and the like pass silently; other files are counted in a warning.
    Two images with one stem (``a.png`` and ``a.jpg``) raise ``DataError``.
    """
    found: dict[str, Path] = {}
    other = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or entry.name.lower() in LITTER or entry.is_dir():
            continue
        if not entry.name.lower().endswith(suffixes):
            other.append(entry.name)
            continue
        stem = entry.name[: entry.name.rfind(".")]
        if stem in found:
            raise DataError(f"Two files named {stem!r} in {folder}: {found[stem].name} and {entry.name}; "
                            "keep one per image.")
        found[stem] = entry
    if other:
        logger.warning("Ignored %d files in %s that are not %s: %s", len(other), folder,
                       "/".join(s.lstrip(".") for s in suffixes), _examples(other))
    return found


def read_mask(path: Path) -> np.ndarray:
    """A mask file as bool (H, W): any non-zero pixel (in any channel) is foreground."""
    return read_image_2d(path) > 0


def read_segmentation_manifest(root: Path) -> pd.DataFrame:
    """Image/mask pairs: columns id, group (= id), label (1: mask has foreground), foreground
    (fraction of mask pixels), image, mask. Unpaired files are counted in a warning."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"Dataset folder {root} does not exist; pass --data with the folder holding "
                        "images/ and masks/.")
    images_dir, masks_dir = _subfolder(root, "images"), _subfolder(root, "masks")
    images, masks = list_images(images_dir), list_images(masks_dir, suffixes=MASK_SUFFIXES)
    if not images:
        raise DataError(f"No PNG/JPEG image in {images_dir}.")
    if not masks:
        raise DataError(f"No PNG mask in {masks_dir}; masks must be PNG files named like their images.")
    no_mask, no_image = set(images) - set(masks), set(masks) - set(images)
    if no_mask:
        logger.warning("%d images in %s have no mask in %s and are left out: %s", len(no_mask),
                       images_dir, masks_dir, _examples(no_mask))
    if no_image:
        logger.warning("%d masks in %s have no image in %s and are left out: %s", len(no_image),
                       masks_dir, images_dir, _examples(no_image))
    ids = sorted(set(images) & set(masks))
    if not ids:
        raise DataError(f"No image in {images_dir} has a mask of the same name in {masks_dir} "
                        f"(images e.g. {_examples(set(images))}; masks e.g. {_examples(set(masks))}).")
    foreground = np.array([read_mask(masks[i]).mean() for i in ids])
    manifest = pd.DataFrame({"id": ids, "group": ids, "label": (foreground > 0).astype(np.int64),
                             "foreground": foreground, "image": [str(images[i]) for i in ids],
                             "mask": [str(masks[i]) for i in ids]})
    logger.info("Segmentation manifest: %d pairs (%d with foreground) from %s", len(manifest),
                int(manifest["label"].sum()), root)
    return manifest


def split_segmentation(manifest: pd.DataFrame, *, fractions: tuple[float, float, float],
                       seed: int) -> pd.DataFrame:
    """Grouped split stratified by "has foreground"; when empty (or non-empty) masks are too few
    to reach every split, stratified by object size instead (the larger half against the smaller)."""
    per_class = manifest.groupby("label")["group"].nunique()
    n_splits = sum(f > 0 for f in fractions)
    if len(per_class) == 2 and per_class.min() >= n_splits:
        return split_manifest(manifest, fractions=fractions, seed=seed)
    logger.info("Masks with / without foreground: %s groups; too few of one to stratify on, so the "
                "split is stratified by object size instead", per_class.to_dict())
    size = manifest.groupby("group")["foreground"].transform("max")
    strata = (size.rank(method="first") > len(manifest) / 2).astype(np.int64)
    split = split_manifest(manifest.assign(label=strata), fractions=fractions, seed=seed)
    return manifest.assign(split=split["split"].to_numpy())


def _unit(image: np.ndarray) -> np.ndarray:
    """Per-image min-max scaling to [0, 1] (a constant image becomes zeros)."""
    lo, hi = float(image.min()), float(image.max())
    return (image - lo) / (hi - lo) if hi > lo else np.zeros_like(image)


def scale_image(image: np.ndarray, *, shape: tuple[int, int]) -> np.ndarray:
    """A read (H, W) image -> float32 (H, W) in [0, 1] at ``shape``: min-max scaled, then bilinear."""
    return np.clip(resize_image_2d(_unit(image), shape), 0.0, 1.0).astype(np.float32)


def load_image(image_path: Path, *, shape: tuple[int, int]) -> np.ndarray:
    """One image as the model sees it: (H, W) float32 in [0, 1] at ``shape``."""
    return scale_image(read_image_2d(image_path), shape=shape)


def load_pair(image_path: Path, mask_path: Path, *,
              shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) float32 image in [0, 1] (bilinear) and (H, W) uint8 0/1 mask (nearest) at ``shape``."""
    image = read_image_2d(image_path)
    mask = read_mask(mask_path)
    if mask.shape != image.shape:
        logger.warning("Mask %s is %s but its image %s is %s (H, W); resizing the mask", mask_path,
                       mask.shape, Path(image_path).name, image.shape)
    x = scale_image(image, shape=shape)
    y = resize(mask.astype(np.float32), tuple(shape), mode="nearest") > 0.5
    return x.astype(np.float32), y.astype(np.uint8)


def preprocess(rows: pd.DataFrame, cfg: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    """One image/mask pair -> x (1, 1, H, W) float32 in [0, 1] and y (1, H, W) uint8 0/1."""
    row = rows.iloc[0]
    x, y = load_pair(Path(row["image"]), Path(row["mask"]), shape=shape_2d(cfg.shape))
    return x[None, None], y[None]


def load_input(case: Case, cfg: DataConfig, cache: dict) -> tuple[np.ndarray, tuple[int, int]]:
    """A new image as training saw it, (1, H, W), and its own (H, W) for drawing the mask back."""
    image = read_image_2d(case.path)
    return scale_image(image, shape=shape_2d(cfg.shape))[None], image.shape


def read_manifest(root: Path, options: DataOptions) -> pd.DataFrame:
    """The image/mask pairs; without --group-regex or --groups-csv each image is its own patient."""
    if not (options.group_regex or options.groups_csv):
        logger.warning("Each image counts as its own patient: images of one patient may land in "
                       "different splits. Pass --group-regex (the first capture group of a file "
                       "name is the patient id) or --groups-csv (name,group) to keep them together.")
    return read_segmentation_manifest(root)


def split(manifest: pd.DataFrame, cfg: DataConfig, seed: int) -> pd.DataFrame:
    return split_segmentation(manifest, fractions=cfg.split, seed=seed)


def fingerprint(root: Path, selected: pd.DataFrame, options: DataOptions) -> str:
    return dataset_fingerprint([*selected["image"], *selected["mask"]])


def cache_settings(cfg: DataConfig, options: DataOptions, seed: int) -> dict[str, Any]:
    return {"version": PREPROCESS_VERSION, "shape": tuple(int(s) for s in cfg.shape),
            "split": cfg.split, "seed": seed}


def describe(manifest: pd.DataFrame, selected: pd.DataFrame) -> dict[str, Any]:
    return {"mean_foreground": float(selected["foreground"].mean())}


TASK = Task(
    name="segmentation", kind="segmentation", spatial_dims=2,
    class_names=("background", "foreground"), group_unit="image",
    read_manifest=read_manifest, preprocess=preprocess,
    load_input=load_input, phantom=segmentation_phantom, cache_settings=cache_settings,
    fingerprint=fingerprint, split=split, describe=describe)
