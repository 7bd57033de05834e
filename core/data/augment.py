"""Training augmentation with MONAI dictionary transforms: flip, offset, scale, rotate, noise.

The LUNA16 seed's recipe, for 2D and 3D alike. A segmentation mask (``"label"``) follows its
image through the same flips and affine, resampled with nearest interpolation so it stays 0/1.
3D rotation is about the axial axis only: arrays are (C, D=z, H=y, W=x), so slices rotate in
their y-x plane and never tilt across z.

Draws are seeded from torch's seed for this process (``get_worker_info().seed`` in a data-loader
worker, ``torch.initial_seed()`` without workers) and the epoch, so each worker and each epoch
draws afresh while a run with the same seed draws the same.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
from monai.data import get_track_meta, set_track_meta
from monai.transforms import Compose, RandAffined, RandFlipd, RandGaussianNoised
from torch.utils.data import get_worker_info

from core.config import DataConfig

IMAGE, LABEL = "image", "label"


def augmentation(spatial_shape: Sequence[int], *, with_mask: bool, flip: bool = True,
                 max_offset: float = 0.1, max_scale: float = 0.1, max_degrees: float = 15.0,
                 noise_std: float = 0.02) -> Compose:
    """The MONAI pipeline for samples of ``spatial_shape`` ((H, W) or (D, H, W)).

    max_offset: fraction of each side; max_scale: fraction of the size; max_degrees: in-plane
    (y-x) rotation; noise_std: upper bound of the Gaussian noise's std (image only).
    """
    spatial = len(spatial_shape)
    if spatial not in (2, 3):
        raise ValueError(f"augmentation needs a 2D or 3D sample shape, got {tuple(spatial_shape)}")
    keys = (IMAGE, LABEL) if with_mask else (IMAGE,)
    angle = math.radians(max_degrees)
    transforms: list = []
    if flip:
        transforms += [RandFlipd(keys=keys, prob=0.5, spatial_axis=axis) for axis in range(spatial)]
    rotate = (angle, 0.0, 0.0) if spatial == 3 else (angle,)  # 3D: about z, in the y-x plane
    transforms.append(RandAffined(
        keys=keys, prob=1.0, rotate_range=rotate, scale_range=(max_scale,) * spatial,
        translate_range=tuple(max_offset * side for side in spatial_shape),
        mode=("bilinear", "nearest")[: len(keys)], padding_mode=("border", "zeros")[: len(keys)]))
    if noise_std > 0:
        transforms.append(RandGaussianNoised(keys=IMAGE, prob=1.0, mean=0.0, std=noise_std))
    return Compose(transforms)


def process_seed() -> int:
    """Torch's seed for this process: the data-loader worker's own, or the main process's."""
    info = get_worker_info()
    return int(info.seed) if info is not None else int(torch.initial_seed())


class Augmenter:
    """Applies an ``augmentation`` pipeline to one ``(x, y)`` sample, reseeding per worker and epoch.

    x: (C, *spatial) float32; y: a class label (left alone) or a (*spatial) mask (moved with x).
    """

    def __init__(self, transform: Compose, *, with_mask: bool) -> None:
        self.transform, self.with_mask = transform, with_mask
        self._seeded_for: tuple[int, int] | None = None

    def reseed(self, epoch: int) -> None:
        """Seed the draws from (process seed, epoch); a no-op while both stay the same."""
        key = (process_seed(), int(epoch))
        if key != self._seeded_for:
            seed = np.random.SeedSequence(list(key)).generate_state(1)[0]
            self.transform.set_random_state(seed=int(seed))
            self._seeded_for = key

    def _untracked(self, sample: dict[str, np.ndarray]) -> dict[str, Any]:
        """Run the pipeline on plain tensors: MONAI's MetaTensor bookkeeping (unused here)
        tripled the cost of a 2D sample. The flag is process-wide, so it is put back."""
        tracked = get_track_meta()
        set_track_meta(False)
        try:
            return self.transform(sample)
        finally:
            set_track_meta(tracked)

    def __call__(self, x: np.ndarray, y: np.ndarray, *, epoch: int = 0) -> tuple[np.ndarray, np.ndarray]:
        self.reseed(epoch)
        sample = {IMAGE: x}
        if self.with_mask:
            sample[LABEL] = y[None].astype(np.float32)
        moved = self._untracked(sample)
        x_out = np.asarray(moved[IMAGE], dtype=np.float32)
        if self.with_mask:
            y = np.rint(np.asarray(moved[LABEL])[0]).astype(y.dtype)
        return x_out, y


def augment_for(cfg: DataConfig, *, sample_shape: Sequence[int],
                label_shape: Sequence[int]) -> Augmenter | None:
    """The training augmenter for samples of ``sample_shape`` (C, *spatial), or None when
    ``cfg.augment`` is off. Labels with the samples' spatial shape (masks) follow the image."""
    if not cfg.augment:
        return None
    spatial = tuple(sample_shape[1:])
    with_mask = tuple(label_shape) == spatial
    return Augmenter(augmentation(spatial, with_mask=with_mask), with_mask=with_mask)
