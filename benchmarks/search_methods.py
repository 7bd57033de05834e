"""python benchmarks/search_methods.py [--trials 12] [--epochs 10] [--slots 2] [--seed 42]

Search methods on the same budget (trials x epochs) on the EGFR phantom, one after another on
one local Ray instance, no W&B: Optuna TPE + ASHA, random + ASHA, and W&B's bayes engine with
W&B's hyperband rule (both from the ``sweeps`` package, run locally).

Per method: the best val metric any epoch reached, how many trial-epochs and how much wall time
it took to first reach it (every epoch reported by any trial up to that moment counts), the
totals, and the lowest val loss any epoch reached (val AUROC saturates at 1.0 on the phantom). One seed is one draw: differences of a few hundredths are noise on a phantom this small.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
# a stopped trial finishes its epoch before its actor is reused; Ray's default wait is 2 s
os.environ.setdefault("TUNE_FUNCTION_THREAD_TIMEOUT_S", "60")

import pandas as pd  # noqa: E402
import ray  # noqa: E402

from core.config import TrialConfig  # noqa: E402
from core.data.prepared import DataOptions  # noqa: E402
from core.metrics import VAL_LOSS  # noqa: E402
from core.tasks import get_task, prepare  # noqa: E402
from search_spaces import get_space  # noqa: E402
from tuning.search.settings import SweepSettings  # noqa: E402
from tuning.search.sweep import build_tuner  # noqa: E402

METHODS = [("tpe", "asha"), ("random", "asha"), ("wandb-bayes", "wandb-hyperband")]


def epochs_table(grid, metric: str) -> pd.DataFrame:
    """Every epoch report of every trial, in the order they arrived: trial, timestamp, metric."""
    frames = []
    for result in grid:
        history = result.metrics_dataframe
        if history is None or metric not in history:
            continue
        frames.append(pd.DataFrame({"trial": result.path, "timestamp": history["timestamp"],
                                    "order": range(len(history)), metric: history[metric],
                                    VAL_LOSS: history.get(VAL_LOSS)}))
    table = pd.concat(frames, ignore_index=True)
    return table.sort_values(["timestamp", "order"], kind="stable").reset_index(drop=True)


def summarise(grid, *, metric: str, mode: str, started: float, wall: float) -> dict:
    """Best value, trial-epochs and seconds to first reach it, and the totals."""
    table = epochs_table(grid, metric)
    values = table[metric].astype(float)
    best = values.max() if mode == "max" else values.min()
    first = int(values[values == best].index[0])
    return {"best": best, "best_loss": float(table[VAL_LOSS].astype(float).min()),
            "epochs_to_best": first + 1,
            "time_to_best_s": max(0.0, float(table.loc[first, "timestamp"]) - started),
            "trial_epochs": len(table), "wall_s": wall, "trials": len(grid)}


def run_method(search: str, scheduler: str, arrays: dict, opts: argparse.Namespace) -> dict:
    space = get_space("egfr")
    settings = SweepSettings(num_samples=opts.trials, max_epochs=opts.epochs,
                             max_concurrent=opts.slots, seed=opts.seed, search=search,
                             scheduler=scheduler)
    storage = tempfile.mkdtemp(prefix=f"bench-{search}-")
    tuner = build_tuner(space, arrays, settings, overrides={}, storage_path=storage)
    started = time.time()
    grid = tuner.fit()
    wall = time.time() - started
    return summarise(grid, metric=space.metric, mode=space.mode, started=started, wall=wall)


def main() -> None:
    args = argparse.ArgumentParser()
    args.add_argument("--trials", type=int, default=12)
    args.add_argument("--epochs", type=int, default=10)
    args.add_argument("--slots", type=int, default=2)
    args.add_argument("--seed", type=int, default=42)
    opts = args.parse_args()
    space = get_space("egfr")
    cfg = TrialConfig.from_dict(space.fixed).data
    data = prepare(get_task(cfg.task), cfg, DataOptions(), seed=42)
    arrays = data.without_test().arrays
    ray.init(num_cpus=opts.slots, include_dashboard=False, configure_logging=False)
    rows = []
    for search, scheduler in METHODS:
        rows.append({"method": f"{search} + {scheduler}", **run_method(search, scheduler, arrays, opts)})
    ray.shutdown()
    print(f"\nEGFR phantom, {opts.trials} trials x {opts.epochs} epochs, {opts.slots} at once, "
          f"seed {opts.seed}; metric {space.metric} (val)")
    print(f"{'method':30s} {'best':>6s} {'epochs to best':>15s} {'s to best':>10s} "
          f"{'trial-epochs':>13s} {'wall s':>8s} {'best val loss':>14s}")
    for row in rows:
        print(f"{row['method']:30s} {row['best']:6.4f} {row['epochs_to_best']:15d} "
              f"{row['time_to_best_s']:10.0f} {row['trial_epochs']:13d} {row['wall_s']:8.0f} "
              f"{row['best_loss']:14.4f}")


if __name__ == "__main__":
    main()
