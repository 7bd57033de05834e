"""LUNA16 nodule candidates: the layout's reader, a seeded negative pool, cutouts, ``TASK``.

Layout: ``subset0..subset9/<seriesuid>.mhd`` + ``.raw``; ``candidates_V2.csv`` or ``candidates.csv``
(``seriesuid,coordX,coordY,coordZ,class``); optionally ``annotations.csv``
(``seriesuid,coordX,coordY,coordZ,diameter_mm``) for the positives' diameters. Coordinates are
world mm (x, y, z), mapped to voxels through each series' origin, spacing and direction.
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
from core.data.phantoms.luna16 import luna16_phantom
from core.data.prepared import DataOptions
from core.errors import DataError
from core.imageio import read_geometry, read_volume, volume_files, world_to_voxel
from core.tasks.task import Task, shape_3d

if TYPE_CHECKING:
    from core.inference import Case

logger = logging.getLogger(__name__)

COORDS = ["coordX", "coordY", "coordZ"]  # world mm, (x, y, z)
CANDIDATE_FILES = ("candidates_V2.csv", "candidates_V2/candidates_V2.csv", "candidates.csv")
PREPROCESS_VERSION = 1  # bump when the cutouts change, to invalidate old caches


def find_series(root: Path) -> dict[str, Path]:
    """Series uid -> ``.mhd`` path from every ``subset*`` folder of ``root`` (other entries ignored)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"LUNA16 folder {root} does not exist or is not a folder; pass --data with the "
                        "folder holding subset0..subset9, annotations.csv and candidates_V2.csv.")
    subsets = sorted(p for p in root.glob("subset*") if p.is_dir())
    if not subsets:
        zips = sorted(p.name for p in root.glob("subset*.zip"))
        hint = f" Unzip {', '.join(zips[:3])} first." if zips else ""
        raise DataError(f"No subset* folder in {root}; LUNA16 series live in subset0..subset9/"
                        f"<seriesuid>.mhd + .raw.{hint}")
    found: dict[str, Path] = {}
    for path in (p for s in subsets for p in sorted(s.rglob("*.mhd")) if not p.name.startswith(".")):
        uid = path.name[: -len(".mhd")]
        if uid in found:
            raise DataError(f"Series {uid} appears twice: {found[uid]} and {path}; keep one copy.")
        found[uid] = path
    if not found:
        raise DataError(f"No .mhd file in {', '.join(s.name for s in subsets)} under {root}; each "
                        "series must be <seriesuid>.mhd beside its .raw.")
    logger.info("LUNA16: %d series in %d subset folders of %s", len(found), len(subsets), root)
    return found


def candidates_csv(root: Path, override: Path | None = None) -> Path:
    """The candidates file: ``override``, else ``candidates_V2.csv`` before ``candidates.csv``."""
    if override is not None:
        if not Path(override).is_file():
            raise DataError(f"Candidates CSV {override} does not exist; pass --labels-csv with the "
                            "path of candidates_V2.csv or candidates.csv.")
        return Path(override)
    present = [Path(root) / name for name in CANDIDATE_FILES if (Path(root) / name).is_file()]
    if not present:
        raise DataError(f"No candidates file in {root}: expected candidates_V2.csv or candidates.csv "
                        "(seriesuid,coordX,coordY,coordZ,class) from the LUNA16 download.")
    logger.info("LUNA16 candidates from %s%s", present[0].name,
                f" (preferred over {present[-1].name})" if len(present) > 1 else "")
    return present[0]


def read_table(path: Path, required: Iterable[str]) -> pd.DataFrame:
    """A LUNA16 CSV with numeric coordinates; a missing column raises, listing the ones present."""
    try:
        table = pd.read_csv(path, dtype={"seriesuid": str}, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataError(f"Cannot read {path}: {err}. A comma-separated LUNA16 CSV is needed.") from err
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise DataError(f"{path} has no column {', '.join(map(repr, missing))}; its columns are "
                        f"{list(table.columns)}. LUNA16 needs {list(required)}.")
    table["seriesuid"] = table["seriesuid"].astype(str).str.strip()
    numeric = table[COORDS].apply(pd.to_numeric, errors="coerce")
    bad = numeric.isna().any(axis=1)
    if bad.any():
        logger.warning("Dropped %d rows of %s without numeric coordinates (rows e.g. %s)",
                       int(bad.sum()), path.name, list(np.flatnonzero(bad)[:5] + 2))
    table[COORDS] = numeric
    return table[~bad]


def _labels(table: pd.DataFrame, path: Path) -> np.ndarray:
    labels = pd.to_numeric(table["class"], errors="coerce")
    if not labels.isin([0, 1]).all():
        seen = table["class"][~labels.isin([0, 1])].astype(str).value_counts().head(5).to_dict()
        raise DataError(f"Column 'class' of {path} must be 0 or 1; also found {seen}.")
    return labels.to_numpy(np.int64)


def _examples(values: Iterable[str]) -> str:
    values = sorted(set(values))
    return ", ".join(values[:3]) + (" ..." if len(values) > 3 else "")


def _keep_present(table: pd.DataFrame, series: dict[str, Path], path: Path) -> pd.DataFrame:
    """Rows whose series is on disk; the rest are counted and warned about (all gone: an error)."""
    present = table["seriesuid"].isin(series.keys())
    if not present.any():
        raise DataError(f"None of the {len(table)} candidates in {path} has its series on disk "
                        f"(candidate series e.g. {_examples(table['seriesuid'])}; series found e.g. "
                        f"{_examples(series)}). Check that the subset folders match the CSV.")
    if not present.all():
        absent = table["seriesuid"][~present]
        logger.warning("Skipped %d candidates of %d series not found in any subset folder (e.g. %s)",
                       int((~present).sum()), absent.nunique(), _examples(absent))
    return table[present]


def _voxel_centres(table: pd.DataFrame, series: dict[str, Path]) -> np.ndarray:
    """(N, 3) continuous (z, y, x) voxel centres from each series' header geometry; NaN outside."""
    centres = np.full((len(table), 3), np.nan)
    world = table[COORDS].to_numpy(np.float64)
    for uid, rows in table.groupby("seriesuid", sort=False).indices.items():
        shape, geometry = read_geometry(series[uid])
        index = world_to_voxel(world[rows], geometry)
        inside = np.all((np.rint(index) >= 0) & (np.rint(index) < shape), axis=1)
        centres[rows[inside]] = index[inside]
    return centres


def _diameters(table: pd.DataFrame, annotations: pd.DataFrame | None) -> np.ndarray:
    """Each positive's nearest same-series annotation diameter, if it lies inside that nodule."""
    out = np.full(len(table), np.nan)
    if annotations is None:
        return out
    by_series = {uid: rows for uid, rows in annotations.groupby("seriesuid")}
    world = table[COORDS].to_numpy(np.float64)
    for i in np.flatnonzero(table["label"].to_numpy() == 1):
        nodules = by_series.get(table["seriesuid"].iat[i])
        if nodules is None:
            continue
        gaps = np.linalg.norm(nodules[COORDS].to_numpy() - world[i], axis=1)
        nearest = int(np.argmin(gaps))
        if gaps[nearest] <= nodules["diameter_mm"].iat[nearest] / 2:
            out[i] = nodules["diameter_mm"].iat[nearest]
    return out


def read_luna16_manifest(root: Path, *, candidates: Path | None = None) -> pd.DataFrame:
    """One row per usable candidate: id, group (seriesuid), label, image, world and voxel centre, diameter.

    ``center_z/y/x`` are continuous voxel indices in array order; ``diameter_mm`` is NaN for
    negatives and for positives that match no annotation.
    """
    root = Path(root)
    series = find_series(root)
    path = candidates_csv(root, candidates)
    table = read_table(path, ["seriesuid", *COORDS, "class"])
    table = table.assign(label=_labels(table, path), row=table.index.to_numpy())  # the CSV's data row
    table = _keep_present(table, series, path).reset_index(drop=True)
    centres = _voxel_centres(table, series)
    outside = np.isnan(centres[:, 0])
    if outside.all():
        raise DataError(f"Every candidate of {path} falls outside its series' volume; the world "
                        "coordinates do not match the .mhd geometry (origin, spacing, direction).")
    if outside.any():
        logger.warning("Skipped %d candidates whose centre lies outside their volume (series e.g. %s)",
                       int(outside.sum()), _examples(table["seriesuid"][outside]))
    annotations_path = root / "annotations.csv"
    annotations = (read_table(annotations_path, ["seriesuid", *COORDS, "diameter_mm"])
                   if annotations_path.is_file() else None)
    if annotations is None:
        logger.warning("No annotations.csv in %s: positive candidates keep no diameter", root)
    manifest = pd.DataFrame({
        "id": [f"cand{r:07d}" for r in table["row"]], "group": table["seriesuid"].to_numpy(),
        "label": table["label"].to_numpy(np.int64), "image": [str(series[u]) for u in table["seriesuid"]],
        **{c: table[c].to_numpy() for c in COORDS},
        "center_z": centres[:, 0], "center_y": centres[:, 1], "center_x": centres[:, 2],
        "diameter_mm": _diameters(table, annotations)})[~outside].reset_index(drop=True)
    if manifest["label"].nunique() < 2:
        raise DataError(f"Only class {int(manifest['label'].iat[0])} is left among the {len(manifest)} "
                        f"usable candidates of {path}; both 0 and 1 are needed (add the subsets holding "
                        "the missing class).")
    manifest.attrs["candidates_csv"] = str(path)
    logger.info("LUNA16 manifest: %d candidates (%d positive, %d with a diameter) in %d series",
                len(manifest), int(manifest["label"].sum()), int(manifest["diameter_mm"].notna().sum()),
                manifest["group"].nunique())
    return manifest


def select_pool(splits: pd.DataFrame, *, ratio: float, seed: int) -> pd.DataFrame:
    """Every val and test candidate (scored as the challenge scores, at the data's prevalence),
    and of train every positive plus ``ratio`` seeded negatives per positive (all if ratio 0)."""
    rng = np.random.default_rng(seed)
    train = (splits["split"] == "train").to_numpy()
    keep = ~train | (splits["label"].to_numpy() == 1)
    negatives = np.flatnonzero(train & ~keep)
    n_pos = int((train & (splits["label"] == 1).to_numpy()).sum())
    wanted = len(negatives) if ratio <= 0 else min(len(negatives), int(round(ratio * n_pos)))
    keep[rng.choice(negatives, size=wanted, replace=False)] = True
    return splits[keep].reset_index(drop=True)


def window(hu: np.ndarray, hu_window: tuple[float, float]) -> np.ndarray:
    """HU clipped to ``hu_window`` then scaled to [0, 1] (float32)."""
    lo, hi = hu_window
    return ((np.clip(hu, lo, hi) - lo) / (hi - lo)).astype(np.float32)


def cutout(volume: np.ndarray, centre_zyx: np.ndarray, shape: tuple[int, int, int], *,
           fill: float) -> np.ndarray:
    """``shape`` voxels of a (z, y, x) volume with voxel ``round(centre)`` at index ``shape // 2``.

    Where the box leaves the volume it holds ``fill`` (the HU window minimum), so the candidate
    stays centred even at the border.
    """
    start = np.rint(np.asarray(centre_zyx)).astype(int) - np.asarray(shape) // 2
    stop = start + np.asarray(shape)
    out = np.full(tuple(shape), fill, dtype=volume.dtype)
    lo, hi = np.maximum(start, 0), np.minimum(stop, volume.shape)
    if np.all(hi > lo):
        out[tuple(slice(a - s, b - s) for a, b, s in zip(lo, hi, start))] = \
            volume[tuple(slice(a, b) for a, b in zip(lo, hi))]
    return out


def preprocess(rows: pd.DataFrame, cfg: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    """The candidates of one series -> x (n, 1, D, H, W) float32 cutouts in [0, 1], y (n,) int64.

    The scan is read once for all of its candidates.
    """
    volume, _ = read_volume(Path(rows["image"].iat[0]))
    centres = rows[["center_z", "center_y", "center_x"]].to_numpy()
    shape = shape_3d(cfg.shape)
    x = np.empty((len(rows), 1, *shape), dtype=np.float32)
    for i, centre in enumerate(centres):
        x[i, 0] = window(cutout(volume, centre, shape, fill=cfg.hu_window[0]), cfg.hu_window)
    return x, rows["label"].to_numpy(np.int64)


def load_input(case: Case, cfg: DataConfig, cache: dict) -> tuple[np.ndarray, None]:
    """A candidate point (world mm) of a whole scan, or the scan's centre, as a (1, D, H, W) cutout.

    Candidates of one scan come in a row: ``cache`` keeps the last scan read.
    """
    if cache.get("path") != case.path:
        cache.clear()
        cache["volume"], cache["geometry"] = read_volume(case.path)
        cache["path"] = case.path
    volume = cache["volume"]
    if case.point is None:
        centre = np.asarray(volume.shape) // 2
    elif not np.all(np.isfinite(case.point)):
        from core.inference import case_id

        raise DataError(f"No candidate of the candidates CSV has seriesuid {case_id(case.path)!r}.")
    else:
        centre = world_to_voxel(np.asarray(case.point), cache["geometry"])
        if np.any(np.rint(centre) < 0) or np.any(np.rint(centre) >= volume.shape):
            raise DataError(f"Candidate {case.point} (world mm) lies outside {case.path.name} "
                            f"(voxel {np.round(centre, 1).tolist()} of shape {list(volume.shape)}).")
    hu = cutout(volume, centre, shape_3d(cfg.shape), fill=cfg.hu_window[0])
    return window(hu, cfg.hu_window)[None], None


def read_manifest(root: Path, options: DataOptions) -> pd.DataFrame:
    return read_luna16_manifest(root, candidates=options.labels_csv)


def pool(splits: pd.DataFrame, cfg: DataConfig, seed: int) -> pd.DataFrame:
    """The preprocessed candidates: train's seeded pool, every val and test candidate."""
    chosen = select_pool(splits, ratio=cfg.negative_pool_ratio, seed=seed)
    counts = chosen.groupby(["split", "label"]).size().unstack(fill_value=0).to_dict(orient="index")
    logger.info("LUNA16 candidates preprocessed (train: %.0f negatives per positive at most; val and "
                "test: all): %s", cfg.negative_pool_ratio, counts)
    return chosen


def fingerprint(root: Path, selected: pd.DataFrame, options: DataOptions) -> str:
    """The candidates and annotations tables in full; each pooled scan by its size, head and tail."""
    csv_path = candidates_csv(root, options.labels_csv)
    tables = [csv_path] + [p for p in [root / "annotations.csv"] if p.is_file()]
    volumes = [f for image in sorted(selected["image"].unique()) for f in volume_files(Path(image))]
    content = dataset_fingerprint(tables) + dataset_fingerprint(volumes, chunk_bytes=1 << 16)
    return hash_settings({"files": content, "candidates": csv_path.name})


def cache_settings(cfg: DataConfig, options: DataOptions, seed: int) -> dict[str, Any]:
    return {"version": PREPROCESS_VERSION, "shape": cfg.shape, "hu_window": cfg.hu_window,
            "split": cfg.split, "seed": seed, "pool_ratio": cfg.negative_pool_ratio}


def describe(manifest: pd.DataFrame, selected: pd.DataFrame) -> dict[str, Any]:
    counts = selected.groupby(["split", "label"]).size().unstack(fill_value=0).to_dict(orient="index")
    return {"n_series": int(manifest["group"].nunique()), "n_candidates": len(manifest),
            "n_pool": len(selected),
            "pool": {k: {str(c): int(n) for c, n in v.items()} for k, v in counts.items()},
            "candidates_csv": Path(manifest.attrs["candidates_csv"]).name}


def challenge_metrics(rows: pd.DataFrame, probabilities: np.ndarray, root: Path) -> dict[str, Any]:
    """FROC and CPM over the test scans as the LUNA16 challenge scores them: hits inside an
    annotated nodule's radius, one per nodule; candidates at excluded findings neither hit nor miss."""
    from core.froc import froc

    path = Path(root) / "annotations.csv"
    if not path.is_file():
        logger.warning("No annotations.csv in %s: FROC and CPM need it; reporting AUROC only", root)
        return {}
    series = list(pd.unique(rows["group"]))
    annotations = read_table(path, ["seriesuid", *COORDS, "diameter_mm"])
    excluded_path = Path(root) / "annotations_excluded.csv"
    excluded = (read_table(excluded_path, ["seriesuid", *COORDS, "diameter_mm"])
                if excluded_path.is_file() else None)
    if excluded is None:
        logger.info("No annotations_excluded.csv in %s: no candidate is set aside", root)
    candidates = pd.DataFrame({"seriesuid": rows["group"].to_numpy(),
                               **{c: rows[c].to_numpy() for c in COORDS},
                               "probability": np.asarray(probabilities, dtype=float)})
    keep = lambda table: table[table["seriesuid"].isin(series)]  # noqa: E731
    return {"froc": froc(candidates, keep(annotations), None if excluded is None else keep(excluded),
                         series=series)}


TASK = Task(
    name="luna16", kind="classification", spatial_dims=3, class_names=("non-nodule", "nodule"),
    group_unit="series", read_manifest=read_manifest, preprocess=preprocess,
    load_input=load_input, phantom=luna16_phantom, cache_settings=cache_settings,
    fingerprint=fingerprint, select=pool, describe=describe, read_unit="image",
    inputs=frozenset({"point"}), test_metrics=challenge_metrics)
