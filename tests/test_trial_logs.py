"""Each Tune trial writes its TensorBoard events into its own folder under the storage path."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from ray import tune
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from core.metrics import VAL_LOSS
from search_spaces import get_space
from tuning.search.settings import SweepSettings
from tuning.search.space import nest
from tuning.search.sweep import sweep_trainable
from tuning.search.trial_logs import TENSORBOARD_DIR

pytestmark = pytest.mark.slow


def _arrays(n_train: int = 16, n_val: int = 8) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    out = {}
    for split, n in (("train", n_train), ("val", n_val)):
        y = np.array([0, 1] * (n // 2))
        out[f"{split}/x"] = rng.normal(0, 1, (n, 1, 8, 8, 8)).astype(np.float32)
        out[f"{split}/y"] = y
    return out


def test_reused_trial_processes_each_log_under_their_own_trial_folder(ray_local, tmp_path):
    base = get_space("egfr")
    space = replace(base, fixed={**base.fixed, "data/shape": (8, 8, 8), "train/batch_size": 8})
    settings = SweepSettings(num_samples=1, max_epochs=2, max_concurrent=1)
    config = nest({**space.fixed, "train/max_epochs": 2,
                   "optim/lr": tune.grid_search([1e-3, 2e-3])})
    tuner = tune.Tuner(sweep_trainable(space, _arrays(), settings), param_space=config,
                       tune_config=tune.TuneConfig(reuse_actors=True, max_concurrent_trials=1),
                       run_config=tune.RunConfig(storage_path=str(tmp_path), name="sweep"))
    grid = tuner.fit()
    assert not grid.errors
    folders = sorted(p for p in (tmp_path / "sweep").iterdir() if p.is_dir())
    assert len(folders) == 2
    for trial in folders:
        events = EventAccumulator(str(trial / TENSORBOARD_DIR))
        events.Reload()
        assert len(events.Scalars(VAL_LOSS)) == 2, trial.name
