"""Pneumonia from chest X-rays in the Kermany layout: ``<root>/{train,val,test}/{NORMAL,PNEUMONIA}/``.

Images (.jpeg/.jpg/.png, grey or RGB, any size) are read as grey and resized to
``DataConfig.shape``. The dataset's own folders choose the split, with two repairs, both logged:
a patient found in two splits is moved whole to the most held-out one (test, then val), so no
patient is in two splits; and a missing or tiny ``val/`` is folded into train, and val is then
split from train by patient, stratified and seeded.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from core.config import DataConfig
from core.data.cache import dataset_fingerprint
from core.data.phantoms.xray import xray_phantom
from core.data.prepared import SPLITS, DataOptions
from core.data.splits import split_manifest
from core.errors import DataError
from core.imageio import read_image_2d, resize_image_2d
from core.tasks.task import Task, shape_2d

if TYPE_CHECKING:
    from core.inference import Case

logger = logging.getLogger(__name__)

PREPROCESS_VERSION = 1  # bump when preprocessing changes, to invalidate old caches
CLASSES = {"normal": 0, "pneumonia": 1}
SUFFIXES = (".jpeg", ".jpg", ".png")
MIN_VAL_IMAGES = 50  # a val/ with fewer images (Kermany's has 16) is too small to select models on
MIN_VAL_PATIENTS = 2  # ... or with fewer patients of either class
MAX_UNNAMED = 0.05  # warn when more file names than this carry no patient id
_PERSON = re.compile(r"^(person\d+)_(bacteria|virus)_\d+", re.IGNORECASE)
_IM = re.compile(r"^(.*?IM-\d+)(?:-\d+)+$", re.IGNORECASE)
_PRIORITY = {"test": 2, "val": 1, "train": 0}  # a patient in several splits goes to the highest


def patient_of(file_name: str) -> tuple[str, str | None]:
    """(patient id, subtype or None) from a Kermany file name.

    ``person12_bacteria_45.jpeg`` -> (person12, bacteria); ``IM-0115-0001.jpeg`` -> (IM-0115, None);
    ``NORMAL2-IM-1427-0001.jpeg`` -> (NORMAL2-IM-1427, None); anything else is its own patient.
    """
    stem = file_name[: file_name.rfind(".")] if "." in file_name else file_name
    person = _PERSON.match(stem)
    if person:
        return person.group(1).lower(), person.group(2).lower()
    im = _IM.match(stem)
    return (im.group(1), None) if im else (stem, None)


def find_kermany_root(root: Path) -> Path:
    """The folder holding ``train/``: ``root`` itself or a ``chest_xray/`` (or two) below it."""
    candidate = Path(root)
    if not candidate.is_dir():
        raise DataError(f"Dataset folder {root} does not exist; pass --data with the folder holding "
                        "train/ and test/ (each with NORMAL/ and PNEUMONIA/).")
    for _ in range(3):
        if _child(candidate, "train") is not None:
            return candidate
        nested = _child(candidate, "chest_xray")
        if nested is None:
            break
        candidate = nested
    raise DataError(f"No train/ folder in {root} (nor in chest_xray/ below it); the Kermany layout is "
                    "<root>/{train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg.")


def _child(folder: Path, name: str) -> Path | None:
    """The sub-folder called ``name`` in any case, skipping macOS litter; None if absent."""
    for entry in sorted(folder.iterdir()):
        if entry.is_dir() and entry.name.lower() == name and entry.name != "__MACOSX":
            return entry
    return None


def _class_images(folder: Path) -> list[Path]:
    """Image files in one class folder; hidden files pass silently, other files are counted."""
    files = [p for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")]
    images = [p for p in files if p.name.lower().endswith(SUFFIXES)]
    if len(images) < len(files):
        logger.warning("Ignored %d files in %s that are not .jpeg/.jpg/.png", len(files) - len(images),
                       folder)
    if not images:
        raise DataError(f"Class folder {folder} holds no .jpeg/.jpg/.png image; every split folder "
                        "needs images in both NORMAL/ and PNEUMONIA/.")
    return images


def _split_rows(split_dir: Path, split: str) -> list[dict]:
    classes = {e.name.lower(): e for e in sorted(split_dir.iterdir())
               if e.is_dir() and not e.name.startswith(".") and e.name != "__MACOSX"}
    if set(classes) != set(CLASSES):
        found = sorted(e.name for e in classes.values())
        raise DataError(f"{split_dir} holds class folders {found}; exactly NORMAL/ and PNEUMONIA/ "
                        "are expected (any case). Move other classes out of the dataset folder.")
    rows = []
    for name, label in CLASSES.items():
        for path in _class_images(classes[name]):
            patient, subtype = patient_of(path.name)
            rows.append({"id": f"{split}/{name}/{path.stem}", "group": patient, "label": label,
                         "subtype": subtype or ("normal" if label == 0 else "pneumonia"),
                         "folder": split, "image": str(path)})
    return rows


def read_xray_manifest(root: Path) -> pd.DataFrame:
    """One row per image: id, group (patient), label (PNEUMONIA=1), subtype, folder (the split
    folder it came from), image. ``val/`` is optional; ``train/`` and ``test/`` are required."""
    base = find_kermany_root(root)
    rows = []
    for split in SPLITS:
        folder = _child(base, split)
        if folder is None and split != "val":
            raise DataError(f"{base} has no {split}/ folder; the Kermany layout needs train/ and test/ "
                            "(val/ is optional), each with NORMAL/ and PNEUMONIA/.")
        if folder is not None:
            rows += _split_rows(folder, split)
    manifest = pd.DataFrame(rows)
    unnamed = int((manifest["group"] == manifest["image"].map(lambda p: Path(p).stem)).sum())
    if unnamed > MAX_UNNAMED * len(manifest):
        logger.warning("%d of %d file names carry no Kermany patient id (personN_..., IM-NNNN-...); "
                       "each is its own patient, so one patient's films may be split apart. Pass "
                       "--group-regex or --groups-csv if the names follow another pattern.",
                       unnamed, len(manifest))
    elif unnamed:
        logger.info("%d file names carry no Kermany patient id; each is its own patient", unnamed)
    logger.info("X-ray manifest: %d images of %d patients from %s: %s", len(manifest),
                manifest["group"].nunique(), base,
                manifest.groupby(["folder", "label"]).size().to_dict())
    return manifest


def _val_is_tiny(manifest: pd.DataFrame) -> bool:
    val = manifest[manifest["folder"] == "val"]
    patients = val.groupby("label")["group"].nunique()
    return len(val) < MIN_VAL_IMAGES or any(patients.get(c, 0) < MIN_VAL_PATIENTS for c in (0, 1))


def assign_splits(manifest: pd.DataFrame, *, val_fraction: float, seed: int) -> pd.DataFrame:
    """Add ``split``: the folder's split, made patient-disjoint, with val split from train if tiny.

    ``val_fraction``: the share of train's patients (per class) moved to val when val is re-split.
    """
    out = manifest.copy()
    out["split"] = out["folder"]
    if _val_is_tiny(out):
        n_val = int((out["folder"] == "val").sum())
        if n_val:
            logger.warning("val/ holds %d images (fewer than %d, or under %d patients of a class): "
                           "folding it into train", n_val, MIN_VAL_IMAGES, MIN_VAL_PATIENTS)
        logger.info("Splitting %.0f %% of train's patients per class off as val (seed %d)",
                    100 * val_fraction, seed)
        out.loc[out["split"] == "val", "split"] = "train"
    owner = out.groupby("group")["split"].agg(lambda s: max(s, key=_PRIORITY.__getitem__))
    moved = out["split"] != out["group"].map(owner)
    if moved.any():
        leaked = out.loc[moved, "group"].unique()
        moves = (out.loc[moved, "split"] + " -> " + out.loc[moved, "group"].map(owner)).value_counts()
        logger.warning("%d patients have images in two splits (e.g. %s): moved %d images to the "
                       "patient's most held-out split: %s", len(leaked), ", ".join(sorted(leaked)[:5]),
                       int(moved.sum()), moves.to_dict())
        out["split"] = out["group"].map(owner)
    if not (out["split"] == "val").any():
        train = out[out["split"] == "train"]
        carved = split_manifest(train, fractions=(1.0 - val_fraction, val_fraction, 0.0), seed=seed)
        out.loc[carved.index, "split"] = carved["split"]
    return out


def _unit(image: np.ndarray) -> np.ndarray:
    """Per-image min-max scaling to [0, 1] (a constant image becomes zeros)."""
    lo, hi = float(image.min()), float(image.max())
    return (image - lo) / (hi - lo) if hi > lo else np.zeros_like(image)


def load_xray(path: Path, *, shape: tuple[int, int]) -> np.ndarray:
    """One X-ray as (H, W) float32 in [0, 1] at ``shape`` (grey, min-max scaled, antialiased)."""
    return np.clip(resize_image_2d(_unit(read_image_2d(path)), shape), 0.0, 1.0).astype(np.float32)


def preprocess(rows: pd.DataFrame, cfg: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    """One film -> x (1, 1, H, W) float32 in [0, 1] and y (1,) int64."""
    x = load_xray(Path(rows["image"].iat[0]), shape=shape_2d(cfg.shape))
    return x[None, None], rows["label"].to_numpy(np.int64)


def load_input(case: Case, cfg: DataConfig, cache: dict) -> tuple[np.ndarray, None]:
    return load_xray(case.path, shape=shape_2d(cfg.shape))[None], None


def _val_fraction(cfg: DataConfig) -> float:
    """The share of train's patients moved to val when val is split from train."""
    train_f, val_f = cfg.split[0], cfg.split[1]
    if not (train_f > 0 and val_f > 0):
        raise DataError(f"data/split={cfg.split} needs train and val shares above 0.")
    return val_f / (train_f + val_f)


def read_manifest(root: Path, options: DataOptions) -> pd.DataFrame:
    """Kermany's patient ids from the file names (replaced by --group-regex / --groups-csv)."""
    return read_xray_manifest(root)


def split(manifest: pd.DataFrame, cfg: DataConfig, seed: int) -> pd.DataFrame:
    """The dataset's own folders, made patient-disjoint; test is always the dataset's test/."""
    return assign_splits(manifest, val_fraction=_val_fraction(cfg), seed=seed)


def fingerprint(root: Path, selected: pd.DataFrame, options: DataOptions) -> str:
    return dataset_fingerprint(selected["image"])


def cache_settings(cfg: DataConfig, options: DataOptions, seed: int) -> dict[str, Any]:
    return {"version": PREPROCESS_VERSION, "shape": tuple(int(s) for s in cfg.shape), "seed": seed,
            "val_fraction": _val_fraction(cfg), "min_val": (MIN_VAL_IMAGES, MIN_VAL_PATIENTS)}


def describe(manifest: pd.DataFrame, selected: pd.DataFrame) -> dict[str, Any]:
    return {"n_patients": int(selected["group"].nunique())}


TASK = Task(
    name="xray", kind="classification", spatial_dims=2, class_names=("NORMAL", "PNEUMONIA"),
    group_unit="patient", read_manifest=read_manifest, preprocess=preprocess,
    load_input=load_input, phantom=xray_phantom, cache_settings=cache_settings,
    fingerprint=fingerprint, split=split, describe=describe)
