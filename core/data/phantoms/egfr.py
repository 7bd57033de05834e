"""A synthetic EGFR dataset in the real on-disk layout (NIfTI CT + masks/ + clinical CSV).

Each case is a 48x64x64 (z, y, x) int16 HU chest patch: a soft-tissue body ellipse holding two
air-filled lungs with a few small vessels, and one tumour ellipsoid (radius 4-9 mm) in a lung.
The learnable signal is the tumour's texture. ``easy``: EGFR-mutant tumours are part-solid (ground
glass around -500 HU with a brighter solid core), wild-type tumours solid and homogeneous (~+40 HU).
``hard`` (the default, 320 cases): both classes are part-solid from overlapping ranges (a mutant's
solid core spans 15-45 % of its radius in mottled ground glass, a wild type's 78-100 % in a smoother
rim), and 2 % of the cases are drawn as the other class (label noise): the seed's defaults reach a
val AUROC of about 0.7 and a search finds configs above 0.9 (BENCHMARKS.md, "Phantom difficulty").
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from core.data.phantoms import check_difficulty
from core.data.phantoms.staging import MARKER, generate_once
from core.imageio import Geometry, write_volume

logger = logging.getLogger(__name__)

VERSION = "egfr-v1"  # easy; its arrays stay as they are
HARD_VERSION = "egfr-v2"
DEFAULT_CASES = {"easy": 160, "hard": 320}
SHAPE = (48, 64, 64)  # (z, y, x) voxels
FLIPPED = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)
IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
RADIUS_MM = (4.0, 9.0)  # tumour semi-axes before a per-axis 0.8-1.2 stretch
HARD_CORE_MUTANT = (0.15, 0.45)  # solid core's share of the tumour radius
HARD_CORE_WILDTYPE = (0.78, 1.00)
HARD_GLASS_MUTANT = (-600.0, -350.0)  # HU of the ground glass around the core
HARD_GLASS_WILDTYPE = (-500.0, -250.0)
HARD_MOTTLE_MUTANT = 50.0  # HU, voxel-wise mottling of the ground glass
HARD_MOTTLE_WILDTYPE = 25.0
HARD_FLIP = 0.02  # share of cases whose image is drawn as the other class (label noise)


def _ellipsoid(grid: tuple[np.ndarray, ...], centre: np.ndarray, semi_axes: np.ndarray) -> np.ndarray:
    """Normalised radius (<=1 inside) of an axis-aligned ellipsoid on an open (z, y, x) mm grid."""
    return sum(((g - c) / a) ** 2 for g, c, a in zip(grid, centre, semi_axes)) ** 0.5


def _lung_point(rng: np.random.Generator, lungs: list[tuple[np.ndarray, np.ndarray]],
                reach: float) -> np.ndarray:
    """A random point in a random lung, within ``reach`` of its normalised radius."""
    centre, semi_axes = lungs[rng.integers(len(lungs))]
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    return centre + semi_axes * direction * reach * rng.uniform() ** (1 / 3)


def _anatomy(rng: np.random.Generator) -> tuple[np.ndarray, tuple[np.ndarray, ...], list, np.ndarray]:
    """Body, lungs and vessels: (z, y, x) float HU volume, its open mm grid, the lungs, the spacing."""
    inplane, thickness = rng.uniform(0.6, 0.9), rng.uniform(1.25, 2.5)
    spacing_zyx = np.array([thickness, inplane, inplane])
    extent = spacing_zyx * SHAPE
    grid = tuple(np.ogrid[0:SHAPE[0], 0:SHAPE[1], 0:SHAPE[2]][k] * spacing_zyx[k] for k in range(3))
    mid = extent / 2
    volume = np.full(SHAPE, -1000.0)
    body = _ellipsoid(grid[1:], mid[1:], extent[1:] * [0.44, 0.47]) <= 1
    volume[np.broadcast_to(body, SHAPE)] = 40.0
    lungs = [(mid + [0, 0.02 * extent[1], side * 0.22 * extent[2]], extent * [0.6, 0.34, 0.18])
             for side in (-1, 1)]
    for centre, semi_axes in lungs:
        volume[_ellipsoid(grid, centre, semi_axes) <= 1] = -830.0
    for _ in range(rng.integers(4, 9)):  # vessels: small bright blobs, not the tumour's texture
        vessel = _ellipsoid(grid, _lung_point(rng, lungs, 0.9), np.full(3, rng.uniform(1.0, 2.2)))
        volume[vessel <= 1] = 30.0
    return volume, grid, lungs, spacing_zyx


def _tumour(rng: np.random.Generator, grid: tuple[np.ndarray, ...], lungs: list, extent: np.ndarray,
            radius_mm: tuple[float, float]) -> np.ndarray:
    """Normalised radius (<=1 inside) of a tumour ellipsoid placed in a lung, ``radius_mm`` across."""
    radius = rng.uniform(*radius_mm) * rng.uniform(0.8, 1.2, size=3)
    centre = _lung_point(rng, lungs, 0.5)
    centre[0] = np.clip(centre[0], radius[0] + 2, extent[0] - radius[0] - 2)
    return _ellipsoid(grid, centre, radius)


def _easy_texture(rng: np.random.Generator, volume: np.ndarray, r: np.ndarray, mutant: bool) -> None:
    """Mutant: ground glass (-600..-400 HU) with a brighter solid core; wild type: solid ~+40 HU."""
    mask = r <= 1
    if mutant:  # part-solid: ground glass with a brighter solid core and a mottled texture
        volume[mask] = rng.uniform(-600, -400) + rng.normal(0, 50, size=mask.sum())
        volume[r <= rng.uniform(0.15, 0.35)] = rng.uniform(0, 50)
    else:  # solid and homogeneous
        volume[mask] = rng.normal(40, 12)


def _hard_texture(rng: np.random.Generator, volume: np.ndarray, r: np.ndarray, mutant: bool) -> None:
    """Both classes part-solid, from overlapping ranges. Mutant: mottled ground glass around a small
    solid core; wild type: a larger, homogeneous solid core in a thinner, smoother ground-glass rim."""
    mask = r <= 1
    if mutant:
        volume[mask] = rng.uniform(*HARD_GLASS_MUTANT) + rng.normal(0, HARD_MOTTLE_MUTANT, size=mask.sum())
    else:
        volume[mask] = rng.uniform(*HARD_GLASS_WILDTYPE) + rng.normal(0, HARD_MOTTLE_WILDTYPE, size=mask.sum())
    core = rng.uniform(*(HARD_CORE_MUTANT if mutant else HARD_CORE_WILDTYPE))
    volume[r <= core] = rng.normal(40, 12)


def _case_volume(rng: np.random.Generator, mutant: bool,
                 difficulty: str = "easy") -> tuple[np.ndarray, np.ndarray, Geometry]:
    """One case: (z, y, x) int16 HU volume, uint8 tumour mask, and a random geometry."""
    volume, grid, lungs, spacing_zyx = _anatomy(rng)
    extent = spacing_zyx * SHAPE
    r = _tumour(rng, grid, lungs, extent, RADIUS_MM)
    (_easy_texture if difficulty == "easy" else _hard_texture)(rng, volume, r, mutant)
    volume += rng.normal(0, 20, size=SHAPE)

    direction = FLIPPED if rng.uniform() < 0.25 else IDENTITY
    origin = (rng.uniform(-220, -120), rng.uniform(-220, -120), rng.uniform(-400, -50))
    inplane, thickness = spacing_zyx[1], spacing_zyx[0]
    geometry = Geometry(spacing=(inplane, inplane, thickness), origin=origin, direction=direction)
    return np.clip(volume, -1024, 3071).round().astype(np.int16), (r <= 1).astype(np.uint8), geometry


def _clinical(rng: np.random.Generator, n_cases: int) -> pd.DataFrame:
    """NSCLC-Radiogenomics-style table: about 20 % Mutant, a few Unknown / Not collected rows."""
    ids = [f"R01-{i + 1:03d}" for i in range(n_cases)]
    n_unknown, n_uncollected = max(1, round(0.04 * n_cases)), max(1, round(0.02 * n_cases))
    n_labelled = n_cases - n_unknown - n_uncollected
    n_mutant = max(3, round(0.2 * n_labelled))
    status = (["Mutant"] * n_mutant + ["Wildtype"] * (n_labelled - n_mutant)
              + ["Unknown"] * n_unknown + ["Not collected"] * n_uncollected)
    return pd.DataFrame({
        "Case ID": ids,
        "Patient affiliation": "Phantom",
        "Age at Histological Diagnosis": rng.integers(45, 88, size=n_cases),
        "Gender": rng.choice(["Male", "Female"], size=n_cases),
        "Smoking status": rng.choice(["Current", "Former", "Nonsmoker"], size=n_cases),
        "EGFR mutation status": rng.permutation(status),
    })


def _generate(folder: Path, n_cases: int, seed: int, difficulty: str) -> None:
    clinical = _clinical(np.random.default_rng(seed), n_cases)
    for i, (case_id, status) in enumerate(zip(clinical["Case ID"], clinical["EGFR mutation status"])):
        # Unlabelled cases still get a volume: their texture is drawn like the others.
        rng = np.random.default_rng([seed, i])
        mutant = status == "Mutant" or (status not in ("Mutant", "Wildtype") and rng.uniform() < 0.2)
        if difficulty == "hard" and rng.uniform() < HARD_FLIP:
            mutant = not mutant
        volume, mask, geometry = _case_volume(rng, mutant, difficulty)
        write_volume(volume, geometry, folder / f"{case_id}.nii.gz")
        write_volume(mask, geometry, folder / "masks" / f"{case_id}.nii.gz")
    clinical.to_csv(folder / "clinical.csv", index=False)


def egfr_phantom(cache_dir: Path, *, n_cases: int | None = None, seed: int = 0,
                 difficulty: str = "hard") -> Path:
    """Folder of a synthetic EGFR dataset, generated on first use (seconds) and reused after.

    ``n_cases`` defaults to ``DEFAULT_CASES[difficulty]``: the hard set needs more cases for a
    validation AUROC finer than a few positives allow.
    """
    check_difficulty(difficulty)
    n_cases = DEFAULT_CASES[difficulty] if n_cases is None else n_cases
    version = VERSION if difficulty == "easy" else HARD_VERSION
    if n_cases < 10:
        raise ValueError(f"egfr_phantom needs n_cases >= 10 to hold both classes, got {n_cases}")
    folder = Path(cache_dir) / "phantoms" / f"{version}-{difficulty}-n{n_cases}-s{seed}"
    if not (folder / MARKER).is_file():
        logger.info("Generating the EGFR phantom (%d cases, seed %d) in %s", n_cases, seed, folder)
    return generate_once(folder, lambda staging: _generate(staging, n_cases, seed, difficulty),
                         meta={"version": version, "n_cases": n_cases, "seed": seed,
                               "difficulty": difficulty})
