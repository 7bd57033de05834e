"""python benchmarks/sweep_overhead.py [--trials 8] [--epochs 4] [--slots 2]

Orchestration overhead per trial of medtune's sweep (Optuna TPE + ASHA + a report and a
checkpoint every epoch) against a bare Ray Tune loop running the same configs through the same
``core.train.train``, in one process on one Ray instance:

    overhead per trial = (sweep wall time - sum of trial compute / parallel slots) / trials

Trial compute is each trial's own ``time_total_s``. ASHA is given a grace period equal to the
epoch budget so that both runs do the same work.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")

import ray  # noqa: E402
import torch  # noqa: E402
from ray import tune  # noqa: E402

from core.config import TrialConfig  # noqa: E402
from core.data.prepared import DataOptions  # noqa: E402
from core.tasks import get_task, prepare  # noqa: E402
from core.train import train  # noqa: E402
from search_spaces import get_space  # noqa: E402
from tuning.search.settings import SweepSettings  # noqa: E402
from tuning.search.space import flatten, nest  # noqa: E402
from tuning.search.sweep import build_tuner  # noqa: E402
from tuning.search.workers import quiet_trial  # noqa: E402


def overhead(grid: tune.ResultGrid, wall: float, slots: int) -> tuple[float, float]:
    """(trial compute in seconds, overhead per trial in seconds)."""
    compute = sum(float(r.metrics.get("time_total_s", 0.0)) for r in grid)
    return compute, (wall - compute / slots) / len(grid)


def bare_trial(config: dict, *, data: dict, metric: str, mode: str) -> None:
    """The same training, reported once at the end: no searcher, scheduler or checkpoints."""
    torch.set_num_threads(1)
    with quiet_trial():
        result = train(TrialConfig.from_dict(flatten(config["cfg"])), data, metric=metric, mode=mode)
    tune.report({metric: result.best_score})


def main() -> None:
    args = argparse.ArgumentParser()
    args.add_argument("--trials", type=int, default=8)
    args.add_argument("--epochs", type=int, default=4)
    args.add_argument("--slots", type=int, default=2)
    opts = args.parse_args()
    space = get_space("egfr")
    cfg = TrialConfig.from_dict(space.fixed).data
    data = prepare(get_task(cfg.task), cfg, DataOptions(), seed=42)
    arrays = data.without_test().arrays
    ray.init(num_cpus=opts.slots, include_dashboard=False, configure_logging=False)
    settings = SweepSettings(num_samples=opts.trials, max_epochs=opts.epochs,
                             max_concurrent=opts.slots, grace_period=opts.epochs)
    storage = tempfile.mkdtemp()
    # a fixed patience so both runs train every epoch of the budget
    overrides = {"train/patience": 1000}
    started = time.perf_counter()
    grid = build_tuner(space, arrays, settings, overrides=overrides, storage_path=storage).fit()
    sweep_wall = time.perf_counter() - started
    configs = [nest({**flatten(r.config), "train/patience": 1000}) for r in grid]

    trainable = tune.with_resources(
        tune.with_parameters(bare_trial, data=arrays, metric=space.metric, mode=space.mode),
        {"cpu": 1})
    started = time.perf_counter()
    bare = tune.Tuner(trainable, param_space={"cfg": tune.grid_search(configs)},
                      tune_config=tune.TuneConfig(reuse_actors=True,
                                                  max_concurrent_trials=opts.slots),
                      run_config=tune.RunConfig(storage_path=storage, name="bare", verbose=0))
    bare_grid = bare.fit()
    bare_wall = time.perf_counter() - started
    ray.shutdown()
    for name, g, wall in [("medtune sweep", grid, sweep_wall), ("bare Tune loop", bare_grid, bare_wall)]:
        compute, per_trial = overhead(g, wall, opts.slots)
        print(f"{name:15s} trials {len(g):3d}  wall {wall:7.1f} s  trial compute {compute:7.1f} s"
              f"  overhead/trial {per_trial:5.2f} s")


if __name__ == "__main__":
    main()
