"""A saved model on new files, preprocessed exactly as its task's reader preprocessed training data.

3D tasks read volumes (.nii.gz, .nii, .mhd, .mha, .nrrd, .nhdr or a DICOM series folder); 2D tasks
read PNG/JPEG. egfr uses a tumour mask ``masks/<case>.*`` beside the inputs when one exists, as
training did. luna16 reads either whole CT volumes plus candidate points in world mm (one row per
point), or cutouts, which are centre-cropped or padded to ``data/shape`` (a cutout of exactly that
shape is used as it is).
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.config import DataConfig
from core.errors import DataError
from core.evaluate import predict
from core.imageio import IMAGE_2D_SUFFIXES, find_volumes, resize, volume_suffix, write_image_2d
from core.model_folder import LoadedModel
from core.tasks import get_task
from core.tasks.luna16 import COORDS

logger = logging.getLogger(__name__)

MASKS = "masks"  # a folder of this name beside the inputs holds egfr tumour masks, not inputs


@dataclass(frozen=True)
class Case:
    """One input: a file or DICOM folder, with an egfr tumour mask or a luna16 world point (x, y, z) mm."""

    path: Path
    mask: Path | None = None
    point: tuple[float, float, float] | None = None


# a case read and waiting for its batch: (its output row, the case, its input, shape for its mask)
Pending = tuple[dict[str, Any], Case, np.ndarray, tuple[int, ...] | None]


# --- finding inputs ---------------------------------------------------------------------------

def case_id(path: Path) -> str:
    """``scan.nii.gz`` -> ``scan``; a DICOM folder's name; ``x.png`` -> ``x``."""
    path = Path(path)
    suffix = volume_suffix(path)
    if suffix:
        return path.name[: -len(suffix)]
    return path.name if path.is_dir() else path.stem


def _volumes_in(folder: Path) -> list[Path]:
    """Volumes directly in ``folder``, or the folder itself when it is one DICOM series."""
    found = find_volumes(folder, exclude={MASKS})
    return list(found.values()) if found else [folder]


def _images_in(folder: Path) -> list[Path]:
    """PNG/JPEG files anywhere under ``folder``, skipping hidden files and ``masks/`` folders."""
    found = (p for p in folder.rglob("*") if p.is_file() and p.name.lower().endswith(IMAGE_2D_SUFFIXES))
    return sorted(p for p in found
                  if not any(part.startswith(".") or part == MASKS for part in p.relative_to(folder).parts))


def _mask_for(path: Path, masks_dir: Path | None, cache: dict[Path, dict[str, Path]]) -> Path | None:
    folder = masks_dir if masks_dir is not None else path.parent / MASKS
    if folder not in cache:
        cache[folder] = find_volumes(folder, exclude=()) if folder.is_dir() else {}
    return cache[folder].get(case_id(path))


def read_candidates(path: Path) -> pd.DataFrame:
    """A CSV of world points: coordX, coordY, coordZ (mm) and, to match volumes, seriesuid."""
    try:
        table = pd.read_csv(path, dtype={"seriesuid": str}, encoding="utf-8-sig")
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataError(f"Cannot read candidates CSV {path}: {err}") from err
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in COORDS if c not in table.columns]
    if missing:
        raise DataError(f"Candidates CSV {path} lacks {missing}; it needs columns {COORDS} (world mm) "
                        f"and, for several volumes, seriesuid. Its columns: {list(table.columns)}")
    table[COORDS] = table[COORDS].apply(pd.to_numeric, errors="raise")
    return table


def _with_points(volume: Path, candidates: pd.DataFrame) -> list[Case]:
    rows = candidates
    if "seriesuid" in candidates.columns:
        rows = candidates[candidates["seriesuid"].astype(str).str.strip() == case_id(volume)]
    if rows.empty:  # reported as this input's error row
        return [Case(volume, point=(np.nan, np.nan, np.nan))]
    return [Case(volume, point=(float(x), float(y), float(z))) for x, y, z in rows[COORDS].to_numpy()]


def find_cases(inputs: Iterable[Path], cfg: DataConfig, *, masks_dir: Path | None = None,
               candidates: pd.DataFrame | None = None) -> list[Case]:
    """Cases from files and folders: a folder means every input in it (a DICOM folder is one case)."""
    task = get_task(cfg.task)
    volumes = task.spatial_dims == 3
    cases: list[Case] = []
    masks: dict[Path, dict[str, Path]] = {}
    for given in map(Path, inputs):
        if not given.exists():
            cases.append(Case(given))  # reported as an error row
            continue
        paths = (_volumes_in(given) if volumes else _images_in(given)) if given.is_dir() else [given]
        for path in paths:
            if candidates is not None and volumes:
                cases += _with_points(path, candidates)
            elif "mask" in task.inputs:
                cases.append(Case(path, mask=_mask_for(path, masks_dir, masks)))
            else:
                cases.append(Case(path))
    return cases


# --- preprocessing: each task's own input loader ------------------------------------------------

def load_input(case: Case, cfg: DataConfig, *, cache: dict | None = None
               ) -> tuple[np.ndarray, tuple[int, ...] | None]:
    """(C, *data.shape) float32 model input, and the raw 2D image's (H, W) where a mask is drawn."""
    task = get_task(cfg.task)
    if not case.path.exists():
        raise DataError(f"{case.path} does not exist.")
    if task.spatial_dims == 2 and not case.path.name.lower().endswith(IMAGE_2D_SUFFIXES):
        raise DataError(f"{case.path.name} is not a PNG or JPEG; a {cfg.task} model reads "
                        f"{', '.join(IMAGE_2D_SUFFIXES)} images.")
    return task.load_input(case, cfg, {} if cache is None else cache)


# --- deciding and writing ---------------------------------------------------------------------

def decide(model: LoadedModel, probabilities: np.ndarray) -> dict[str, Any]:
    """The predicted class at the saved threshold: a probability, or a mask's (H, W) probabilities.

    For a mask, ``probability`` is its highest pixel and the class is foreground when any pixel
    reaches the threshold; ``foreground_fraction`` is the share of such pixels.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim == 0:
        index = int(probabilities >= model.threshold)
        return {"probability": float(probabilities), "prediction": model.class_names[index]}
    fraction = float((probabilities >= model.threshold).mean())
    return {"probability": float(probabilities.max()), "prediction": model.class_names[int(fraction > 0)],
            "foreground_fraction": fraction}


def mask_image(probabilities: np.ndarray, threshold: float, shape: Sequence[int]) -> np.ndarray:
    """(h, w) probabilities -> uint8 0/255 mask at the input image's (H, W) (bilinear, then threshold)."""
    resized = resize(np.asarray(probabilities, dtype=np.float32), tuple(shape), mode="trilinear")
    return ((resized >= threshold) * 255).astype(np.uint8)


def _row(case: Case) -> dict[str, Any]:
    row: dict[str, Any] = {"path": str(case.path)}
    if case.point is not None:
        row.update(zip(COORDS, case.point))
    if case.mask is not None:
        row["mask"] = str(case.mask)
    return row


def _message(err: Exception) -> str:
    return str(err) if isinstance(err, DataError) else f"{type(err).__name__}: {err}"


def predict_cases(model: LoadedModel, cases: Sequence[Case], *, batch_size: int = 16,
                  mask_dir: Path | None = None, progress: bool = False) -> list[dict[str, Any]]:
    """One row per case: path, probability, prediction (and mask columns), or an ``error``.

    A case that cannot be read gets its error in its row; the others still run. Segmentation
    masks are written as PNGs (0/255, the input's size) into ``mask_dir`` when given.
    """
    from tqdm.auto import tqdm

    cfg = model.config.data
    cache: dict[str, Any] = {}  # the task's load_input keeps its last scan here
    rows: list[dict[str, Any]] = []
    pending: list[Pending] = []
    taken: set[str] = set()
    unmasked = sum(case.mask is None for case in cases)
    if model.info.get("training_data", {}).get("n_with_mask") and unmasked:
        logger.warning("%s was trained on crops around tumour masks, but %d of %d inputs have no mask "
                       "(masks/<case>.* beside them or --masks): those use the whole volume",
                       model.name, unmasked, len(cases))
    bar = tqdm(cases, desc=f"Predicting ({model.name})", unit="input",
               disable=None if progress else True)  # None: a bar on a terminal only
    for case in bar:
        row = _row(case)
        rows.append(row)
        try:
            x, shape = load_input(case, cfg, cache=cache)
        except Exception as err:  # any unreadable input: report it, go on with the rest
            logger.warning("Cannot predict %s: %s", case.path, _message(err))
            row["error"] = _message(err)
            continue
        pending.append((row, case, x, shape))
        if len(pending) >= batch_size:
            _flush(model, pending, mask_dir, taken)
    _flush(model, pending, mask_dir, taken)
    for row in rows:
        row.setdefault("error", "")
    return rows


def _flush(model: LoadedModel, pending: list[Pending], mask_dir: Path | None, taken: set[str]) -> None:
    if not pending:
        return
    probabilities = predict(model.module, np.stack([item[2] for item in pending]))
    for (row, case, _, shape), p in zip(pending, probabilities):
        row.update(decide(model, p))
        if mask_dir is not None and shape is not None:
            path = Path(mask_dir) / _free_name(case_id(case.path), taken)
            write_image_2d(mask_image(p, model.threshold, shape), path)
            row["mask_png"] = str(path)
    pending.clear()


def _free_name(stem: str, taken: set[str]) -> str:
    """``stem.png``, or ``stem-2.png``... when two inputs share a name."""
    name, n = f"{stem}.png", 1
    while name in taken:
        n += 1
        name = f"{stem}-{n}.png"
    taken.add(name)
    return name
