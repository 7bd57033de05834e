"""python benchmarks/realsize_data.py [--out /tmp/medtune-realsize] [--scans 24] [--series 12]

Synthetic data at real scan size, in the real layouts, for the scale benchmarks:

- ``<out>/luna16-*``: LUNA16 layout, ``subset0..9/<seriesuid>.mhd`` + ``.raw`` of 512x512x(120-300)
  int16 HU (in-plane 0.55-0.9 mm, slices 1.0-2.5 mm, origins as the scanner's table puts them,
  a few series with x and y flipped), ``candidates_V2.csv`` with ~200 negatives and 1-3 positives
  per scan, ``annotations.csv`` with the positives' diameters.
- ``<out>/egfr-*``: NSCLC-Radiogenomics style, one DICOM series folder of 512x512x(80-150) int16
  slices per case plus ``clinical.csv`` (``Case ID``, ``EGFR mutation status``).

Each set is written once (atomically) and reused while its folder is complete. About 3.3 GB for
the defaults. The content is plain (body, lungs, nodules, noise): these sets time the IO and the
preprocessing, they are not for learning.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from core.data.phantoms.staging import MARKER, generate_once
from core.imageio import Geometry, voxel_to_world, write_dicom_series, write_volume

VERSION = "realsize-v1"
SIZE = 512  # in-plane voxels
UID_ROOT = "1.3.6.1.4.1.14519.5.2.1.6279.6001."
IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
FLIPPED_XY = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)
NOISE_SLICES = 7  # distinct noise slices cycled through a volume (cheap, still not constant)


def _slice_template(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(512, 512) int16 HU chest slice (air, soft-tissue body, two lungs) and its lung mask."""
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) / SIZE - 0.5
    body = (x / rng.uniform(0.40, 0.46)) ** 2 + ((y - 0.02) / rng.uniform(0.30, 0.36)) ** 2 < 1
    lungs = np.zeros_like(body)
    for side in (-1, 1):
        lungs |= ((x - side * 0.17) / 0.13) ** 2 + ((y + 0.01) / 0.22) ** 2 < 1
    hu = np.where(lungs, -850, np.where(body, 40, -1000)).astype(np.int16)
    return hu, lungs


def _volume(rng: np.random.Generator, depth: int, nodules: list[tuple[np.ndarray, float]],
            spacing_zyx: np.ndarray) -> np.ndarray:
    """(depth, 512, 512) int16 HU: the chest slice repeated, noise, solid spherical nodules."""
    template, _ = _slice_template(rng)
    noise = rng.normal(0, 20, size=(NOISE_SLICES, SIZE, SIZE)).astype(np.int16)
    volume = np.empty((depth, SIZE, SIZE), dtype=np.int16)
    for k in range(depth):
        np.add(template, noise[k % NOISE_SLICES], out=volume[k])
    for centre, diameter in nodules:  # centre: (z, y, x) voxels
        radius = diameter / 2 / spacing_zyx
        lo = np.maximum(np.floor(centre - radius).astype(int), 0)
        hi = np.minimum(np.ceil(centre + radius).astype(int) + 1, volume.shape)
        grid = np.ogrid[tuple(slice(a, b) for a, b in zip(lo, hi))]
        inside = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radius)) <= 1
        volume[tuple(slice(a, b) for a, b in zip(lo, hi))][inside] = int(rng.uniform(0, 150))
    return volume


def _lung_voxels(rng: np.random.Generator, lungs: np.ndarray, depth: int, n: int) -> np.ndarray:
    """(n, 3) continuous (z, y, x) voxel points inside the lungs."""
    ys, xs = np.nonzero(lungs)
    pick = rng.integers(len(ys), size=n)
    return np.column_stack([rng.uniform(2, depth - 3, size=n), ys[pick] + rng.uniform(-0.5, 0.5, n),
                            xs[pick] + rng.uniform(-0.5, 0.5, n)])


def _luna_series(rng: np.random.Generator) -> tuple[np.ndarray, Geometry, np.ndarray, np.ndarray, list]:
    """One scan: volume, geometry, positives' and negatives' (z, y, x) voxels, diameters (mm)."""
    depth = int(rng.integers(120, 301))
    inplane, thickness = rng.uniform(0.55, 0.9), rng.choice([1.0, 1.25, 1.5, 2.0, 2.5])
    spacing_zyx = np.array([thickness, inplane, inplane])
    _, lungs = _slice_template(np.random.default_rng(rng.integers(1 << 31)))
    positives = _lung_voxels(rng, lungs, depth, int(rng.integers(1, 4)))
    diameters = list(rng.uniform(4.0, 20.0, size=len(positives)))
    negatives = _lung_voxels(rng, lungs, depth, int(rng.integers(180, 221)))
    volume = _volume(rng, depth, list(zip(positives, diameters)), spacing_zyx)
    flipped = rng.uniform() < 0.15
    half = SIZE * inplane / 2
    offset = rng.uniform(0, 40) if flipped else rng.uniform(-40, 0)  # the table's height, mm
    origin = (half, half - offset, rng.uniform(-350, -50)) if flipped else \
        (-half, offset - half, rng.uniform(-350, -50))
    geometry = Geometry(spacing=(inplane, inplane, float(thickness)), origin=origin,
                        direction=FLIPPED_XY if flipped else IDENTITY)
    return volume, geometry, positives, negatives, diameters


def write_luna16(folder: Path, *, n_scans: int, seed: int) -> None:
    """``n_scans`` LUNA16-layout scans over subset0..9 plus candidates_V2.csv and annotations.csv."""
    annotations, candidates = [], []
    for i in range(n_scans):
        rng = np.random.default_rng([seed, i])
        uid = UID_ROOT + "".join(str(d) for d in rng.integers(0, 10, size=30))
        volume, geometry, positives, negatives, diameters = _luna_series(rng)
        write_volume(volume, geometry, folder / f"subset{i % 10}" / f"{uid}.mhd")
        for centre, diameter in zip(voxel_to_world(positives, geometry), diameters):
            annotations.append((uid, *centre, diameter))
            candidates.append((uid, *(centre + rng.normal(0, 0.5, 3)), 1))
        candidates += [(uid, *point, 0) for point in voxel_to_world(negatives, geometry)]
        print(f"luna16 scan {i + 1}/{n_scans}: {volume.shape} {volume.nbytes / 2**20:.0f} MiB", flush=True)
    columns = ["seriesuid", "coordX", "coordY", "coordZ"]
    annotations_table = pd.DataFrame(annotations, columns=[*columns, "diameter_mm"])
    annotations_table.to_csv(folder / "annotations.csv", index=False)
    pd.DataFrame(candidates, columns=[*columns, "class"]).to_csv(folder / "candidates_V2.csv", index=False)


def write_egfr(folder: Path, *, n_series: int, seed: int) -> None:
    """``n_series`` DICOM series folders (one per case) and clinical.csv; a third are Mutant."""
    statuses = ["Mutant" if i % 3 == 0 else "Wildtype" for i in range(n_series)]
    ids = [f"R01-{i + 1:03d}" for i in range(n_series)]
    for i, case in enumerate(ids):
        rng = np.random.default_rng([seed, 1000 + i])
        depth = int(rng.integers(80, 151))
        inplane, thickness = rng.uniform(0.6, 0.9), rng.choice([1.25, 2.5])
        spacing_zyx = np.array([thickness, inplane, inplane])
        _, lungs = _slice_template(np.random.default_rng(rng.integers(1 << 31)))
        tumour = _lung_voxels(rng, lungs, depth, 1)
        volume = _volume(rng, depth, [(tumour[0], rng.uniform(15, 40))], spacing_zyx)
        half = SIZE * inplane / 2
        geometry = Geometry(spacing=(inplane, inplane, float(thickness)),
                            origin=(-half, rng.uniform(-40, 0) - half, rng.uniform(-350, -50)))
        write_dicom_series(volume, geometry, folder / case, patient_id=case)
        print(f"egfr series {i + 1}/{n_series}: {volume.shape}", flush=True)
    clinical = pd.DataFrame({"Case ID": ids, "EGFR mutation status": statuses})
    clinical.to_csv(folder / "clinical.csv", index=False)


def realsize_sets(out: Path, *, n_scans: int = 24, n_series: int = 12, seed: int = 0) -> dict[str, Path]:
    """Task name -> folder of its real-size set under ``out``, generated unless already complete."""
    out = Path(out)
    repo = Path(__file__).resolve().parents[1]
    if out.resolve().is_relative_to(repo):
        raise ValueError(f"--out {out} lies inside the repository {repo}; pass a folder outside it "
                         "(e.g. /tmp)")
    if n_scans < 12 or n_series < 9:
        raise ValueError(f"Need >= 12 scans and >= 9 series so every split gets both classes, got "
                         f"{n_scans} scans and {n_series} series")
    luna = out / f"luna16-{VERSION}-n{n_scans}-s{seed}"
    egfr = out / f"egfr-{VERSION}-n{n_series}-s{seed}"
    generate_once(luna, lambda staging: write_luna16(staging, n_scans=n_scans, seed=seed),
                  meta={"version": VERSION, "n_scans": n_scans, "seed": seed})
    generate_once(egfr, lambda staging: write_egfr(staging, n_series=n_series, seed=seed),
                  meta={"version": VERSION, "n_series": n_series, "seed": seed})
    return {"luna16": luna, "egfr": egfr}


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file() and p.name != MARKER)


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--out", type=Path, default=Path("/tmp/medtune-realsize"))
    args.add_argument("--scans", type=int, default=24, help="LUNA16-layout scans")
    args.add_argument("--series", type=int, default=12, help="egfr DICOM series")
    args.add_argument("--seed", type=int, default=0)
    opts = args.parse_args()
    started = time.perf_counter()
    try:
        sets = realsize_sets(opts.out, n_scans=opts.scans, n_series=opts.series, seed=opts.seed)
    except ValueError as err:
        sys.exit(str(err))
    for name, folder in sets.items():
        print(f"{name}: {folder} ({folder_bytes(folder) / 2**30:.2f} GiB)")
    print(f"ready in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
