"""A synthetic 2D segmentation dataset in the real layout: ``images/`` + ``masks/`` with one stem.

Each picture (96-192 pixels a side) shows a lesion, a textured bright ellipse that is the one
foreground class, among distractors that are not: dark round spots and bright straight-edged
bars, on a shaded, noisy background. About one image in eight shows no lesion (an empty mask).
Images are grey PNGs, tinted RGB PNGs or grey JPEGs; masks are 0/255 PNGs.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from core.data.phantoms import check_difficulty
from core.data.phantoms.staging import MARKER, generate_once
from core.imageio import write_image_2d

logger = logging.getLogger(__name__)

VERSION = "segmentation-v1"


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


def _generate(folder: Path, n_images: int, seed: int) -> None:
    for i in range(n_images):
        rng = np.random.default_rng([seed, i])
        image, mask = _picture(rng, lesion=rng.uniform() >= 0.125)
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
    folder = Path(cache_dir) / "phantoms" / f"{VERSION}-{difficulty}-n{n_images}-s{seed}"
    if not (folder / MARKER).is_file():
        logger.info("Generating the segmentation phantom (%d images, seed %d) in %s", n_images, seed, folder)
    return generate_once(folder, lambda staging: _generate(staging, n_images, seed),
                         meta={"version": VERSION, "n_images": n_images, "seed": seed,
                               "difficulty": difficulty})
