"""A synthetic chest X-ray set in the Kermany layout: ``chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}``.

Each frontal film (160-288 x 200-360 pixels, grey or RGB JPEG) shows a body with two dark lung
fields, a bright mediastinum, ribs and vessel markings. Pneumonia adds diffuse opacities in the
lung fields: a few dense lobar patches (bacteria) or many faint patches in both lungs (virus).
Patients keep their anatomy over 1-4 films and are named as in the real set (``IM-0115-0001``,
``NORMAL2-IM-1427-0001``, ``person12_bacteria_45``); val/ is tiny (8 + 8 films), as in the real set.

``hard`` (the default) leaves room to search. Train is about 73 % pneumonia films, as in the real
set. Every film carries density that is not disease (breast and soft-tissue shadows, a heart
shadow of varying size, denser or fainter vessel markings, exposure), and the opacities are
local: a lobar patch or two (bacteria, 14-25 % of the grey range denser than the lung) or 3-5
fainter patches (virus, 7-13 %), each 5-12 % of the film's short side wide (Gaussian sigma) and
mottled. About 3 % of films show the other class than their folder says (a resolved pneumonia, a
missed one). ``easy`` is the set above, unchanged.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from core.data.phantoms import check_difficulty
from core.data.phantoms.segmentation import smooth_noise
from core.data.phantoms.staging import MARKER, generate_once
from core.imageio import write_image_2d

logger = logging.getLogger(__name__)

# the generator per difficulty: a changed one gets a new version, so an old folder is not reused
VERSIONS = {"easy": "xray-v1", "hard": "xray-v3"}
# patients per (split, class): about 3 pneumonia per normal film in train, as in the real set
PATIENTS = {"train": (36, 56), "val": (8, 8), "test": (16, 24)}
HARD_PATIENTS = {"train": (26, 70), "val": (8, 8), "test": (16, 24)}  # train ~73 % pneumonia films
LABEL_NOISE = 0.03  # hard: share of films that show the other class than their folder


def _anatomy(rng: np.random.Generator) -> dict[str, float]:
    """A patient's body and lung proportions (fractions of the film), shared by their films."""
    return {"body_w": rng.uniform(0.36, 0.44), "body_h": rng.uniform(0.52, 0.6),
            "lung_w": rng.uniform(0.12, 0.15), "lung_h": rng.uniform(0.28, 0.34),
            "lung_dx": rng.uniform(0.17, 0.21), "lung_y": rng.uniform(0.42, 0.48)}


def _gaussian_patches(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, lungs: list[tuple],
                      count: int, reach: tuple[float, float], sigma: tuple[float, float],
                      amplitude: tuple[float, float]) -> np.ndarray:
    """Sum of ``count`` soft Gaussian patches in random lungs: centres within ``reach`` (y, x) of a
    lung's radii, widths ``sigma`` (fractions of the film's short side), heights ``amplitude``."""
    side = min(yy.shape)
    total = np.zeros_like(yy)
    for _ in range(count):
        cy, cx, ry, rx = lungs[rng.integers(len(lungs))]
        y, x = cy + rng.uniform(-reach[0], reach[0]) * ry, cx + rng.uniform(-reach[1], reach[1]) * rx
        width = rng.uniform(*sigma) * side
        total += rng.uniform(*amplitude) * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * width ** 2))
    return total


def _opacities(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, lungs: list[tuple],
               subtype: str) -> np.ndarray:
    """Dense and few (bacteria) or faint and many (virus) patches."""
    if subtype == "virus":
        return _gaussian_patches(rng, yy, xx, lungs, int(rng.integers(6, 10)), (0.7, 0.6),
                                 (0.05, 0.09), (0.07, 0.13))
    return _gaussian_patches(rng, yy, xx, lungs, int(rng.integers(2, 4)), (0.7, 0.6),
                             (0.05, 0.12), (0.14, 0.26))


def _frame(rng: np.random.Generator, anatomy: dict[str, float], jitter: float, shift: float
           ) -> tuple[tuple[int, int], np.ndarray, np.ndarray, dict[str, float], float, np.ndarray,
                      list[tuple], np.ndarray]:
    """A film's size, pixel grid, this film's proportions (``anatomy`` within +-``jitter``), body
    centre (shifted up to ``shift`` of the width), body mask, lung ellipses and lung mask."""
    shape = (int(rng.integers(160, 289)), int(rng.integers(200, 361)))
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    a = {k: v * rng.uniform(1 - jitter, 1 + jitter) for k, v in anatomy.items()}  # positioning
    cx = w / 2 + rng.uniform(-shift, shift) * w
    body = ((yy - 0.55 * h) / (a["body_h"] * h)) ** 2 + ((xx - cx) / (a["body_w"] * w)) ** 2 <= 1
    lungs = [(a["lung_y"] * h, cx + s * a["lung_dx"] * w, a["lung_h"] * h, a["lung_w"] * w) for s in (-1, 1)]
    in_lung = np.zeros(shape, dtype=bool)
    for ly, lx, ry, rx in lungs:
        in_lung |= ((yy - ly) / ry) ** 2 + ((xx - lx) / rx) ** 2 <= 1
    return shape, yy, xx, a, cx, body, lungs, in_lung


def _film(rng: np.random.Generator, anatomy: dict[str, float], subtype: str) -> np.ndarray:
    """One (H, W) film in [0, 1]; ``subtype`` "normal", "bacteria" or "virus"."""
    shape, yy, xx, a, cx, body, lungs, in_lung = _frame(rng, anatomy, 0.04, 0.04)
    h, w = shape
    film = np.where(body, 0.62, 0.06)
    ribs = 0.05 * np.sin(2 * np.pi * yy / (rng.uniform(0.07, 0.09) * h)) ** 8
    vessels = 0.04 * np.abs(smooth_noise(rng, shape, 10))
    film = np.where(in_lung, 0.2 + ribs + vessels, film)
    film = film + 0.18 * (np.abs(xx - cx) < 0.05 * w) * (yy > 0.2 * h) * body  # mediastinum, spine
    if subtype != "normal":
        patchy = 0.6 + 0.4 * np.abs(smooth_noise(rng, shape, 16))
        film = film + in_lung * patchy * _opacities(rng, yy, xx, lungs, subtype)
    film = film * rng.uniform(0.85, 1.15) + rng.uniform(-0.05, 0.05)  # exposure
    return np.clip(film + rng.normal(0, 0.025, shape), 0, 1)


def _hard_opacities(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, lungs: list[tuple],
                    subtype: str) -> np.ndarray:
    """Mottled patches in the lungs: one or two dense (bacteria) or several fainter (virus)."""
    if subtype == "virus":
        total = _gaussian_patches(rng, yy, xx, lungs, int(rng.integers(3, 6)), (0.6, 0.5),
                                  (0.05, 0.08), (0.07, 0.13))
    else:
        total = _gaussian_patches(rng, yy, xx, lungs, int(rng.integers(1, 3)), (0.6, 0.5),
                                  (0.06, 0.12), (0.14, 0.25))
    mottle = 0.7 + 0.3 * np.abs(smooth_noise(rng, yy.shape, min(yy.shape) // 6))  # alveolar filling
    return total * mottle


def _hard_film(rng: np.random.Generator, anatomy: dict[str, float], subtype: str) -> np.ndarray:
    """One (H, W) film in [0, 1] whose non-disease density varies as much as the disease's."""
    shape, yy, xx, a, cx, body, lungs, in_lung = _frame(rng, anatomy, 0.07, 0.06)
    h, w = shape
    film = np.where(body, 0.62, 0.06)
    ribs = 0.05 * np.sin(2 * np.pi * yy / (rng.uniform(0.07, 0.09) * h)) ** 8
    vessels = rng.uniform(0.02, 0.07) * np.abs(smooth_noise(rng, shape, 10))
    lung = 0.2 + ribs + vessels + 0.03 * smooth_noise(rng, shape, 4)
    low = a["lung_y"] * h + rng.uniform(0.3, 0.7) * a["lung_h"] * h  # breast / soft-tissue shadow
    lung = lung + rng.uniform(0.0, 0.08) / (1 + np.exp(-(yy - low) / (0.03 * h)))
    heart = ((yy - 0.62 * h) / (rng.uniform(0.1, 0.16) * h)) ** 2 + \
        ((xx - cx - 0.05 * w) / (rng.uniform(0.09, 0.15) * w)) ** 2 <= 1
    film = np.where(in_lung, lung, film) + 0.12 * (heart & in_lung)
    film = film + 0.18 * (np.abs(xx - cx) < 0.05 * w) * (yy > 0.2 * h) * body  # mediastinum, spine
    if subtype != "normal":
        film = film + in_lung * _hard_opacities(rng, yy, xx, lungs, subtype)
    film = film * rng.uniform(0.8, 1.2) + rng.uniform(-0.07, 0.07)  # exposure
    return np.clip(film + rng.normal(0, 0.03, shape), 0, 1)


def _patient_name(label: int, number: int, rng: np.random.Generator) -> tuple[str, str]:
    """(patient stem, subtype) in Kermany style: IM-0115 / NORMAL2-IM-1427 or person12 (+subtype)."""
    if label == 0:
        return (f"IM-{number:04d}" if number % 2 else f"NORMAL2-IM-{number:04d}"), "normal"
    return f"person{number}", ("virus" if rng.uniform() < 0.35 else "bacteria")


def _shown(rng: np.random.Generator, subtype: str) -> str:
    """What a hard film shows: its patient's subtype, or the other class for ``LABEL_NOISE`` of films."""
    if rng.uniform() >= LABEL_NOISE:
        return subtype
    return ("virus" if rng.uniform() < 0.35 else "bacteria") if subtype == "normal" else "normal"


def _generate(root: Path, seed: int, scale: float, difficulty: str) -> None:
    base = root / "chest_xray"
    hard = difficulty == "hard"
    patient_no, film_no = [100, 1], 1  # next normal / pneumonia patient number; pneumonia films
    for split_index, (split, counts) in enumerate((HARD_PATIENTS if hard else PATIENTS).items()):
        for label, n_patients in enumerate(counts):
            n_patients = n_patients if split == "val" else max(2, round(scale * n_patients))
            folder = base / split / ("NORMAL" if label == 0 else "PNEUMONIA")
            for k in range(n_patients):
                rng = np.random.default_rng([seed, split_index, label, k])
                patient, subtype = _patient_name(label, patient_no[label], rng)
                patient_no[label] += 1
                anatomy = _anatomy(rng)
                for j in range(1 if split == "val" else int(rng.integers(1, 5))):
                    film = _hard_film(rng, anatomy, _shown(rng, subtype)) if hard else \
                        _film(rng, anatomy, subtype)
                    film = (film * 255).round().astype(np.uint8)
                    if rng.uniform() < 0.2:  # some films were saved as RGB
                        film = np.repeat(film[..., None], 3, axis=-1)
                    name = f"{patient}-{j + 1:04d}" if label == 0 else f"{patient}_{subtype}_{film_no}"
                    film_no += label
                    write_image_2d(film, folder / f"{name}.jpeg", quality=90)
            (folder / ".DS_Store").write_bytes(b"\0")
    litter = root / "__MACOSX" / "chest_xray"  # what unzipping the real archive on a Mac leaves
    litter.mkdir(parents=True)
    (litter / "._train").write_bytes(b"\0")


def xray_phantom(cache_dir: Path, *, seed: int = 0, scale: float = 1.0,
                 difficulty: str = "hard") -> Path:
    """Folder of a synthetic Kermany-layout X-ray set, generated on first use (seconds), reused after.

    ``scale`` multiplies the train and test patient counts (tests use a small set); val stays 8 + 8.
    """
    check_difficulty(difficulty)
    folder = Path(cache_dir) / "phantoms" / f"{VERSIONS[difficulty]}-{difficulty}-x{scale:g}-s{seed}"
    if not (folder / MARKER).is_file():
        logger.info("Generating the X-ray phantom (scale %g, seed %d) in %s", scale, seed, folder)
    return generate_once(folder, lambda staging: _generate(staging, seed, scale, difficulty),
                         meta={"version": VERSIONS[difficulty], "seed": seed, "scale": scale,
                               "difficulty": difficulty})
