"""Torch datasets over preprocessed arrays, and the LightningDataModule that serves them."""
from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

Augment = Callable[[np.ndarray, np.random.Generator], np.ndarray]


class ArrayDataset(Dataset):
    """Samples ``(x, y)`` from arrays that may be memory-mapped or read-only Ray views.

    x: (N, C, *spatial) float32; y: (N,) int64 labels or (N, *spatial) masks.
    Each item is copied before ``torch.from_numpy``, so shared arrays are never written.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, *, augment: Augment | None = None,
                 seed: int = 0) -> None:
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} samples but y has {len(y)}")
        self.x, self.y, self.augment = x, y, augment
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = np.array(self.x[index], dtype=np.float32)
        if self.augment is not None:
            x = self.augment(x, self.rng)
        return torch.from_numpy(np.ascontiguousarray(x)), torch.as_tensor(np.array(self.y[index]))


class ArrayDataModule(pl.LightningDataModule):
    """Train/val/test loaders over ``arrays["<split>/x"]`` and ``arrays["<split>/y"]``.

    ``sampler_factory(labels, seed)`` may supply the training sampler (e.g. 1:5 negatives).
    """

    def __init__(self, arrays: Mapping[str, np.ndarray], *, batch_size: int, num_workers: int = 0,
                 pin_memory: bool = False, augment: Augment | None = None, seed: int = 0,
                 sampler_factory: Callable | None = None) -> None:
        super().__init__()
        self.arrays, self.batch_size = arrays, batch_size
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.augment, self.seed, self.sampler_factory = augment, seed, sampler_factory

    def _loader(self, split: str, *, train: bool = False) -> DataLoader:
        dataset = ArrayDataset(self.arrays[f"{split}/x"], self.arrays[f"{split}/y"],
                               augment=self.augment if train else None, seed=self.seed)
        sampler = (self.sampler_factory(np.asarray(self.arrays[f"{split}/y"]), self.seed)
                   if train and self.sampler_factory else None)
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=train and sampler is None,
                          sampler=sampler, num_workers=self.num_workers,
                          pin_memory=self.pin_memory, persistent_workers=self.num_workers > 0,
                          drop_last=train and len(dataset) > self.batch_size,
                          generator=torch.Generator().manual_seed(self.seed) if train else None)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def loader(self, split: str) -> DataLoader:
        """An unshuffled loader for any split present (used for prediction)."""
        return self._loader(split)
