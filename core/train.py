"""``train(config, arrays)``: the one place a Lightning Trainer is built.

Sweep trials, retrains and tests all call it, so a retrain runs exactly the code its trial ran.
"""
from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping
from pytorch_lightning.loggers import Logger, TensorBoardLogger

from core.config import TrialConfig
from core.crossval import FoldsDataModule, FoldsModule, fold_arrays
from core.data.augment import augment_for
from core.data.datamodule import ArrayDataModule
from core.data.resident import data_device
from core.data.sampling import sampler_for
from core.losses import build_loss, class_weights
from core.metrics import VAL_LOSS
from core.models import build_model
from core.module import TaskModule
from core.tasks import get_task

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a finished run leaves: the module holding its best weights, and its history."""

    module: TaskModule | FoldsModule  # FoldsModule: a cross-validation run (``train/fold``)
    best_score: float
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    history: list[dict[str, float]] = field(default_factory=list)


class BestWeights(pl.Callback):
    """Keeps a copy of the weights at the best value of ``metric``, and every epoch's metrics.

    Its state rides in Lightning checkpoints, so a resumed trial keeps its best epoch and history.
    """

    def __init__(self, metric: str, mode: str) -> None:
        self.metric, self.mode = metric, mode
        self.best_score = -math.inf if mode == "max" else math.inf
        self.best_epoch = 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.history: list[dict[str, float]] = []

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        epoch = trainer.current_epoch + 1
        metrics["epoch"] = epoch
        self.history.append(metrics)
        score = metrics.get(self.metric, math.nan)
        better = score > self.best_score if self.mode == "max" else score < self.best_score
        if better or self.best_state is None:
            self.best_score = score if math.isfinite(score) else self.best_score
            self.best_epoch = epoch
            self._keep(module.state_dict())

    def _keep(self, state: Mapping[str, torch.Tensor]) -> None:
        """Copy ``state`` into buffers on its own device: no host transfer, no new allocations."""
        if (self.best_state is None or self.best_state.keys() != state.keys()
                or any(self.best_state[k].device != v.device for k, v in state.items())):
            self.best_state = {k: v.detach().clone() for k, v in state.items()}  # e.g. resumed
            return
        for key, value in state.items():
            self.best_state[key].copy_(value, non_blocking=True)

    def state_dict(self) -> dict[str, Any]:
        """For a checkpoint: the best weights on the CPU, so it loads on any machine."""
        best = None if self.best_state is None else {k: v.cpu() for k, v in self.best_state.items()}
        return {"best_score": self.best_score, "best_epoch": self.best_epoch,
                "best_state": best, "history": self.history}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_score, self.best_epoch = state["best_score"], state["best_epoch"]
        self.best_state, self.history = state["best_state"], state["history"]


def resolve_precision(precision: str) -> str:
    """``auto``: bf16 mixed precision on a GPU that supports it, fp16 mixed on older GPUs, else fp32."""
    if precision != "auto":
        return precision
    if not torch.cuda.is_available():
        return "32-true"
    return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"


def build_module(cfg: TrialConfig, *, sample_shape: Sequence[int],
                 train_labels: np.ndarray | None = None) -> TaskModule:
    """Network + loss + optimiser settings for ``cfg``; sample_shape is (C, *spatial)."""
    kind = get_task(cfg.data.task).kind
    weights = (class_weights(train_labels) if train_labels is not None and kind == "classification"
               else (0.5, 0.5))
    loss = build_loss(cfg.loss, weights=weights)
    net = build_model(cfg.model, spatial_shape=tuple(sample_shape[1:]),
                      in_channels=int(sample_shape[0]), out_channels=loss.out_channels)
    return TaskModule(net=net, loss=loss, optim=cfg.optim, kind=kind)


def build_run(cfg: TrialConfig, arrays: Mapping[str, np.ndarray]
              ) -> tuple[TaskModule | FoldsModule, pl.LightningDataModule]:
    """The module and data of one run: a ``TaskModule``, or with ``arrays["train/fold"]`` a
    ``FoldsModule`` of one model per cross-validation fold."""
    if "train/fold" not in arrays:
        module = build_module(cfg, sample_shape=arrays["train/x"].shape[1:],
                              train_labels=np.asarray(arrays["train/y"]))
        return module, build_datamodule(cfg, arrays)
    parts = [fold_arrays(arrays, k) for k in range(int(np.max(arrays["train/fold"])) + 1)]
    folds = [build_module(cfg, sample_shape=part["train/x"].shape[1:], train_labels=part["train/y"])
             for part in parts]
    kind = get_task(cfg.data.task).kind
    return (FoldsModule(folds, optim=cfg.optim, segmentation=kind == "segmentation"),
            FoldsDataModule([build_datamodule(cfg, part) for part in parts]))


def build_datamodule(cfg: TrialConfig, arrays: Mapping[str, np.ndarray]) -> ArrayDataModule:
    """The loaders ``cfg`` trains on: its batch size, workers, sampler and augmentation; on a GPU,
    train and val on the device when they fit its budget (``core.data.resident``)."""
    augment = augment_for(cfg.data, sample_shape=arrays["train/x"].shape[1:],
                          label_shape=arrays["train/y"].shape[1:])
    device = data_device(arrays, fraction=cfg.train.device_data_fraction,
                         share=cfg.train.device_share, augment=augment is not None)
    return ArrayDataModule(arrays, batch_size=cfg.train.batch_size,
                           num_workers=cfg.train.num_workers,
                           pin_memory=torch.cuda.is_available(), seed=cfg.train.seed,
                           augment=augment, sampler_factory=sampler_for(cfg.data), device=device)


def epoch_logger(log_dir: str | Path | None) -> Logger | bool:
    """TensorBoard event files written straight into ``log_dir`` (once per epoch), or none."""
    if log_dir is None:
        return False
    return TensorBoardLogger(save_dir=str(log_dir), name="", version="", default_hp_metric=False)


def train(cfg: TrialConfig, arrays: Mapping[str, np.ndarray], *, metric: str, mode: str,
          callbacks: Sequence[pl.Callback] = (), ckpt_path: str | Path | None = None,
          root_dir: str | Path | None = None, progress: bool = False,
          log_dir: str | Path | None = None) -> TrainResult:
    """Train ``cfg`` on ``arrays["train/*"]``, validating on ``arrays["val/*"]`` every epoch
    (or, with ``arrays["train/fold"]``, on each cross-validation fold, reporting their mean).

    Stops early on val loss with the config's patience; returns the module at the best
    ``metric`` epoch. ``ckpt_path`` resumes from a Lightning checkpoint; ``log_dir`` gets
    TensorBoard event files of the per-epoch metrics (``train/loss``, ``val/loss``, ``val/*``).
    """
    pl.seed_everything(cfg.train.seed, workers=True, verbose=False)
    module, data = build_run(cfg, arrays)
    best = BestWeights(metric, mode)
    stopper = EarlyStopping(monitor=VAL_LOSS, mode="min", patience=cfg.train.patience,
                            check_on_train_epoch_end=False)
    trainer = pl.Trainer(
        max_epochs=cfg.train.max_epochs, accelerator="auto", devices=1,
        # a str from the config; Lightning refuses an unknown one, naming the valid values
        precision=resolve_precision(cfg.train.precision),  # type: ignore[arg-type]
        callbacks=[stopper, best, *callbacks],
        logger=epoch_logger(log_dir), enable_progress_bar=progress,
        enable_checkpointing=any(isinstance(c, pl.callbacks.Checkpoint) for c in callbacks),
        enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=root_dir)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*number of training batches.*")
        trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
    if best.best_state is not None:
        module.load_state_dict(best.best_state)
    module.cpu().eval()
    return TrainResult(module=module, best_score=best.best_score, best_epoch=best.best_epoch,
                       epochs_run=trainer.current_epoch, stopped_early=stopper.stopped_epoch > 0,
                       history=best.history)
