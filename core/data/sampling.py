"""Training-time sampling and augmentation chosen by ``DataConfig`` (train split only)."""
from __future__ import annotations

import math
from typing import Callable, Iterator

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import Sampler

from core.config import DataConfig


class NegativeRatioSampler(Sampler[int]):
    """Each epoch: every positive, plus ``ratio`` negatives per positive drawn afresh.

    labels: (N,) 0/1. Keeps all negatives when there are fewer than asked for.
    """

    def __init__(self, labels: np.ndarray, *, ratio: float, seed: int = 0) -> None:
        self.positives = np.flatnonzero(labels == 1)
        self.negatives = np.flatnonzero(labels == 0)
        self.n_negatives = min(len(self.negatives), int(round(ratio * len(self.positives))))
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.positives) + self.n_negatives

    def __iter__(self) -> Iterator[int]:
        drawn = self.rng.choice(self.negatives, size=self.n_negatives, replace=False)
        order = np.concatenate([self.positives, drawn])
        self.rng.shuffle(order)
        return iter(order.tolist())


def sampler_for(cfg: DataConfig) -> Callable[[np.ndarray, int], Sampler] | None:
    """A factory for the training sampler, or None to shuffle every sample every epoch."""
    if cfg.negative_ratio <= 0:
        return None
    return lambda labels, seed: NegativeRatioSampler(labels, ratio=cfg.negative_ratio, seed=seed)


def random_affine(x: np.ndarray, rng: np.random.Generator, *, max_offset: float = 0.1,
                  max_scale: float = 0.1, max_degrees: float = 15.0,
                  noise_std: float = 0.02) -> np.ndarray:
    """Flip, offset, scale, rotate (within one plane) and add noise to one sample.

    x: (C, *spatial) float32 in [0, 1], 2D or 3D; returns the same shape.
    """
    spatial = x.ndim - 1
    for axis in range(1, x.ndim):
        if rng.random() < 0.5:
            x = np.flip(x, axis=axis)
    angle = math.radians(rng.uniform(-max_degrees, max_degrees))
    scale = 1.0 + rng.uniform(-max_scale, max_scale)
    theta = np.eye(spatial, spatial + 1)
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    theta[-2:, -3:-1] = rot  # a rotation within one plane
    theta[:, :spatial] /= scale
    theta[:, -1] = rng.uniform(-max_offset, max_offset, spatial) * 2
    tensor = torch.from_numpy(np.ascontiguousarray(x))[None]
    grid = F.affine_grid(torch.from_numpy(theta).float()[None], list(tensor.shape),
                         align_corners=False)
    moved = F.grid_sample(tensor, grid, mode="bilinear", padding_mode="border",
                          align_corners=False)[0].numpy()
    return (moved + rng.normal(0.0, noise_std, moved.shape)).astype(np.float32)


def augment_for(cfg: DataConfig) -> Callable[[np.ndarray, np.random.Generator], np.ndarray] | None:
    """The training augmentation for ``cfg`` (None when ``cfg.augment`` is off)."""
    return random_affine if cfg.augment else None
