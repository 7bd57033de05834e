"""EGFR mutation status from CT: the folder + labels CSV reader, per-case preprocessing, ``TASK``.

Layout: one volume per case in ``root`` (``<case>.nii.gz``, ``.nii``, ``.mhd``, ``.nrrd`` or a
DICOM series folder ``<case>/``), a CSV with a case-id and a label column, and optionally
``masks/<case>.*`` tumour masks that choose the crop.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from core.config import DataConfig
from core.data.cache import dataset_fingerprint, hash_settings
from core.data.phantoms.egfr import egfr_phantom
from core.data.prepared import DataOptions
from core.data.resample import fit_step, sample_box
from core.errors import DataError
from core.imageio import ACCEPTED, Geometry, find_volumes, read_volume, resize, volume_files
from core.tasks.task import Task, shape_3d

if TYPE_CHECKING:
    from core.inference import Case

logger = logging.getLogger(__name__)

UNKNOWN_LABELS = frozenset({"unknown", "not collected", "na", "n/a", "nan", "", "not available",
                            "not tested", "not assessed", "pending"})
ORIENTATION = "LPS"  # every case is reoriented so array axes share one sense before cropping
PREPROCESS_VERSION = 1  # bump when preprocess_case changes, to invalidate old caches
SLICE_HEAD_BYTES, SLICE_TAIL_BYTES = 1 << 16, 1 << 12  # what the fingerprint reads of a DICOM slice


def _labels_csv(root: Path, labels_csv: Path | None) -> Path:
    if labels_csv is not None:
        if not Path(labels_csv).is_file():
            raise DataError(f"Labels CSV {labels_csv} does not exist; pass --labels-csv with the path "
                            "of the CSV holding the case ids and labels.")
        return Path(labels_csv)
    found = sorted(p for p in root.glob("*.csv") if not p.name.startswith("."))
    if len(found) != 1:
        listed = ", ".join(p.name for p in found) or "none"
        raise DataError(f"Found {len(found)} CSV files in {root} ({listed}); put exactly one labels CSV "
                        "there or pass --labels-csv.")
    return found[0]


def _column(table: pd.DataFrame, name: str, option: str, csv_path: Path) -> str:
    """The table's column matching ``name`` (exactly, else ignoring case and outer spaces)."""
    if name in table.columns:
        return name
    loose = {str(c).strip().lower(): c for c in table.columns}
    if name.strip().lower() in loose:
        return loose[name.strip().lower()]
    raise DataError(f"{csv_path} has no column {name!r}; its columns are {list(table.columns)}. "
                    f"Pass {option} with the right one.")


def _read_labels(csv_path: Path, id_column: str, label_column: str) -> pd.DataFrame:
    """Two string columns, ``id`` and ``raw``, one row per case id (stripped)."""
    try:
        table = pd.read_csv(csv_path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataError(f"Cannot read labels CSV {csv_path}: {err}. "
                        "A comma-separated UTF-8 file is needed.") from err
    id_col = _column(table, id_column, "--id-column", csv_path)
    label_col = _column(table, label_column, "--label-column", csv_path)
    labels = pd.DataFrame({"id": table[id_col].str.strip(), "raw": table[label_col].str.strip()})
    labels = labels[labels["id"] != ""]
    duplicated = labels["id"][labels["id"].duplicated()].unique()
    if len(duplicated):
        raise DataError(f"{csv_path} lists {len(duplicated)} case ids more than once in column "
                        f"{id_col!r} (e.g. {_examples(duplicated)}); keep one row per case.")
    return labels


def _examples(ids: Iterable[str]) -> str:
    ids = sorted(ids)
    return ", ".join(ids[:5]) + (" ..." if len(ids) > 5 else "")


def _encode(labels: pd.DataFrame, positive_value: str, negative_value: str, csv_path: Path,
            label_column: str) -> pd.DataFrame:
    """Drop unknown-vocabulary rows (logged with a count) and map the rest to 1 (positive) or 0
    (negative); any other value (a typo such as "Mutnat") stops the run, listed with its count."""
    norm = labels["raw"].str.lower()
    unknown = norm.isin(UNKNOWN_LABELS)
    positive = norm == positive_value.strip().lower()
    negative = norm == negative_value.strip().lower()
    other = ~(unknown | positive | negative)
    if other.any():
        seen = labels["raw"][other].value_counts().to_dict()
        raise DataError(f"{csv_path} column {label_column!r} holds values that are neither positive "
                        f"({positive_value!r}), negative ({negative_value!r}) nor unknown: {seen}. "
                        "Correct those rows, or pass --positive-value / --negative-value.")
    if unknown.any():
        seen = labels["raw"][unknown].value_counts().to_dict()
        logger.warning("Dropped %d of %d rows in %s whose %r is unknown: %s", int(unknown.sum()),
                       len(labels), csv_path, label_column, seen)
    kept = labels[~unknown].copy()
    kept["label"] = positive[~unknown].astype(np.int64)
    return kept


def read_egfr_manifest(root: Path, *, labels_csv: Path | None = None, id_column: str = "Case ID",
                       label_column: str = "EGFR mutation status", positive_value: str = "Mutant",
                       negative_value: str = "Wildtype", masks_dir: Path | None = None) -> pd.DataFrame:
    """Labelled cases that have a volume: columns id, group, label (0/1), image, mask (path or None)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"Dataset folder {root} does not exist or is not a folder; pass --data with the "
                        "folder that holds one volume per case.")
    masks_dir = Path(masks_dir) if masks_dir is not None else root / "masks"
    inside = masks_dir.name if masks_dir.parent.resolve() == root.resolve() else "masks"
    volumes = find_volumes(root, exclude={"masks", inside})
    if not volumes:
        raise DataError(f"No volume found in {root}; each case must be {ACCEPTED}.")
    csv_path = _labels_csv(root, labels_csv)
    labels = _read_labels(csv_path, id_column, label_column)
    no_volume = set(labels["id"]) - set(volumes)
    if no_volume:
        logger.warning("%d cases in %s have no volume in %s (e.g. %s)", len(no_volume), csv_path.name,
                       root, _examples(no_volume))
    no_label = set(volumes) - set(labels["id"])
    if no_label:
        logger.warning("%d volumes in %s have no row in %s (e.g. %s)", len(no_label), root,
                       csv_path.name, _examples(no_label))
    labelled = _encode(labels, positive_value, negative_value, csv_path, label_column)
    labelled = labelled[labelled["id"].isin(volumes.keys())].sort_values("id")
    if labelled.empty:
        raise DataError(f"No labelled case with a volume is left: {len(volumes)} volumes in {root} "
                        f"(e.g. {_examples(volumes)}), {len(labels)} rows in {csv_path} (ids e.g. "
                        f"{_examples(labels['id'])}). Check --id-column and the file names.")
    if labelled["label"].nunique() < 2:
        seen = labels["raw"].value_counts().to_dict()
        raise DataError(f"Only one class is left in {csv_path} (values seen in {label_column!r}: "
                        f"{seen}; positive value {positive_value!r}). Pass --positive-value with the "
                        "value that marks the positive class.")
    masks = _find_masks(masks_dir, default=masks_dir == root / "masks")
    manifest = pd.DataFrame({
        "id": labelled["id"].to_numpy(), "group": labelled["id"].to_numpy(),
        "label": labelled["label"].to_numpy(np.int64),
        "image": [str(volumes[i]) for i in labelled["id"]],
        "mask": [str(masks[i]) if i in masks else None for i in labelled["id"]],
    })
    logger.info("EGFR manifest: %d cases (%d positive), %d with a mask, from %s", len(manifest),
                int(manifest["label"].sum()), int(manifest["mask"].notna().sum()), root)
    return manifest


def _find_masks(masks_dir: Path, *, default: bool) -> dict[str, Path]:
    """Case id -> mask path; a missing folder is fine only when it was not asked for."""
    if masks_dir.is_dir():
        return find_volumes(masks_dir, exclude=())
    if not default:
        raise DataError(f"Masks folder {masks_dir} does not exist; pass a folder of <case> masks "
                        "or leave the option out.")
    return {}


def _bounding_box(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(start, stop) voxel indices of the non-zero region per axis, stop exclusive; None if empty."""
    foreground = mask != 0
    starts, stops = [], []
    for axis in range(mask.ndim):
        hits = np.flatnonzero(foreground.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        if hits.size == 0:
            return None
        starts.append(hits[0])
        stops.append(hits[-1] + 1)
    return np.array(starts), np.array(stops)


def _crop_padded(array: np.ndarray, start: np.ndarray, stop: np.ndarray, fill: float) -> np.ndarray:
    """array[start:stop] per axis; the part of the box outside the array is ``fill``."""
    out = np.full(tuple(stop - start), fill, dtype=array.dtype)
    lo, hi = np.maximum(start, 0), np.minimum(stop, array.shape)
    inside = tuple(slice(a, b) for a, b in zip(lo, hi))
    out[tuple(slice(a - s, b - s) for a, b, s in zip(lo, hi, start))] = array[inside]
    return out


def _mask_box(mask: np.ndarray | None, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray] | None:
    """The tumour mask's bounding box, or None without a mask (an empty mask is warned about)."""
    if mask is None:
        return None
    if mask.shape != shape:
        raise DataError(f"Mask shape {mask.shape} differs from image shape {shape}.")
    box = _bounding_box(mask)
    if box is None:
        logger.warning("Empty tumour mask: using the whole volume")
    return box


def preprocess_case(image: np.ndarray, geometry: Geometry, mask: np.ndarray | None, *,
                    shape: tuple[int, int, int], hu_window: tuple[float, float],
                    crop_margin_mm: float, spacing: tuple[float, float, float] | None = None
                    ) -> np.ndarray:
    """(z, y, x) HU volume -> (D, H, W) float32 in [0, 1]: window, then place on the output grid.

    With ``spacing`` ((z, y, x) mm) every case is resampled to that spacing: a box of ``shape``
    voxels centred on the tumour mask, or, without a mask, the whole volume at the one isotropic
    spacing that fits it, so no axis is stretched. Without ``spacing`` (the seed's way): the mask's
    bounding box plus ``crop_margin_mm`` (or the whole volume) is resized to ``shape``. Outside
    the volume is the window minimum.
    """
    lo, hi = hu_window
    scaled = (np.clip(image, lo, hi) - lo) / (hi - lo)
    box = _mask_box(mask, image.shape)
    if spacing is not None:
        voxel_mm = np.asarray(geometry.spacing[::-1], dtype=float)  # (z, y, x)
        if box is None:
            centre = (np.asarray(image.shape) - 1) / 2
            target = np.full(3, fit_step(image.shape, voxel_mm, shape))
        else:
            centre, target = (box[0] + box[1] - 1) / 2, np.asarray(spacing, dtype=float)
        return np.clip(sample_box(scaled, centre=centre, step=target / voxel_mm, shape=shape), 0.0, 1.0)
    if box is not None:
        margin = crop_margin_mm / np.asarray(geometry.spacing[::-1])  # (z, y, x) voxels
        start = np.floor(box[0] - margin).astype(int)
        stop = np.ceil(box[1] + margin).astype(int)
        scaled = _crop_padded(scaled, start, stop, fill=0.0)
    return np.clip(resize(scaled, tuple(shape), mode="trilinear"), 0.0, 1.0)


def _same_grid(image: Geometry, mask: Geometry, *, tolerance_mm: float = 1e-3) -> bool:
    """Whether a mask lies on its image's voxel grid: spacing, origin and direction agree."""
    return (np.allclose(image.spacing, mask.spacing, atol=tolerance_mm)
            and np.allclose(image.origin, mask.origin, atol=tolerance_mm)
            and np.allclose(image.direction, mask.direction, atol=1e-4))


def load_case(image_path: Path, data_cfg: DataConfig, *, mask_path: Path | None = None) -> np.ndarray:
    """Read one case (any accepted format) and preprocess it as training does: (D, H, W) in [0, 1]."""
    image, geometry = read_volume(Path(image_path), orient=ORIENTATION)
    mask = None
    if mask_path is not None:
        mask, mask_geometry = read_volume(Path(mask_path), orient=ORIENTATION)
        if mask.shape != image.shape or not _same_grid(geometry, mask_geometry):
            raise DataError(f"Mask {mask_path} is not on its image's voxel grid (mask shape "
                            f"{mask.shape}, {mask_geometry}; image {image_path} shape {image.shape}, "
                            f"{geometry}); resample the mask onto the image (same size, spacing, "
                            "origin and direction) or remove it.")
    return preprocess_case(image, geometry, mask, shape=shape_3d(data_cfg.shape),
                           hu_window=data_cfg.hu_window, crop_margin_mm=data_cfg.crop_margin_mm,
                           spacing=data_cfg.spacing)


def preprocess(rows: pd.DataFrame, cfg: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    """One case's manifest row -> x (1, 1, D, H, W) float32 in [0, 1] and y (1,) int64."""
    row = rows.iloc[0]
    mask = Path(row["mask"]) if isinstance(row["mask"], str) else None
    x = load_case(Path(row["image"]), cfg, mask_path=mask)
    return x[None, None].astype(np.float32), rows["label"].to_numpy(np.int64)


def load_input(case: Case, cfg: DataConfig, cache: dict) -> tuple[np.ndarray, None]:
    """A new volume (and its tumour mask, if any) as training saw it: (1, D, H, W)."""
    return load_case(case.path, cfg, mask_path=case.mask)[None], None


def read_manifest(root: Path, options: DataOptions) -> pd.DataFrame:
    """The manifest of ``root`` with the CSV options, remembering which CSV it read."""
    manifest = read_egfr_manifest(root, labels_csv=options.labels_csv, id_column=options.id_column,
                                  label_column=options.label_column,
                                  positive_value=options.positive_value,
                                  negative_value=options.negative_value)
    manifest.attrs["labels_csv"] = str(_labels_csv(root, options.labels_csv))
    return manifest


def fingerprint(root: Path, selected: pd.DataFrame, options: DataOptions) -> str:
    """Content of the labels CSV and of every volume and mask file.

    A DICOM series' slices count by name, size, first 64 KiB and last 4 KiB each: the header
    (geometry, rescale, UIDs) and the first and last rows of pixels. Read whole, a 512x512 slice
    (0.5 MiB) made the driver read every series before any work was handed out. Not mtimes: a copy
    of the data elsewhere must keep its key, or ``--resume`` on it would refuse it.
    """
    volumes = [Path(path) for path in (*selected["image"], *selected["mask"].dropna())]
    csv_path = _labels_csv(root, options.labels_csv)
    whole = dataset_fingerprint([csv_path, *(f for path in volumes if not path.is_dir()
                                             for f in volume_files(path))])
    slices = [f for path in volumes if path.is_dir() for f in volume_files(path)]
    if not slices:
        return whole  # no DICOM series: the same key as before slices were sampled
    return hash_settings({"files": whole, "dicom slices": dataset_fingerprint(
        slices, chunk_bytes=SLICE_HEAD_BYTES, tail_bytes=SLICE_TAIL_BYTES)})


def cache_settings(cfg: DataConfig, options: DataOptions, seed: int) -> dict[str, Any]:
    spacing = {} if cfg.spacing is None else {"spacing": cfg.spacing}  # None keeps the old keys
    return {"version": PREPROCESS_VERSION, "orientation": ORIENTATION, "shape": cfg.shape, **spacing,
            "hu_window": cfg.hu_window, "crop_margin_mm": cfg.crop_margin_mm, "split": cfg.split,
            "seed": seed, "id_column": options.id_column, "label_column": options.label_column,
            "positive_value": options.positive_value, "negative_value": options.negative_value}


def describe(manifest: pd.DataFrame, selected: pd.DataFrame) -> dict[str, Any]:
    """Mask counts, with a label x has-mask x split table in the log and a warning when mask
    availability differs by class: a model can learn the crop instead of the tumour."""
    has_mask = selected["mask"].notna()
    table = pd.crosstab([selected["label"], has_mask.rename("has_mask")], selected["split"])
    logger.info("EGFR cases by label, mask and split:\n%s", table.to_string())
    by_class = has_mask.groupby(selected["label"]).mean()
    if 0 < has_mask.sum() < len(selected) and by_class.max() - by_class.min() > 0.1:
        logger.warning("Tumour masks cover %s of the cases per class (0 = negative, 1 = positive): "
                       "masked cases are tumour crops, the rest whole volumes, so the model can tell "
                       "the classes apart by the crop alone. Give every case a mask, or none.",
                       {int(k): f"{v:.0%}" for k, v in by_class.items()})
    return {"n_with_mask": int(has_mask.sum())}


TASK = Task(
    name="egfr", kind="classification", spatial_dims=3, class_names=("Wildtype", "Mutant"),
    group_unit="patient", read_manifest=read_manifest, preprocess=preprocess,
    load_input=load_input, phantom=egfr_phantom, cache_settings=cache_settings,
    fingerprint=fingerprint, describe=describe, inputs=frozenset({"mask"}))
