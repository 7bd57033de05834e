"""K-fold cross-validation as one Lightning run: one network per fold, trained in lockstep.

Each epoch every fold's model takes its own batches (Lightning cycles the fold loaders together)
and is validated on its held-out fold; the logged ``val/*`` metrics are the means over the folds
(``val/fold<k>/*`` keeps each), so a sweep still reports one number per epoch and ASHA still
counts epochs. Early stopping and the learning-rate plateau follow the mean val loss.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import cast

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.types import OptimizerLRSchedulerConfig
from torch import nn

from core.config import OptimConfig
from core.data.datamodule import ArrayDataModule
from core.metrics import TRAIN_LOSS, VAL_LOSS
from core.module import TaskModule, ValBatch, validation_scores


def fold_arrays(arrays: Mapping[str, np.ndarray], fold: int) -> dict[str, np.ndarray]:
    """Fold ``fold`` held out as val, the other folds as train (copies: CV is for small data)."""
    held_out = np.asarray(arrays["train/fold"]) == fold
    x, y = np.asarray(arrays["train/x"]), np.asarray(arrays["train/y"])
    return {"train/x": x[~held_out], "train/y": y[~held_out], "val/x": x[held_out], "val/y": y[held_out]}


class FoldsDataModule(pl.LightningDataModule):
    """One ``ArrayDataModule`` per fold; train and val loaders come as lists, fold by fold."""

    def __init__(self, folds: list[ArrayDataModule]) -> None:
        super().__init__()
        self.folds = folds

    def train_dataloader(self) -> list:
        return [fold.train_dataloader() for fold in self.folds]

    def val_dataloader(self) -> list:
        return [fold.val_dataloader() for fold in self.folds]


class FoldsModule(pl.LightningModule):
    """K ``TaskModule``s (one per fold) optimised together; logs the mean of their val metrics."""

    def __init__(self, folds: list[TaskModule], *, optim: OptimConfig, segmentation: bool) -> None:
        super().__init__()
        self.folds = nn.ModuleList(folds)
        self.optim, self.segmentation = optim, segmentation
        self._val: list[list[ValBatch]] = [[] for _ in folds]
        self._train: list[torch.Tensor] = []

    @property
    def fold_modules(self) -> list[TaskModule]:
        """The folds' modules, in fold order (``nn.ModuleList`` types them as plain modules)."""
        return [cast(TaskModule, fold) for fold in self.folds]

    def training_step(self, batch: list, batch_idx: int) -> torch.Tensor:
        """``batch``: one (x, y) per fold; the folds' losses add up (their weights are disjoint)."""
        losses = torch.stack([fold.loss(fold(x), y) for fold, (x, y) in zip(self.fold_modules, batch)])
        if not torch.isfinite(losses).all():
            raise FloatingPointError(f"training loss became {losses.tolist()} at epoch "
                                     f"{self.current_epoch}, step {batch_idx}; lower the lr?")
        self._train.append(losses.detach().mean())
        return losses.sum()

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int,
                        dataloader_idx: int = 0) -> None:
        fold = self.fold_modules[dataloader_idx]
        x, y = batch
        logits = fold(x)
        loss = fold.loss(logits, y).detach()
        self._val[dataloader_idx].append((loss * len(x), fold.loss.probabilities(logits).detach(), y))

    def on_validation_epoch_end(self) -> None:
        if not all(self._val):
            return
        per_fold = [validation_scores(items, segmentation=self.segmentation) for items in self._val]
        for items in self._val:
            items.clear()
        logged = {f"val/fold{k}/{name}": value for k, fold in enumerate(per_fold) for name, value in fold.items()}
        logged.update({f"val/{name}": float(np.nanmean([fold[name] for fold in per_fold]))
                       for name in per_fold[0]})
        if self._train:
            logged[TRAIN_LOSS] = float(torch.stack(self._train).mean())
            self._train.clear()
        self.log_dict(logged)

    def configure_optimizers(self) -> OptimizerLRSchedulerConfig:
        """Adam over every fold's weights, ReduceLROnPlateau on the mean val loss (the seed's)."""
        optimizer = torch.optim.Adam(self.parameters(), lr=self.optim.lr, weight_decay=self.optim.weight_decay)
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=self.optim.plateau_factor,
            patience=self.optim.plateau_patience, threshold=self.optim.plateau_threshold)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "monitor": VAL_LOSS, "interval": "epoch"}}
