"""The LightningModule: handed a built network and loss, it trains, validates and predicts."""
from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.types import OptimizerLRSchedulerConfig
from torch import nn

from core.config import OptimConfig
from core.losses import TaskLoss
from core.metrics import TRAIN_LOSS, VAL_LOSS, binary_metrics, segmentation_scores

ValBatch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (loss x batch size, probabilities, targets)


def validation_scores(batches: list[ValBatch], *, segmentation: bool) -> dict[str, float]:
    """An epoch's val ``loss`` (mean per sample) and metrics from its batches: auroc, accuracy,
    f1, sensitivity, specificity, precision at 0.5, or mean dice and iou for segmentation."""
    total = float(torch.stack([batch[0] for batch in batches]).sum())
    probs = torch.cat([batch[1] for batch in batches]).float().cpu().numpy()
    targets = torch.cat([batch[2] for batch in batches]).cpu().numpy()
    scores = {"loss": total / len(targets)}
    if segmentation:
        scores.update({k: float(np.mean(v)) for k, v in segmentation_scores(targets, probs).items()})
    else:
        scores.update(binary_metrics(targets, probs))
    return scores


class TaskModule(pl.LightningModule):
    """Logs ``train/loss`` and ``val/loss`` plus ``val/<metric>`` for the task's kind.

    ``kind`` is the task's: classification logs auroc, accuracy, f1, sensitivity and
    specificity at 0.5; segmentation logs mean dice and iou.
    """

    def __init__(self, *, net: nn.Module, loss: TaskLoss, optim: OptimConfig,
                 kind: str = "classification") -> None:
        super().__init__()
        self.net = net
        self.loss = loss
        self.optim = optim
        self.segmentation = kind == "segmentation"
        self._val: list[ValBatch] = []
        self._train_sum: torch.Tensor | None = None  # sum of loss * batch size, on the device
        self._train_seen = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = self.loss(self(x), y)
        # summed on the device and read once per epoch: no host sync per step
        weighted = loss.detach() * len(x)
        self._train_sum = weighted if self._train_sum is None else self._train_sum + weighted
        self._train_seen += len(x)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        loss = self.loss(logits, y).detach()
        self._val.append((loss * len(x), self.loss.probabilities(logits).detach(), y.detach()))

    def on_validation_epoch_end(self) -> None:
        if not self._val:
            return
        metrics = {}
        if self._train_sum is not None:  # this epoch's mean training loss; a NaN one stops the run first
            metrics[TRAIN_LOSS] = self._train_mean(self._train_sum)
        scores = validation_scores(self._val, segmentation=self.segmentation)
        self._val.clear()
        metrics.update({f"val/{name}": value for name, value in scores.items()})
        self.log_dict(metrics)

    def _train_mean(self, total: torch.Tensor) -> float:
        """The epoch's mean training loss from its ``total`` (sum of loss * batch size); a
        non-finite one stops the run (lr too high?)."""
        mean = float(total) / self._train_seen
        self._train_sum, self._train_seen = None, 0
        if not np.isfinite(mean):
            raise FloatingPointError(f"training loss became {mean} in epoch {self.current_epoch}; "
                                     "lower the lr?")
        return mean

    def predict_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        return self.loss.probabilities(self(batch[0]))

    def configure_optimizers(self) -> OptimizerLRSchedulerConfig:
        """Adam, and ReduceLROnPlateau on val loss with the seed's factor/patience/threshold."""
        optimizer = torch.optim.Adam(self.parameters(), lr=self.optim.lr,
                                     weight_decay=self.optim.weight_decay)
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=self.optim.plateau_factor,
            patience=self.optim.plateau_patience, threshold=self.optim.plateau_threshold)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "monitor": VAL_LOSS, "interval": "epoch"}}
