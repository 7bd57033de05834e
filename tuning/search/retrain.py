"""After the sweep: retrain the top-k configs with several seeds, then read test once."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
from ray import tune

from core.evaluate import evaluate_predictions
from core.metrics import SCORE
from search_spaces.types import SearchSpace
from tuning.search.progress import retrain_table
from tuning.search.settings import SweepSettings
from tuning.search.space import flatten, nest
from tuning.search.sweep import short_name, with_trial_resources
from tuning.search.trainable import retrain_trial
from tuning.search.trials import best_of

RETRAIN_SEED_OFFSET = 1000


def retrain_seeds(seed: int, count: int) -> list[int]:
    """Seeds of the retrains: disjoint from the sweep's training seed (the run's ``seed``), so no
    retrain replays a sweep trial exactly; the spread over them is seed-to-seed variation."""
    return [seed + RETRAIN_SEED_OFFSET + i for i in range(count)]


def split_groups(splits: pd.DataFrame, split: str = "test") -> np.ndarray:
    """(N,) the ``group`` (patient/series) of each row of a split, in its arrays' row order."""
    return splits.loc[splits["split"] == split, "group"].to_numpy()


@dataclass
class RetrainRun:
    """One retrained (config, seed): its val score, test evaluation and saved files."""

    rank: int
    seed: int
    config: dict[str, Any]
    val_score: float
    evaluation: dict[str, Any]
    checkpoint_dir: Path


def top_configs(grid: tune.ResultGrid, *, metric: str, mode: str, k: int) -> list[dict[str, Any]]:
    """The ``k`` distinct configs with the best val metric seen in any epoch of their trial
    (the final best-so-far ``SCORE``, the number the searcher and scheduler ranked by)."""
    scored = []
    for result in grid:
        history = result.metrics_dataframe
        if result.error is not None or history is None or metric not in history:
            continue
        # SCORE is the best-so-far of metric, what the searcher and scheduler saw: same best
        score = best_of(history[SCORE if SCORE in history else metric], mode)
        if math.isfinite(score):
            scored.append((score, flatten(result.config)))
    scored.sort(key=lambda item: item[0], reverse=(mode == "max"))
    unique: list[dict[str, Any]] = []
    for _, config in scored:
        if config not in unique:
            unique.append(config)
    return unique[:k]


def retrain_by_rank(config: dict[str, Any], *, configs: list[dict[str, Any]],
                    data: Mapping[str, np.ndarray], metric: str, mode: str, threads: int) -> None:
    """Ray trainable: retrain ``configs[rank]`` with ``seed`` (both from the grid config)."""
    chosen = {**configs[config["rank"]], "train/seed": int(config["seed"])}
    retrain_trial(nest(chosen), data=data, metric=metric, mode=mode, threads=threads)


def retrain_trainable(configs: list[dict[str, Any]], data: Mapping[str, np.ndarray],
                      space: SearchSpace, settings: SweepSettings) -> Any:
    """``retrain_by_rank`` bound to the chosen configs, the data (test included) and the metric."""
    return with_trial_resources(retrain_by_rank, settings, configs=configs, data=data,
                                metric=space.metric, mode=space.mode)


def build_retrain_tuner(configs: list[dict[str, Any]], seeds: list[int],
                        data: Mapping[str, np.ndarray], space: SearchSpace,
                        settings: SweepSettings, *, storage_path: str,
                        callbacks: list | None = None) -> tune.Tuner:
    """A grid of (rank, seed) retrains, run in parallel with the sweep's per-trial resources."""
    return tune.Tuner(
        retrain_trainable(configs, data, space, settings),
        param_space={"rank": tune.grid_search(list(range(len(configs)))),
                     "seed": tune.grid_search(list(seeds))},
        tune_config=tune.TuneConfig(max_concurrent_trials=settings.max_concurrent,
                                    reuse_actors=True, trial_name_creator=short_name,
                                    trial_dirname_creator=short_name),
        run_config=tune.RunConfig(name="retrain", storage_path=storage_path,
                                  callbacks=callbacks or [],
                                  failure_config=tune.FailureConfig(max_failures=settings.max_failures),
                                  progress_reporter=retrain_table(space), verbose=1))


def collect_runs(grid: tune.ResultGrid, configs: list[dict[str, Any]],
                 data: Mapping[str, np.ndarray], *, metric: str, segmentation: bool,
                 threshold_rule: str = "youden", groups: np.ndarray | None = None,
                 unit: str | None = None) -> list[RetrainRun]:
    """Evaluate each finished retrain on test, with its threshold chosen on val.

    groups: (N_test,) each test row's patient/series (``split_groups(splits)``) and unit its name
    ("patient", "series"): the test intervals resample these (``core.evaluate``).
    """
    runs = []
    for result in grid:
        if result.error is not None or result.checkpoint is None:
            continue
        folder = Path(result.checkpoint.path)
        with np.load(folder / "predictions.npz") as saved:
            val_p, test_p = saved["val"], saved["test"]
        test_y = np.asarray(data["test/y"])
        evaluation = evaluate_predictions(
            val_y=np.asarray(data["val/y"]), val_p=val_p, test_y=test_y, test_p=test_p,
            segmentation=segmentation, threshold_rule=threshold_rule, groups=groups, unit=unit)
        evaluation["val_probabilities"], evaluation["test_probabilities"] = val_p, test_p
        rank, seed = int(result.config["rank"]), int(result.config["seed"])
        runs.append(RetrainRun(rank=rank, seed=seed,
                               config={**configs[rank], "train/seed": seed},
                               val_score=float(result.metrics.get(metric, math.nan)),
                               evaluation=evaluation, checkpoint_dir=folder))
    return runs


def leaderboard(runs: list[RetrainRun], *, metric: str, mode: str) -> pd.DataFrame:
    """Per config: mean and sd over its seeds of the val metric and of each test metric.

    The sd is seed-to-seed spread, not a confidence interval; the intervals belong to the chosen
    model alone (summary.json), so no per-config interval sits beside these means.
    """
    rows = []
    for rank in sorted({run.rank for run in runs}):
        group = [run for run in runs if run.rank == rank]
        row: dict[str, Any] = {"rank": rank, "seeds": len(group),
                               "rep_seed": representative(group, mode=mode).seed}
        vals = np.array([run.val_score for run in group])
        row[f"{metric}_mean"], row[f"{metric}_sd"] = vals.mean(), sd(vals)
        for name in group[0].evaluation["test"]:
            values = np.array([run.evaluation["test"][name]["value"] for run in group], dtype=float)
            row[f"test/{name}_mean_over_seeds"] = np.nanmean(values) if np.isfinite(values).any() else np.nan
            row[f"test/{name}_sd_over_seeds"] = sd(values)
        rows.append(row)
    table = pd.DataFrame(rows)
    return table.sort_values(f"{metric}_mean", ascending=(mode == "min")).reset_index(drop=True)


def sd(values: np.ndarray) -> float:
    """Sample sd (ddof 1) of the finite values; NaN with fewer than two."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    return float(finite.std(ddof=1)) if len(finite) > 1 else float("nan")


def representative(group: list[RetrainRun], *, mode: str) -> RetrainRun:
    """The seed with the best val score: the model a config is judged and shipped by."""
    pick = max if mode == "max" else min
    return pick(group, key=lambda run: run.val_score if math.isfinite(run.val_score) else
                (-math.inf if mode == "max" else math.inf))


def chosen_run(runs: list[RetrainRun], board: pd.DataFrame, *, mode: str) -> RetrainRun:
    """The final model: best mean val score over seeds (test plays no part), its best seed."""
    rank = int(board.iloc[0]["rank"])
    return representative([run for run in runs if run.rank == rank], mode=mode)
