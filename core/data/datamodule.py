"""Torch datasets over preprocessed arrays, and the LightningDataModule that serves them."""
from __future__ import annotations

import sys
from typing import Callable, Mapping

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler

from core.data.augment import Augmenter
from core.data.resident import RESIDENT_SPLITS, ResidentDataset, keep_batch, to_device
from core.data.sampling import EpochTagged


class ArrayDataset(Dataset):
    """Samples ``(x, y)`` from arrays that may be memory-mapped or read-only Ray views.

    x: (N, C, *spatial) float32; y: (N,) int64 labels or (N, *spatial) masks.
    Each item is copied before ``torch.from_numpy``, so shared arrays are never written.
    An item may be an index or ``(index, epoch)`` (``EpochTagged``); the epoch seeds ``augment``.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, *, augment: Augmenter | None = None) -> None:
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} samples but y has {len(y)}")
        self.x, self.y, self.augment = x, y, augment

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, epoch = item if isinstance(item, tuple) else (item, 0)
        x = np.array(self.x[index], dtype=np.float32)
        y = np.array(self.y[index])
        if self.augment is not None:
            x, y = self.augment(x, y, epoch=epoch)
        return torch.from_numpy(np.ascontiguousarray(x)), torch.as_tensor(y)  # y: () or (*spatial)


def worker_start(workers: int) -> str | None:
    """Loader workers are forked on Linux: they share the (memory-mapped) arrays instead of
    receiving a pickled copy each, as they would under spawn or forkserver (the default in a
    spawned process and from Python 3.14). They never touch CUDA, so a CUDA parent is fine."""
    return "fork" if workers > 0 and sys.platform.startswith("linux") else None


class ArrayDataModule(pl.LightningDataModule):
    """Train/val/test loaders over ``arrays["<split>/x"]`` and ``arrays["<split>/y"]``.

    ``sampler_factory(labels, seed)`` may supply the training sampler (e.g. 1:5 negatives);
    ``augment`` applies to the training split only, reseeded per worker and epoch. With
    ``device``, train and val are copied there once and batched there (no workers, no pinning;
    same samplers, so the same batches as the host path); test stays on the host.
    """

    def __init__(self, arrays: Mapping[str, np.ndarray], *, batch_size: int, num_workers: int = 0,
                 pin_memory: bool = False, augment: Augmenter | None = None, seed: int = 0,
                 sampler_factory: Callable | None = None,
                 device: torch.device | str | None = None) -> None:
        super().__init__()
        if device is not None and augment is not None:
            raise ValueError(f"device={device!r} with augmentation: augmented samples are made on "
                             "the CPU, so an augmented run keeps its arrays on the host (device=None)")
        self.arrays, self.batch_size = arrays, batch_size
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.augment, self.seed, self.sampler_factory = augment, seed, sampler_factory
        self.resident = {} if device is None else {
            split: ResidentDataset(to_device(arrays[f"{split}/x"], device),
                                   to_device(arrays[f"{split}/y"], device))
            for split in RESIDENT_SPLITS}

    def _train_sampler(self, dataset: ArrayDataset | ResidentDataset,
                       generator: torch.Generator | None) -> Sampler:
        labels = np.asarray(self.arrays["train/y"])
        sampler = (self.sampler_factory(labels, self.seed) if self.sampler_factory
                   else RandomSampler(dataset, generator=generator))
        return EpochTagged(sampler) if self.augment is not None else sampler

    def _loader(self, split: str, *, train: bool = False) -> DataLoader:
        resident = split in self.resident
        dataset = self.resident[split] if resident else ArrayDataset(
            self.arrays[f"{split}/x"], self.arrays[f"{split}/y"], augment=self.augment if train else None)
        workers = 0 if resident else self.num_workers
        generator = torch.Generator().manual_seed(self.seed) if train else None
        return DataLoader(dataset, batch_size=self.batch_size,
                          sampler=self._train_sampler(dataset, generator) if train else None,
                          num_workers=workers, pin_memory=self.pin_memory and not resident,
                          persistent_workers=workers > 0, collate_fn=keep_batch if resident else None,
                          multiprocessing_context=worker_start(workers),
                          drop_last=train and len(dataset) > self.batch_size, generator=generator)

    def teardown(self, stage: str) -> None:
        """After a fit, free the device copies at once; a later loader reads the host arrays."""
        self.resident = {}

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def loader(self, split: str) -> DataLoader:
        """An unshuffled loader for any split present (used for prediction)."""
        return self._loader(split)
