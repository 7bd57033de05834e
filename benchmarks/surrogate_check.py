"""python benchmarks/surrogate_check.py --space egfr [--curves CSV] [--trials 12] [--epochs 20]

One real sweep against the surrogate's run of the same settings: medtune's default search
(``--search``/``--scheduler``, TPE + ASHA) with ``build_tuner`` and real training on the phantom the
curves were recorded on, then the same settings and seed in Ray Tune on the surrogate fitted on
those curves (``benchmarks/search_sim.py``). Prints, for both, the trial-epochs used, the best val
found, how many trials ASHA let past each rung, and the best val so far at quarters of the budget.
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")

import pandas as pd  # noqa: E402
import ray  # noqa: E402
import yaml  # noqa: E402
from search_report import best_at  # noqa: E402
from search_sim import EpochLog, Method, anytime, run_method  # noqa: E402
from surrogate import CurveSurrogate, default_curves, read_curves  # noqa: E402

from core.config import TrialConfig  # noqa: E402
from core.data.prepared import DataOptions  # noqa: E402
from core.tasks import get_task, prepare  # noqa: E402
from search_spaces import get_space  # noqa: E402
from tuning.search.settings import SweepSettings  # noqa: E402
from tuning.search.sweep import build_tuner  # noqa: E402
from tuning.search.workers import worker_runtime_env  # noqa: E402


def real_sweep(space_name: str, settings: SweepSettings, overrides: dict, difficulty: str,
               train_seed: int) -> pd.DataFrame:
    """The epoch log (``search_sim.anytime``) of a real sweep on the phantom."""
    space = get_space(space_name)
    cfg = TrialConfig.from_dict({**space.fixed, **overrides}).data
    data = prepare(get_task(cfg.task), cfg, DataOptions(phantom_difficulty=difficulty),
                   seed=train_seed)
    log = EpochLog(space.metric, list(space.search))
    with tempfile.TemporaryDirectory(prefix="surrogate-check-") as storage:
        build_tuner(space, data.without_test().arrays, settings, overrides=overrides,
                    storage_path=storage, callbacks=[log]).fit()
    return anytime(log.rows, settings.max_concurrent or 1)


def describe(log: pd.DataFrame, budget: int) -> dict[str, float]:
    """Trial-epochs, best val, trials and the median epochs a trial ran, and the best val after
    each quarter of ``budget`` trial-epochs."""
    reached = log.groupby("trial")["epoch"].max()
    row = {"trial_epochs": len(log), "best": log["best"].iloc[-1],
           "trials": len(reached), "median_epochs_per_trial": float(reached.median())}
    for q in (0.25, 0.5, 0.75, 1.0):
        row[f"best@{q:g}budget"] = best_at(log, q * budget)
    return row


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--space", default="egfr")
    p.add_argument("--curves", type=Path)
    p.add_argument("--trials", type=int, default=12)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--seed", type=int, default=0, help="the sweep's seed (TPE, noise draw)")
    p.add_argument("--train-seed", type=int, default=42, help="the curves' training seed")
    p.add_argument("--difficulty", default="hard")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    opts = p.parse_args()
    overrides = {k: yaml.safe_load(v) for k, v in (i.split("=", 1) for i in opts.set)}
    space = get_space(opts.space)
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False,
             runtime_env=worker_runtime_env())
    settings = SweepSettings(num_samples=opts.trials, max_epochs=opts.epochs, max_concurrent=2,
                             seed=opts.seed, gpus_per_trial=0)
    # the sweep trains with the curves' training seed; TPE is seeded by --seed through settings
    real = real_sweep(opts.space, settings, {**overrides, "train/seed": opts.train_seed},
                      opts.difficulty, opts.train_seed)
    surrogate = CurveSurrogate(space, read_curves(opts.curves or default_curves(opts.space)),
                               epochs=opts.epochs)
    simulated, _ = run_method(Method("TPE + ASHA", "tpe", "asha"), space, surrogate,
                              seed=opts.seed, num_samples=opts.trials, max_epochs=opts.epochs,
                              slots=2, overrides=overrides)
    budget = opts.trials * opts.epochs
    table = pd.DataFrame({"real": describe(real, budget), "surrogate": describe(simulated, budget)})
    print(f"{opts.space}: TPE + ASHA, {opts.trials} trials x {opts.epochs} epochs, seed {opts.seed}")
    print(table.to_string(float_format=lambda v: f"{v:.4f}"))


if __name__ == "__main__":
    main()
