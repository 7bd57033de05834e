"""A synthetic LUNA16 dataset in the real layout: subset*/<seriesuid>.mhd + .raw and the CSVs.

Each easy series is a 64x96x96 (z, y, x) int16 HU chest patch: a soft-tissue wall around air-filled
lung, thin straight vessels (radius 0.5-1 mm, partial-volumed to -550..-250 HU), and in most
series 1-3 solid spherical nodules (diameter 3-10 mm, 0..150 HU). The learnable signal is a dense
compact blob at the centre: negatives sit on vessels, in plain lung, or near the volume's border.
Geometry varies: anisotropic spacing (~0.7 mm in-plane, 1.8-2.5 mm slices), random origins, and
some series with a flipped direction matrix, so candidates' world coordinates only land right
through the geometry.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from core.data.phantoms import check_difficulty
from core.data.phantoms.luna16_hard import hard_series
from core.data.phantoms.staging import MARKER, generate_once
from core.imageio import Geometry, voxel_to_world, write_volume

logger = logging.getLogger(__name__)

VERSION = "luna16-v3"
HARD_VERSION = "luna16-hard-v4"  # the hard scans' own version: changing them leaves easy caches valid
HARD_N_SERIES = 44  # default hard size: 6-7 series, 13+ positive candidates, in val and in test
HARD_MOST_NODULES = 6  # nodules in a hard series that has any: 1-6 (LUNA16 has up to ~6 a scan)
SHAPE = (64, 96, 96)  # (z, y, x) voxels
UID_ROOT = "1.3.6.1.4.1.14519.5.2.1.6279.6001."
DIRECTIONS = (
    (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0),  # identity, as in most of LUNA16
    (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0),  # x and y flipped
    (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0),  # z flipped
)


def _uid(rng: np.random.Generator) -> str:
    return UID_ROOT + "".join(str(d) for d in rng.integers(0, 10, size=30))


def _lung_point(rng: np.random.Generator, extent: np.ndarray, *, reach: float) -> np.ndarray:
    """A random (z, y, x) mm point inside the lung, within ``reach`` of its in-plane radius."""
    angle, radius = rng.uniform(0, 2 * np.pi), 0.42 * reach * np.sqrt(rng.uniform())
    return np.array([rng.uniform(0.05, 0.95) * extent[0],
                     extent[1] * (0.5 + radius * np.sin(angle)),
                     extent[2] * (0.5 + radius * np.cos(angle))])


def _distance(grid: tuple[np.ndarray, ...], point: np.ndarray,
              axis: np.ndarray | None = None) -> np.ndarray:
    """Distance in mm from each voxel to a point, or to the line through it along unit ``axis``."""
    d = [g - p for g, p in zip(grid, point)]
    squared = d[0] ** 2 + d[1] ** 2 + d[2] ** 2
    if axis is not None:
        squared = squared - (d[0] * axis[0] + d[1] * axis[1] + d[2] * axis[2]) ** 2
    return np.sqrt(np.maximum(squared, 0.0))


def _series(rng: np.random.Generator, n_nodules: int) -> tuple[np.ndarray, Geometry, list, list]:
    """One series: int16 (z, y, x) HU, geometry, nodules [(centre mm, diameter)], negatives [mm]."""
    inplane, thickness = rng.uniform(0.65, 0.8), rng.uniform(1.8, 2.5)
    spacing = np.array([thickness, inplane, inplane])  # (z, y, x)
    extent = spacing * SHAPE
    grid = tuple((np.arange(n, dtype=np.float32) * s).reshape([-1 if k == a else 1 for k in range(3)])
                 for a, (n, s) in enumerate(zip(SHAPE, spacing)))
    wall = np.sqrt(((grid[1] - extent[1] / 2) / (0.5 * extent[1])) ** 2
                   + ((grid[2] - extent[2] / 2) / (0.5 * extent[2])) ** 2)
    volume = np.where(wall < 0.86, -850.0, np.where(wall < 1.0, 40.0, -1000.0))
    volume = np.broadcast_to(volume, SHAPE).astype(np.float32)
    vessels = []
    for _ in range(rng.integers(5, 9)):
        axis = rng.normal(size=3) * [0.5, 1.0, 1.0]
        vessels.append((_lung_point(rng, extent, reach=0.9), axis / np.linalg.norm(axis)))
        inside = _distance(grid, *vessels[-1]) <= rng.uniform(0.5, 1.0)
        volume[inside] = rng.uniform(-550, -250)  # thin: partial volume with the lung around
    nodules = []
    for _ in range(n_nodules):
        diameter = rng.uniform(3.0, 10.0)
        centre = _lung_point(rng, extent, reach=0.7)
        weight = np.clip((diameter / 2 - _distance(grid, centre)) / 0.8 + 0.5, 0.0, 1.0)
        volume = volume * (1 - weight) + rng.uniform(0, 150) * weight  # solid
        nodules.append((centre, diameter))
    volume += rng.normal(0, 25, size=SHAPE).astype(np.float32)
    negatives = _negatives(rng, extent, spacing, vessels, nodules)
    origin = (rng.uniform(-200, -100), rng.uniform(-220, -120), rng.uniform(-350, -50))
    geometry = Geometry(spacing=(inplane, inplane, thickness), origin=origin,
                        direction=DIRECTIONS[rng.integers(len(DIRECTIONS))])
    return np.clip(volume, -1024, 3071).round().astype(np.int16), geometry, nodules, negatives


def _negatives(rng: np.random.Generator, extent: np.ndarray, spacing: np.ndarray,
               vessels: list, nodules: list) -> list[np.ndarray]:
    """Candidate points (z, y, x mm) away from every nodule: on vessels, in lung, near the border."""
    points: list[np.ndarray] = []
    wanted = rng.integers(50, 70)
    while len(points) < wanted:
        kind = rng.uniform()
        if kind < 0.25:  # on a vessel, inside the volume
            point, axis = vessels[rng.integers(len(vessels))]
            point = point + axis * rng.uniform(-30, 30)
        elif kind < 0.8:  # plain lung
            point = _lung_point(rng, extent, reach=0.95)
        else:  # within 4 voxels of a face: the cutout needs padding
            point = rng.uniform(0, 1, size=3) * extent
            axis = rng.integers(3)
            offset = rng.uniform(0, 4) * spacing[axis]
            point[axis] = offset if rng.uniform() < 0.5 else extent[axis] - spacing[axis] - offset
        if np.all((point >= 0) & (point <= extent - spacing)) and all(
                np.linalg.norm(point - c) > d / 2 + 4 for c, d in nodules):
            points.append(point)
    return points


def _world(points_mm: list[np.ndarray], spacing_zyx: np.ndarray, geometry: Geometry) -> np.ndarray:
    """(z, y, x) mm from the array's first voxel -> world (x, y, z) mm through the geometry."""
    if not points_mm:
        return np.zeros((0, 3))
    return voxel_to_world(np.asarray(points_mm) / spacing_zyx, geometry)


def _counts(rng: np.random.Generator, n_series: int, *, most: int = 3) -> np.ndarray:
    """Nodules per series: a quarter (at least 3) without any, as LUNA16 has, the rest 1-``most``."""
    n_clear = max(3, round(0.25 * n_series))
    return rng.permutation([0] * n_clear + list(rng.integers(1, most + 1, size=n_series - n_clear)))


def _generate(folder: Path, n_series: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    counts = _counts(rng, n_series)
    annotations, candidates = [], []
    for i, n_nodules in enumerate(counts):
        series_rng = np.random.default_rng([seed, i])
        uid = _uid(series_rng)
        volume, geometry, nodules, negatives = _series(series_rng, int(n_nodules))
        write_volume(volume, geometry, folder / f"subset{i % 2}" / f"{uid}.mhd")
        spacing_zyx = np.array(geometry.spacing[::-1])
        centres = _world([c for c, _ in nodules], spacing_zyx, geometry)
        for centre, (_, diameter) in zip(centres, nodules):
            annotations.append((uid, *centre, diameter))
            for _ in range(1 + (series_rng.uniform() < 0.25)):  # V2 lists some nodules twice
                candidates.append((uid, *(centre + series_rng.normal(0, 0.4, 3)), 1))
        candidates += [(uid, *p, 0) for p in _world(negatives, spacing_zyx, geometry)]
    _write_tables(folder, rng, annotations, candidates)


def _generate_hard(folder: Path, n_series: int, seed: int) -> None:
    """The hard scans (``luna16_hard``): look-alike negatives, off-centre positive candidates,
    and excluded nodules whose candidates are labelled 0."""
    rng = np.random.default_rng([seed, 1])
    counts = _counts(rng, n_series, most=HARD_MOST_NODULES)
    annotations: list[tuple] = []
    excluded: list[tuple] = []
    candidates: list[tuple] = []
    for i, n_nodules in enumerate(counts):
        series_rng = np.random.default_rng([seed, 1, i])
        uid = _uid(series_rng)
        scan = hard_series(series_rng, int(n_nodules))
        geometry = Geometry(spacing=tuple(scan.spacing[::-1]),
                            origin=(series_rng.uniform(-200, -100), series_rng.uniform(-220, -120),
                                    series_rng.uniform(-350, -50)),
                            direction=DIRECTIONS[series_rng.integers(len(DIRECTIONS))])
        volume = np.clip(scan.volume, -1024, 3071).round().astype(np.int16)
        write_volume(volume, geometry, folder / f"subset{i % 2}" / f"{uid}.mhd")
        for findings, table, label in ((scan.nodules, annotations, 1), (scan.excluded, excluded, 0)):
            for centre, diameter in findings:
                table.append((uid, *_world([centre], scan.spacing, geometry)[0], diameter))
                for _ in range(1 + (series_rng.uniform() < 0.25)):  # V2 lists some nodules twice
                    offset = np.clip(series_rng.normal(0, 0.15 * diameter, 3), -diameter / 3, diameter / 3)
                    candidates.append((uid, *_world([centre + offset], scan.spacing, geometry)[0], label))
        candidates += [(uid, *p, 0) for p in _world(scan.negatives, scan.spacing, geometry)]
    _write_tables(folder, rng, annotations, candidates, excluded=excluded)


def _write_tables(folder: Path, rng: np.random.Generator, annotations: list, candidates: list, *,
                  excluded: list | None = None) -> None:
    """annotations.csv, candidates_V2.csv (plus 4 candidates of a series not on disk), a stray
    README in subset0, an empty sampleSubmission.csv; annotations_excluded.csv if given."""
    absent = _uid(rng)  # a series from a subset that was not downloaded
    candidates = candidates + [(absent, *rng.uniform(-100, 100, 3), int(k == 0)) for k in range(4)]
    columns = ["seriesuid", "coordX", "coordY", "coordZ"]
    pd.DataFrame(annotations, columns=[*columns, "diameter_mm"]).to_csv(
        folder / "annotations.csv", index=False)
    if excluded is not None:
        pd.DataFrame(excluded, columns=[*columns, "diameter_mm"]).to_csv(
            folder / "annotations_excluded.csv", index=False)
    table = pd.DataFrame(candidates, columns=[*columns, "class"]).sort_values("seriesuid", kind="stable")
    table.to_csv(folder / "candidates_V2.csv", index=False)
    (folder / "subset0" / "README.txt").write_text("Phantom LUNA16 subset: not a volume.\n")
    pd.DataFrame({"seriesuid": [], "coordX": [], "coordY": [], "coordZ": [],
                  "probability": []}).to_csv(folder / "sampleSubmission.csv", index=False)


def luna16_phantom(cache_dir: Path, *, n_series: int | None = None, seed: int = 0,
                   difficulty: str = "hard") -> Path:
    """Folder of a synthetic LUNA16 dataset, generated on first use (seconds) and reused after.

    ``easy``: the scans described above (default 24 series); ``hard``: ``luna16_hard``'s scans,
    in the same layout plus annotations_excluded.csv (default 44 series, 1-6 nodules in each
    series that has any, so val and test each hold enough positives for a readable AUROC).
    """
    check_difficulty(difficulty)
    if n_series is None:
        n_series = HARD_N_SERIES if difficulty == "hard" else 24
    if n_series < 6:
        raise ValueError(f"luna16_phantom needs n_series >= 6 so every split gets both kinds of "
                         f"series, got {n_series}")
    version = HARD_VERSION if difficulty == "hard" else VERSION
    folder = Path(cache_dir) / "phantoms" / f"{version}-{difficulty}-n{n_series}-s{seed}"
    if not (folder / MARKER).is_file():
        logger.info("Generating the LUNA16 phantom (%d series, seed %d) in %s", n_series, seed, folder)
    generate = _generate_hard if difficulty == "hard" else _generate
    return generate_once(folder, lambda staging: generate(staging, n_series, seed),
                         meta={"version": version, "n_series": n_series, "seed": seed,
                               "difficulty": difficulty})
