"""Ray Tune function trainables: a sweep trial and a retrain, both calling ``core.train.train``."""
from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import math
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import pytorch_lightning as pl
import ray
import torch
from ray import tune

from core.config import TrialConfig
from core.data.resident import loader_workers
from core.evaluate import predict
from core.metrics import SCORE
from core.train import BestWeights, train
from tuning.search.space import flatten
from tuning.search.trial_logs import trial_log_dir
from tuning.search.workers import quiet_trial

CHECKPOINT_FILE = "checkpoint.ckpt"


def best_so_far(trainer: pl.Trainer) -> float:
    """The best value of the selection metric over this trial's epochs so far (``BestWeights``
    keeps it, also across a resume); NaN before any finite value."""
    best = next((c for c in trainer.callbacks if isinstance(c, BestWeights)), None)
    return best.best_score if best is not None and math.isfinite(best.best_score) else math.nan


class TuneReporter(pl.callbacks.Checkpoint):
    """Reports every validation epoch to Tune, with a Lightning checkpoint to resume from.

    A ``Checkpoint`` subclass so Lightning runs it after EarlyStopping and BestWeights, and
    ``early_stopped`` and the best-so-far ``SCORE`` (what the searcher, the scheduler and top-k
    all rank by) in the report are already decided.
    """

    def __init__(self, *, save_checkpoints: bool = True) -> None:
        self.save_checkpoints = save_checkpoints

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics: dict[str, Any] = {k: float(v) for k, v in trainer.callback_metrics.items()}
        metrics.update(epoch=trainer.current_epoch + 1, early_stopped=int(trainer.should_stop),
                       **{SCORE: best_so_far(trainer)},
                       node_id=ray.get_runtime_context().get_node_id())
        if not self.save_checkpoints:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory() as folder:
            trainer.save_checkpoint(Path(folder) / CHECKPOINT_FILE, weights_only=False)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


@contextlib.contextmanager
def resume_path() -> Iterator[str | None]:
    """The Lightning checkpoint this trial should resume from, if Tune restored one."""
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        yield None
        return
    with checkpoint.as_directory() as folder:
        path = Path(folder) / CHECKPOINT_FILE
        yield str(path) if path.exists() else None


@contextlib.contextmanager
def trial_resources(threads: int) -> Iterator[None]:
    """Use the trial's CPUs for torch threads; free GPU memory however the trial ends."""
    torch.set_num_threads(max(1, int(threads)))
    try:
        with quiet_trial():
            yield
    finally:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def assigned_gpus() -> float:
    """The GPUs Ray gave this trial (0.25 under ``--gpus-per-trial 0.25``); 0 outside Ray."""
    if not ray.is_initialized():
        return 0.0
    return float(ray.get_runtime_context().get_assigned_resources().get("GPU", 0.0))


def trial_config(config: dict[str, Any], *, threads: int, gpus: float = 0.0) -> TrialConfig:
    """The typed config of a trial, with data-loader workers sized from its CPUs (one kept
    for the training loop itself) and its share of a GPU (``gpus``, when under one) for the
    device-resident data budget."""
    cfg = TrialConfig.from_dict(flatten(config))
    workers = max(cfg.train.num_workers, loader_workers(threads))
    share = min(1.0, gpus) if gpus > 0 else cfg.train.device_share
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, num_workers=workers,
                                                              device_share=share))


def sweep_trial(config: dict[str, Any], *, data: Mapping[str, np.ndarray], metric: str,
                mode: str, threads: int = 1) -> None:
    """One sweep trial: train the config, reporting and checkpointing every epoch."""
    cfg = trial_config(config, threads=threads, gpus=assigned_gpus())
    with trial_resources(threads), resume_path() as ckpt_path:
        train(cfg, data, metric=metric, mode=mode, callbacks=[TuneReporter()],
              ckpt_path=ckpt_path, log_dir=trial_log_dir())


def retrain_trial(config: dict[str, Any], *, data: Mapping[str, np.ndarray], metric: str,
                  mode: str, threads: int = 1) -> None:
    """Retrain a chosen config with its seed, then predict val and test once.

    The final report's checkpoint holds the weights and both splits' probabilities; the
    driver picks the threshold on val and computes test metrics from them.
    """
    cfg = trial_config(config, threads=threads, gpus=assigned_gpus())
    with trial_resources(threads):
        result = train(cfg, data, metric=metric, mode=mode,
                       callbacks=[TuneReporter(save_checkpoints=False)], log_dir=trial_log_dir())
        batch = cfg.train.batch_size
        val_p = predict(result.module, data["val/x"], batch_size=batch)
        test_p = predict(result.module, data["test/x"], batch_size=batch)
        with tempfile.TemporaryDirectory() as folder:
            torch.save(result.module.net.state_dict(), Path(folder) / "model.pt")
            np.savez(Path(folder) / "predictions.npz", val=val_p, test=test_p)
            (Path(folder) / "history.json").write_text(json.dumps(result.history))
            tune.report({metric: result.best_score, "best_epoch": result.best_epoch,
                         "epochs_run": result.epochs_run, "final": 1},
                        checkpoint=tune.Checkpoint.from_directory(folder))
