"""Tiny model folders and input files for the predict and serve tests, made without a sweep."""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from core.config import TrialConfig
from core.imageio import Geometry, write_dicom_series, write_image_2d, write_volume
from core.model_folder import save_model_folder
from core.train import build_module, train

EGFR = {"data/task": "egfr", "data/shape": (12, 12, 12), "model/channels": (4, 8),
        "model/hidden": 8, "model/kernel_size": 3, "model/pool_size": 2}
LUNA = {**EGFR, "data/task": "luna16", "data/shape": (8, 10, 10), "data/hu_window": (-1000.0, 1000.0),
        "loss/name": "cross_entropy"}
XRAY = {"data/task": "xray", "data/shape": (32, 32), "model/name": "densenet121"}
SEGMENTATION = {"data/task": "segmentation", "data/shape": (16, 16), "model/name": "unet",
                "model/channels": (4, 8), "model/num_res_units": 0, "loss/name": "generalized_dice",
                "train/batch_size": 4, "train/max_epochs": 1, "optim/lr": 1e-2}
GEOMETRY = Geometry(spacing=(0.8, 0.9, 2.0), origin=(-20.0, 10.0, 5.0),
                    direction=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))


def random_model_folder(folder: Path, flat: dict, *, threshold: float = 0.5, seed: int = 0,
                        training_data: dict | None = None) -> Path:
    """A randomly initialised network saved as a model folder (enough to test the input path)."""
    torch.manual_seed(seed)
    cfg = TrialConfig.from_dict(flat)
    module = build_module(cfg, sample_shape=(1, *cfg.data.shape))
    return save_model_folder(folder, weights=module.net.state_dict(), config=cfg, threshold=threshold,
                             name=folder.parent.name, metric="val/auroc", training_data=training_data)


def trained_segmentation_folder(folder: Path) -> Path:
    """A UNet trained one epoch on 8 tiny disc images with core.train.train, then saved."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:16, :16]
    masks = np.stack([((yy - rng.integers(5, 11)) ** 2 + (xx - rng.integers(5, 11)) ** 2 < 12)
                      for _ in range(12)]).astype(np.uint8)
    images = (masks * 0.6 + rng.random(masks.shape) * 0.4).astype(np.float32)[:, None]
    arrays = {"train/x": images[:8], "train/y": masks[:8], "val/x": images[8:], "val/y": masks[8:]}
    cfg = TrialConfig.from_dict(SEGMENTATION)
    result = train(cfg, arrays, metric="val/dice", mode="max")
    return save_model_folder(folder, weights=result.module.net.state_dict(), config=cfg, threshold=0.5,
                             name=folder.parent.name, metric="val/dice")


def ct_volume(seed: int, shape: tuple[int, int, int] = (10, 14, 12)) -> np.ndarray:
    """A (z, y, x) HU volume: noisy soft tissue with a bright blob, different per seed."""
    rng = np.random.default_rng(seed)
    volume = rng.normal(-600, 250, size=shape)
    z, y, x = (rng.integers(2, s - 2) for s in shape)
    volume[z - 2:z + 2, y - 2:y + 2, x - 2:x + 2] = 100
    return np.round(volume).astype(np.int16)


def write_case_folder(folder: Path) -> dict[str, Path]:
    """A folder of egfr inputs: NIfTI, NRRD, a DICOM series folder, a corrupt .nii.gz, a mask."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"nifti": folder / "case_a.nii.gz", "nrrd": folder / "case_b.nrrd",
             "dicom": folder / "case_c", "corrupt": folder / "broken.nii.gz"}
    write_volume(ct_volume(1), GEOMETRY, paths["nifti"])
    write_volume(ct_volume(2), GEOMETRY, paths["nrrd"])
    write_dicom_series(ct_volume(3), GEOMETRY, paths["dicom"])
    paths["corrupt"].write_bytes(b"\x1f\x8b not really a gzip file" * 20)
    mask = np.zeros((10, 14, 12), dtype=np.uint8)
    mask[3:6, 4:9, 4:8] = 1
    paths["mask"] = folder / "masks" / "case_a.nii.gz"
    write_volume(mask, GEOMETRY, paths["mask"])
    return paths


def write_images(folder: Path) -> dict[str, Path]:
    """A grey PNG, an RGB PNG, a JPEG (all of different sizes) and a corrupt PNG."""
    rng = np.random.default_rng(5)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"png": folder / "a.png", "rgb": folder / "b.png", "jpeg": folder / "c.jpeg",
             "corrupt": folder / "d.png"}
    write_image_2d(rng.integers(0, 255, (40, 30), dtype=np.uint8), paths["png"])
    write_image_2d(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8), paths["rgb"])
    write_image_2d(rng.integers(0, 255, (33, 33), dtype=np.uint8), paths["jpeg"])
    paths["corrupt"].write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    return paths


def zip_folder(folder: Path, path: Path, *, prefix: str = "") -> Path:
    """Zip every file under ``folder`` (names relative to it, under ``prefix``)."""
    with zipfile.ZipFile(path, "w") as archive:
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            archive.write(file, prefix + file.relative_to(folder).as_posix())
    return path
