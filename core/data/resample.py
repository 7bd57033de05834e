"""Resampling a volume onto a box of given voxel spacing, so every case shares one physical scale.

Anisotropic scans (0.7 mm in-plane, 2.5 mm slices) keep their true proportions: the output grid
is laid out in millimetres around a centre and sampled trilinearly from the input, which is what
resampling to a target spacing and then cropping gives (nnU-Net plans it so), without resampling
the whole scan first.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.nn import functional as F


def sample_box(volume: np.ndarray, *, centre: Sequence[float] | np.ndarray,
               step: Sequence[float] | np.ndarray,
               shape: Sequence[int]) -> np.ndarray:
    """``shape`` samples of a (z, y, x) volume, ``step`` input voxels apart per axis, centred on
    the continuous voxel index ``centre``; samples outside the volume are 0.

    Returns float32 (D, H, W). ``step`` = target spacing / input spacing, both (z, y, x) mm.
    """
    axes = [(np.arange(n) - (n - 1) / 2) * s + c for n, s, c in zip(shape, step, centre)]
    # align_corners=True: -1 and 1 are the centres of the first and last input voxels
    norm = [2 * a / max(size - 1, 1) - 1 for a, size in zip(axes, volume.shape)]
    z, y, x = np.meshgrid(*norm, indexing="ij")
    grid = torch.from_numpy(np.stack([x, y, z], axis=-1).astype(np.float32))[None]  # (1, D, H, W, 3)
    tensor = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))[None, None]
    out = F.grid_sample(tensor, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out[0, 0].numpy()


def fit_step(volume_shape: Sequence[int], spacing: Sequence[float] | np.ndarray,
             shape: Sequence[int]) -> float:
    """The one (isotropic) spacing in mm at which the whole volume just fits in ``shape`` voxels."""
    return float(max(n * s / m for n, s, m in zip(volume_shape, spacing, shape)))
