"""Training samplers chosen by ``DataConfig`` (train split only)."""
from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
from torch.utils.data import Sampler

from core.config import DataConfig


class NegativeRatioSampler(Sampler[int]):
    """Each epoch: every positive, plus ``ratio`` negatives per positive drawn afresh.

    labels: (N,) 0/1. Keeps all negatives when there are fewer than asked for.
    Hand-written because torch's WeightedRandomSampler draws with replacement and only in
    expectation, not "all positives plus exactly ratio x P distinct negatives" as the seed does.
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


class EpochTagged(Sampler[tuple[int, int]]):
    """Yields ``(index, epoch)`` from ``sampler``, so a data-loader worker knows the epoch.

    Persistent workers outlive an epoch and cannot see the main process's state; the tag lets
    the dataset reseed its augmentation per epoch. Lightning calls ``set_epoch`` before each
    epoch (so resumed runs keep counting); without it each new pass counts one up.
    """

    def __init__(self, sampler: Sampler[int]) -> None:
        self.sampler = sampler
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.sampler)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        return ((int(index), epoch) for index in self.sampler)


def sampler_for(cfg: DataConfig) -> Callable[[np.ndarray, int], Sampler] | None:
    """A factory for the training sampler, or None to shuffle every sample every epoch."""
    if cfg.negative_ratio <= 0:
        return None
    return lambda labels, seed: NegativeRatioSampler(labels, ratio=cfg.negative_ratio, seed=seed)
