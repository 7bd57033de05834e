"""The hard LUNA16 phantom's scans: small nodules among look-alike vessels, bumps and specks.

Each series is the easy phantom's 64x96x96 (z, y, x) chest patch made harder in the ways that make
real candidate classification hard: nodules are mostly small (3.5-15.5 mm, median ~7 mm, as
LUNA16's annotated nodules), a fifth sub-solid (ground glass, -650..-450 HU), some touching the
pleura or sitting on a vessel; vessels are many branching tubes (radius 0.6-1.8 mm, -450..+50 HU,
the thin ones dimmer from partial volume), mostly steep in z so that an axial slice shows them as
round blobs, and their junctions look like blobs; the pleura carries flat bumps; tiny 1.5-2.8 mm
specks look like nodules but, as in LUNA16, are not annotated; the lung has a textured background
and stronger noise. Half the negatives sit on those look-alikes. Label noise as in the challenge:
positive candidates lie off the nodule's centre, and about one nodule in eight is left out of
annotations.csv (a minority of readers marked it), listed in annotations_excluded.csv with its
candidates labelled 0.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import gaussian_filter

SHAPE = (64, 96, 96)  # (z, y, x) voxels, as the easy phantom
LUNG = 0.86  # lung radius as a fraction of the in-plane half-extent
EXCLUDED_FRACTION = 0.12  # nodules only a minority of readers marked: class 0, not annotated
SUBSOLID_FRACTION = 0.2
NOISE_HU = 40.0  # standard deviation of the scan noise


@dataclass
class HardSeries:
    """One scan's HU array (float32, z, y, x) and its findings, all points (z, y, x) mm."""

    volume: np.ndarray
    spacing: np.ndarray  # (z, y, x) mm
    nodules: list[tuple[np.ndarray, float]] = field(default_factory=list)  # (centre, diameter mm)
    excluded: list[tuple[np.ndarray, float]] = field(default_factory=list)  # not annotated: class 0
    negatives: list[np.ndarray] = field(default_factory=list)


def _grid(spacing: np.ndarray) -> tuple[np.ndarray, ...]:
    return tuple((np.arange(n, dtype=np.float32) * s).reshape([-1 if k == a else 1 for k in range(3)])
                 for a, (n, s) in enumerate(zip(SHAPE, spacing)))


def _distance(grid: tuple[np.ndarray, ...], point: np.ndarray, axis: np.ndarray | None = None,
              *, ray: bool = False) -> np.ndarray:
    """mm from each voxel to a point, to the line through it along unit ``axis``, or (``ray``) to
    the half-line leaving it along ``axis``."""
    d = [g - p for g, p in zip(grid, point)]
    squared = d[0] ** 2 + d[1] ** 2 + d[2] ** 2
    if axis is None:
        return np.sqrt(squared)
    along = d[0] * axis[0] + d[1] * axis[1] + d[2] * axis[2]
    if ray:
        along = np.maximum(along, 0.0)
    return np.sqrt(np.maximum(squared - along ** 2, 0.0))


def _paint(volume: np.ndarray, distance: np.ndarray, radius: float, hu: float, *,
           soft: float = 0.7) -> None:
    """Blend ``hu`` into ``volume`` inside ``radius`` mm, with a partial-volume edge ``soft`` mm wide."""
    weight = np.clip((radius - distance) / soft + 0.5, 0.0, 1.0)
    volume += weight * (hu - volume)


def _unit(rng: np.random.Generator, squash_z: float = 0.5) -> np.ndarray:
    axis = rng.normal(size=3) * [squash_z, 1.0, 1.0]
    return axis / np.linalg.norm(axis)


class _Scan:
    """Builds one hard series step by step; ``rng`` draws everything in a fixed order."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        inplane, thickness = rng.uniform(0.65, 0.8), rng.uniform(1.8, 2.5)
        self.spacing = np.array([thickness, inplane, inplane])
        self.extent = self.spacing * SHAPE
        self.grid = _grid(self.spacing)
        self.radius = LUNG * 0.5 * self.extent[1]  # lung radius in mm (y and x extents are equal)
        self.centre = self.extent / 2
        wall = np.sqrt((self.grid[1] - self.centre[1]) ** 2 + (self.grid[2] - self.centre[2]) ** 2)
        self.wall = np.broadcast_to(wall, SHAPE)
        texture = gaussian_filter(rng.normal(size=SHAPE).astype(np.float32), sigma=(1.0, 3.0, 3.0))
        lung = -860.0 + 40.0 * texture / (texture.std() + 1e-6)
        body = np.where(self.wall < self.radius, lung, np.where(wall < self.radius / LUNG, 40.0, -1000.0))
        self.volume = body.astype(np.float32)
        self.vessels: list[tuple[np.ndarray, np.ndarray]] = []
        self.junctions: list[np.ndarray] = []
        self.bumps: list[np.ndarray] = []
        self.specks: list[np.ndarray] = []

    def lung_point(self, reach: float) -> np.ndarray:
        """A random point inside the lung, within ``reach`` of its radius in-plane."""
        angle, r = self.rng.uniform(0, 2 * np.pi), reach * self.radius * np.sqrt(self.rng.uniform())
        return np.array([self.rng.uniform(0.08, 0.92) * self.extent[0],
                         self.centre[1] + r * np.sin(angle), self.centre[2] + r * np.cos(angle)])

    def inside(self, point: np.ndarray) -> bool:
        return bool(np.all((point >= 0) & (point <= self.extent - self.spacing)))

    def add_vessels(self) -> None:
        """Trunks through the lung and branches leaving them; branch points are junctions."""
        for _ in range(self.rng.integers(4, 8)):
            # steep trunks cross axial slices as round blobs: only their run along z tells them apart
            point, axis = self.lung_point(0.85), _unit(self.rng, squash_z=1.5)
            radius = self.rng.uniform(0.6, 1.8)
            hu = self.rng.uniform(-450, -150) + 200 * (radius - 0.6) / 1.2  # thin: more partial volume
            _paint(self.volume, _distance(self.grid, point, axis), radius, hu)
            self.vessels.append((point, axis))
            for _ in range(self.rng.integers(0, 3)):
                start = point + axis * self.rng.uniform(-25, 25)
                branch = _unit(self.rng)
                _paint(self.volume, _distance(self.grid, start, branch, ray=True),
                       radius * self.rng.uniform(0.6, 0.9), hu)
                self.vessels.append((start, branch))
                if self.inside(start):
                    self.junctions.append(start)

    def add_bumps(self) -> None:
        """Flat pleural thickenings: ellipsoids 1.5-3 mm deep and 3-6 mm wide on the wall."""
        for _ in range(self.rng.integers(2, 5)):
            angle = self.rng.uniform(0, 2 * np.pi)
            normal = np.array([0.0, np.sin(angle), np.cos(angle)])
            base = self.centre + normal * self.radius
            base[0] = self.rng.uniform(0.1, 0.9) * self.extent[0]
            depth, width = self.rng.uniform(1.5, 3.0), self.rng.uniform(3.0, 6.0)
            d = [g - p for g, p in zip(self.grid, base)]
            along = d[0] * 0 + d[1] * normal[1] + d[2] * normal[2]
            across = np.sqrt(np.maximum(d[1] ** 2 + d[2] ** 2 - along ** 2, 0.0))
            scaled = np.sqrt((along / depth) ** 2 + (across / width) ** 2 + (d[0] / (0.8 * width)) ** 2)
            _paint(self.volume, scaled, 1.0, 40.0, soft=0.25)
            self.bumps.append(base - normal * depth * 0.6)

    def add_nodule(self, diameter: float) -> np.ndarray:
        """A solid or sub-solid, slightly ellipsoidal nodule: free, on a vessel or on the pleura."""
        where = self.rng.uniform()
        if where < 0.25 and self.vessels:
            point, axis = self.vessels[self.rng.integers(len(self.vessels))]
            centre = point + axis * self.rng.uniform(-20, 20)
        elif where < 0.5:
            angle = self.rng.uniform(0, 2 * np.pi)
            r = self.radius - diameter / 2 - self.rng.uniform(0.0, 0.8)
            centre = np.array([self.rng.uniform(0.1, 0.9) * self.extent[0],
                               self.centre[1] + r * np.sin(angle), self.centre[2] + r * np.cos(angle)])
        else:
            centre = self.lung_point(0.75)
        if not self.inside(centre) or self.wall_distance(centre) < 0:
            centre = self.lung_point(0.7)
        axes = self.rng.uniform(0.8, 1.2, size=3)
        scaled = np.sqrt(sum(((g - c) / a) ** 2 for g, c, a in zip(self.grid, centre, axes)))
        if self.rng.uniform() < SUBSOLID_FRACTION:
            _paint(self.volume, scaled, diameter / 2, self.rng.uniform(-650, -450), soft=1.5)
            if self.rng.uniform() < 0.4:  # part-solid: a small solid core
                _paint(self.volume, scaled, diameter / 5, self.rng.uniform(-150, 0))
        else:
            _paint(self.volume, scaled, diameter / 2, self.rng.uniform(-100, 80))
        return centre

    def wall_distance(self, point: np.ndarray) -> float:
        return float(self.radius - np.hypot(point[1] - self.centre[1], point[2] - self.centre[2]))

    def add_specks(self) -> None:
        """Tiny solid blobs, 1.5-2.8 mm: below LUNA16's 3 mm, so never annotated."""
        for _ in range(self.rng.integers(2, 5)):
            centre = self.lung_point(0.85)
            _paint(self.volume, _distance(self.grid, centre), self.rng.uniform(0.75, 1.4),
                   self.rng.uniform(-150, 60))
            self.specks.append(centre)


def _negative(scan: _Scan, rng: np.random.Generator) -> np.ndarray:
    """One negative candidate point, half on a look-alike (vessel, junction, bump or speck), the rest
    in plain lung or near a face."""
    kind = rng.uniform()
    if kind < 0.25:
        start, axis = scan.vessels[rng.integers(len(scan.vessels))]
        return start + axis * rng.uniform(-30, 30)
    looks = [scan.junctions, scan.bumps, scan.specks]
    for bound, points in zip((0.35, 0.42, 0.5), looks):
        if kind < bound and points:
            return points[rng.integers(len(points))] + rng.normal(0, 0.5, 3)
    if kind < 0.88:
        return scan.lung_point(0.95)
    point = rng.uniform(0, 1, size=3) * scan.extent
    face = int(rng.integers(3))  # within 4 voxels of a face: the cutout needs padding
    offset = rng.uniform(0, 4) * scan.spacing[face]
    point[face] = offset if rng.uniform() < 0.5 else scan.extent[face] - scan.spacing[face] - offset
    return point


def hard_series(rng: np.random.Generator, n_nodules: int) -> HardSeries:
    """One hard scan with ``n_nodules`` nodules (some excluded from the annotations) and 50-70
    negative candidates away from every nodule."""
    scan = _Scan(rng)
    scan.add_vessels()
    scan.add_bumps()
    scan.add_specks()
    out = HardSeries(volume=scan.volume, spacing=scan.spacing)
    for _ in range(n_nodules):
        diameter = 3.5 + 12.0 * rng.beta(1.6, 3.0)  # 3.5-15.5 mm, median ~7 mm (LUNA16: mean 8.3)
        finding = (scan.add_nodule(diameter), diameter)
        (out.excluded if rng.uniform() < EXCLUDED_FRACTION else out.nodules).append(finding)
    out.volume += rng.normal(0, NOISE_HU, size=SHAPE).astype(np.float32)
    findings = out.nodules + out.excluded
    wanted = rng.integers(50, 70)
    while len(out.negatives) < wanted:
        point = _negative(scan, rng)
        if scan.inside(point) and all(np.linalg.norm(point - c) > d / 2 + 3 for c, d in findings):
            out.negatives.append(point)
    return out
