"""Ray Tune function trainables: a sweep trial and a retrain, both calling ``core.train.train``."""
from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import pytorch_lightning as pl
import ray
import torch
from ray import tune

from core.config import TrialConfig
from core.evaluate import predict
from core.train import quiet_lightning, train
from tuning.space import flatten
from tuning.trial_logs import trial_log_dir

CHECKPOINT_FILE = "checkpoint.ckpt"
STOP_WAIT_S = "3600"


class TuneReporter(pl.callbacks.Checkpoint):
    """Reports every validation epoch to Tune, with a Lightning checkpoint to resume from.

    A ``Checkpoint`` subclass so Lightning runs it after EarlyStopping and BestWeights, and
    ``early_stopped`` in the report is already decided.
    """

    def __init__(self, *, save_checkpoints: bool = True) -> None:
        self.save_checkpoints = save_checkpoints

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics: dict[str, Any] = {k: float(v) for k, v in trainer.callback_metrics.items()}
        metrics.update(epoch=trainer.current_epoch + 1, early_stopped=int(trainer.should_stop),
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
    # A trial that ASHA stops may be mid-epoch; Tune hands this process to the next trial only
    # once that epoch ends, and gives up after this many seconds (2 by default), erroring the
    # next trial. Read by this process when it is reused, so set here, where it always applies.
    os.environ["TUNE_FUNCTION_THREAD_TIMEOUT_S"] = STOP_WAIT_S
    quiet_lightning()
    logging.getLogger("ray.train").setLevel(logging.WARNING)  # a line per saved checkpoint
    try:
        yield
    finally:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def trial_config(config: dict[str, Any], *, threads: int) -> TrialConfig:
    """The typed config of a trial, with data-loader workers sized from its CPUs (one kept
    for the training loop itself)."""
    cfg = TrialConfig.from_dict(flatten(config))
    workers = max(cfg.train.num_workers, min(4, int(threads) - 1))
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, num_workers=workers))


def sweep_trial(config: dict[str, Any], *, data: Mapping[str, np.ndarray], metric: str,
                mode: str, threads: int = 1) -> None:
    """One sweep trial: train the config, reporting and checkpointing every epoch."""
    cfg = trial_config(config, threads=threads)
    with trial_resources(threads), resume_path() as ckpt_path:
        train(cfg, data, metric=metric, mode=mode, callbacks=[TuneReporter()],
              ckpt_path=ckpt_path, log_dir=trial_log_dir())


def retrain_trial(config: dict[str, Any], *, data: Mapping[str, np.ndarray], metric: str,
                  mode: str, threads: int = 1) -> None:
    """Retrain a chosen config with its seed, then predict val and test once.

    The final report's checkpoint holds the weights and both splits' probabilities; the
    driver picks the threshold on val and computes test metrics from them.
    """
    cfg = trial_config(config, threads=threads)
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
