"""Checkpoints: a run resumed from one continues where it stopped, counting no epoch twice."""
import numpy as np
import pytorch_lightning as pl

from core.config import TrialConfig
from core.train import train


class SaveAt(pl.Callback):
    """Saves a full Lightning checkpoint at the end of validation of one epoch."""

    def __init__(self, path, epoch):
        self.path, self.epoch = path, epoch

    def on_validation_end(self, trainer, module):
        if trainer.current_epoch + 1 == self.epoch:
            trainer.save_checkpoint(self.path, weights_only=False)


def arrays(seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in [("train", 40), ("val", 16)]:
        y = np.array([0, 1] * (n // 2))
        x = rng.normal(0, 1, (n, 1, 8, 8, 8)).astype(np.float32) + y[:, None, None, None, None]
        out[f"{split}/x"], out[f"{split}/y"] = x, y
    return out


def test_train_resumes_from_a_checkpoint_without_repeating_epochs(tmp_path):
    data = arrays()
    ckpt = tmp_path / "epoch2.ckpt"
    cfg = TrialConfig.from_dict({"train/max_epochs": 2, "train/batch_size": 8,
                                 "train/patience": 50, "data/shape": (8, 8, 8)})
    first = train(cfg, data, metric="val/auroc", mode="max", callbacks=[SaveAt(ckpt, 2)])
    assert [h["epoch"] for h in first.history] == [1, 2]
    longer = TrialConfig.from_dict({**cfg.to_dict(), "train/max_epochs": 4})
    resumed = train(longer, data, metric="val/auroc", mode="max", ckpt_path=ckpt)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]
    assert resumed.epochs_run == 4
    assert resumed.history[:2] == first.history
