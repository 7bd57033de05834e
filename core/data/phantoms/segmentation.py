"""A synthetic 2D segmentation dataset in the real layout: ``images/`` + ``masks/`` with one stem.

Each picture (96-192 pixels a side) shows a lesion, a textured bright ellipse that is the one
foreground class, among distractors that are not: dark round spots and bright straight-edged
bars, on a shaded, noisy background. About one image in eight shows no lesion (an empty mask).
Images are grey PNGs, tinted RGB PNGs or grey JPEGs; masks are 0/255 PNGs.

``hard`` (the default) leaves room to search: the lesion is faint (a few per cent brighter than a
cluttered background), small to mid-sized, with a lobulated outline and a soft edge; what tells it
from the equally bright smooth blobs around it is its fine mottled texture (a few pixels across).
The annotator's outline wanders a little from the true edge, as hand-drawn masks do. ``easy``
is the clearly separable set above, unchanged.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from core.data.phantoms import check_difficulty
from core.data.phantoms.staging import MARKER, generate_once
from core.imageio import write_image_2d

logger = logging.getLogger(__name__)

# the generator per difficulty: a changed one gets a new version, so an old folder is not reused
VERSIONS = {"easy": "segmentation-v1", "hard": "segmentation-v2"}


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    """Low-frequency noise in [-1, 1]: a coarse random grid upsampled bilinearly."""
    coarse = rng.uniform(-1, 1, size=(cells + 1, cells + 1))
    ys, xs = np.linspace(0, cells, shape[0]), np.linspace(0, cells, shape[1])
    y0, x0 = np.minimum(ys.astype(int), cells - 1), np.minimum(xs.astype(int), cells - 1)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    top = coarse[y0][:, x0] * (1 - fx) + coarse[y0][:, x0 + 1] * fx
    bottom = coarse[y0 + 1][:, x0] * (1 - fx) + coarse[y0 + 1][:, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def _ellipse(shape: tuple[int, int], centre: np.ndarray, axes: np.ndarray, angle: float) -> np.ndarray:
    """Normalised radius (<= 1 inside) of a rotated ellipse on the (H, W) pixel grid."""
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
    dy, dx = yy - centre[0], xx - centre[1]
    c, s = np.cos(angle), np.sin(angle)
    return np.sqrt(((c * dx + s * dy) / axes[1]) ** 2 + ((-s * dx + c * dy) / axes[0]) ** 2)


def _picture(rng: np.random.Generator, *, lesion: bool) -> tuple[np.ndarray, np.ndarray]:
    """One (H, W) picture in [0, 1] and its bool lesion mask."""
    shape = (int(rng.integers(96, 161)), int(rng.integers(96, 193)))
    side = min(shape)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
    image = 0.35 + 0.12 * (rng.uniform(-1, 1) * yy + rng.uniform(-1, 1) * xx) / side
    image = image + 0.08 * smooth_noise(rng, shape, 4)
    for _ in range(rng.integers(1, 4)):  # distractors: dark spots and bright bars, never foreground
        centre = rng.uniform(0.15, 0.85, 2) * shape
        if rng.uniform() < 0.5:
            image[_ellipse(shape, centre, np.full(2, rng.uniform(0.05, 0.1) * side), 0.0) <= 1] = 0.1
        else:
            half = np.array([rng.uniform(0.04, 0.08), rng.uniform(0.15, 0.3)]) * side
            half = half if rng.uniform() < 0.5 else half[::-1]
            image[(abs(yy - centre[0]) < half[0]) & (abs(xx - centre[1]) < half[1])] = 0.75
    mask = np.zeros(shape, dtype=bool)
    if lesion:
        axes = rng.uniform(0.1, 0.25, 2) * side
        centre = np.array([rng.uniform(axes.max(), shape[k] - axes.max()) for k in range(2)])
        r = _ellipse(shape, centre, axes, rng.uniform(0, np.pi))
        mask = r <= 1
        texture = 0.06 * smooth_noise(rng, shape, 12)
        image = np.where(mask, rng.uniform(0.7, 0.85) + texture, image)
        image = np.where((r > 1) & (r <= 1.15), 0.5 * (image + 0.6), image)  # a soft rim outside
    image = image + rng.normal(0, 0.03, shape)
    return np.clip(image, 0, 1), mask


def _lobulated(rng: np.random.Generator, shape: tuple[int, int], centre: np.ndarray, axes: np.ndarray,
               roughness: float) -> np.ndarray:
    """Normalised radius of an ellipse whose outline wobbles by a few low harmonics of the angle."""
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
    theta = np.arctan2(yy - centre[0], xx - centre[1])
    wobble = sum(rng.uniform(0, roughness) / k * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
                 for k in range(2, 7))
    return _ellipse(shape, centre, axes, rng.uniform(0, np.pi)) / (1 + wobble)


def _soft(r: np.ndarray, width: float) -> np.ndarray:
    """1 inside, 0 outside, a linear ramp ``width`` (in normalised radius) across the edge."""
    return np.clip((1 - r) / width + 0.5, 0, 1)


def _hard_picture(rng: np.random.Generator, *, lesion: bool) -> tuple[np.ndarray, np.ndarray]:
    """One (H, W) picture in [0, 1] and its bool mask: a faint textured lesion among smooth look-alikes."""
    shape = (int(rng.integers(96, 161)), int(rng.integers(96, 193)))
    side = min(shape)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
    image = 0.4 + 0.15 * (rng.uniform(-1, 1) * yy + rng.uniform(-1, 1) * xx) / side
    image = image + 0.08 * smooth_noise(rng, shape, 4) + 0.04 * smooth_noise(rng, shape, 10)
    for _ in range(rng.integers(2, 5)):  # look-alikes: smooth blobs as bright as a lesion, dark spots
        axes = rng.uniform(0.06, 0.18, 2) * side
        centre = rng.uniform(0.1, 0.9, 2) * shape
        blob = _soft(_lobulated(rng, shape, centre, axes, 0.15), 0.3)
        image = image + (rng.uniform(0.06, 0.14) if rng.uniform() < 0.7 else -0.12) * blob
    mask = np.zeros(shape, dtype=bool)
    if lesion:
        axes = rng.uniform(0.07, 0.2, 2) * side
        centre = np.array([rng.uniform(axes.max(), shape[k] - axes.max()) for k in range(2)])
        r = _lobulated(rng, shape, centre, axes, 0.35)
        mottle = smooth_noise(rng, shape, side // 5)  # the texture: cells about 5 pixels across
        image = image + _soft(r, 0.3) * (rng.uniform(0.06, 0.12) + 0.09 * mottle)
        drawn = r * (1 + 0.06 * smooth_noise(rng, shape, 6))  # the annotator's outline wanders
        mask = drawn <= 1
    image = image + rng.normal(0, 0.04, shape)
    return np.clip(image, 0, 1), mask


def _generate(folder: Path, n_images: int, seed: int, difficulty: str) -> None:
    picture = _hard_picture if difficulty == "hard" else _picture
    for i in range(n_images):
        rng = np.random.default_rng([seed, i])
        image, mask = picture(rng, lesion=rng.uniform() >= 0.125)
        grey = (image * 255).round().astype(np.uint8)
        kind = rng.choice(["png", "rgb", "jpg"], p=[0.5, 0.25, 0.25])
        name = f"lesion_{i + 1:04d}"
        if kind == "rgb":  # a warm tint, as in dermoscopy or endoscopy pictures
            tint = np.stack([grey, (grey * 0.8).astype(np.uint8), (grey * 0.65).astype(np.uint8)], -1)
            write_image_2d(tint, folder / "images" / f"{name}.png")
        else:
            write_image_2d(grey, folder / "images" / f"{name}.{kind}")
        write_image_2d(mask.astype(np.uint8) * 255, folder / "masks" / f"{name}.png")
    (folder / "images" / ".DS_Store").write_bytes(b"\0")  # litter a real download carries


def segmentation_phantom(cache_dir: Path, *, n_images: int = 200, seed: int = 0,
                         difficulty: str = "hard") -> Path:
    """Folder of a synthetic segmentation dataset, generated on first use (seconds) and reused after."""
    check_difficulty(difficulty)
    if n_images < 10:
        raise ValueError(f"segmentation_phantom needs n_images >= 10, got {n_images}")
    folder = Path(cache_dir) / "phantoms" / f"{VERSIONS[difficulty]}-{difficulty}-n{n_images}-s{seed}"
    if not (folder / MARKER).is_file():
        logger.info("Generating the segmentation phantom (%d images, seed %d) in %s", n_images, seed, folder)
    return generate_once(folder, lambda staging: _generate(staging, n_images, seed, difficulty),
                         meta={"version": VERSIONS[difficulty], "n_images": n_images, "seed": seed,
                               "difficulty": difficulty})
