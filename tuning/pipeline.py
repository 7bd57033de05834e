"""The whole run as plain functions: prepare data, sweep, retrain top-k, test once, write results.

Each stage can be called from a notebook; ``tuning.run`` is a thin CLI over ``run_pipeline``.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import ray
from ray import tune

from core.config import TrialConfig
from core.data.folds import cross_validation_arrays
from core.data.prepared import PreparedData
from core.data.splits import write_splits
from core.errors import ConfigError
from core.tasks import get_task, prepare
from core.tasks.prepare import Mapper
from search_spaces import get_space
from search_spaces.types import SearchSpace
from tuning.config.atomic import write_atomic, write_csv_atomic
from tuning.config.options import RunOptions, save_run_options, shown
from tuning.config.secrets import redact, secret
from tuning.parallel import local_map
from tuning.results import outputs
from tuning.results.analysis import histories_from_grid
from tuning.results.overlays import save_overlays
from tuning.results.report import write_report
from tuning.search.retrain import (
    build_retrain_tuner,
    chosen_run,
    collect_runs,
    leaderboard,
    retrain_seeds,
    retrain_trainable,
    split_groups,
    top_configs,
)
from tuning.search.space import check_space
from tuning.search.sweep import build_tuner, fit_or_resume, resolve_on_cluster, sweep_trainable
from tuning.search.trials import trials_table
from tuning.search.workers import worker_runtime_env
from tuning.tracking.callbacks import (
    log_wandb_retrains,
    mlflow_callbacks,
    prepare_wandb,
    sweep_tags,
    wandb_callbacks,
    wandb_mode,
)

log = logging.getLogger(__name__)


class RetrainsFailed(RuntimeError):
    """No retrain of the chosen configs finished: nothing to test, nothing to report."""


def resolve_space(space: str | SearchSpace) -> SearchSpace:
    return get_space(space) if isinstance(space, str) else space


def prepare_data(space: SearchSpace, options: RunOptions, *, mapper: Mapper = map) -> PreparedData:
    """Read, split and preprocess once (cached on disk), then check every model shape.

    ``mapper`` maps the per-scan preprocessing (``tuning.parallel.local_map()`` spreads it over
    this node's cores once Ray runs)."""
    fixed = TrialConfig.from_dict({**space.fixed, **options.overrides})
    data = prepare(get_task(fixed.data.task), fixed.data, options.data, seed=options.sweep.seed,
                   mapper=mapper)
    check_space(space, options.overrides, sample_shape=data.arrays["train/x"].shape[1:])
    return data


def start_ray(address: str | None) -> None:
    """Join a cluster (``auto`` or host:port) or start a local one on this machine's CPUs/GPUs;
    its worker processes get the trial settings of ``worker_runtime_env``."""
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, configure_logging=False,
                 runtime_env=worker_runtime_env())


def run_sweep(space: SearchSpace, data: PreparedData, options: RunOptions, *,
              callbacks: list, resume: bool) -> tune.ResultGrid:
    """The search on train/val only (the test arrays never enter the object store here); with
    ``options.folds``, on K grouped folds of train + val."""
    arrays = (cross_validation_arrays(data, k=options.folds, seed=options.sweep.seed) if options.folds
              else data.without_test().arrays)
    if options.sweep.optuna_storage:
        log.info("Optuna study %r stored in %s", options.name, redact(options.sweep.optuna_storage))
    return fit_or_resume(
        lambda: build_tuner(space, arrays, options.sweep, overrides=options.overrides,
                            storage_path=options.storage(), callbacks=callbacks,
                            study_name=options.name),
        sweep_trainable(space, arrays, options.sweep), f"{options.storage()}/sweep",
        resume=resume)


def run_retrains(space: SearchSpace, data: PreparedData, configs: list[dict[str, Any]],
                 options: RunOptions, *, callbacks: list, resume: bool) -> tune.ResultGrid:
    """The top-k configs retrained with ``retrain_seeds`` seeds each, predicting val and test."""
    seeds = retrain_seeds(options.sweep.seed, options.retrain_seeds)
    return fit_or_resume(
        lambda: build_retrain_tuner(configs, seeds, data.arrays, space, options.sweep,
                                    storage_path=options.storage(), callbacks=callbacks),
        retrain_trainable(configs, data.arrays, space, options.sweep),
        f"{options.storage()}/retrain", resume=resume, restart_errored=True)


def check_fingerprint(data: PreparedData, saved: str | None) -> None:
    """A resumed run must see the data it started with: same content and preprocessing settings."""
    now = data.info.get("cache_key")
    if saved is not None and now != saved:
        raise ConfigError(f"the data differ from the run's (fingerprint {saved}, now {now}): the "
                          "files or preprocessing settings changed; restore them or start a new --name")


def retrain_errors(grid: tune.ResultGrid) -> str:
    """Each errored retrain's last error line, for the message when none finished."""
    lines = []
    for result in grid:
        if result.error is not None:
            text = str(result.error).strip().splitlines()
            lines.append(f"{Path(result.path).name}: {text[-1] if text else type(result.error).__name__}")
    return "; ".join(lines) or "no retrain saved its predictions"


def run_pipeline(options: RunOptions, *, resume: bool = False,
                 fingerprint: str | None = None) -> dict[str, Any]:
    """Sweep, retrain the top-k configs over seeds, evaluate on test once, write every file.

    With ``resume``, a sweep or retrain saved under the run's storage continues where it stopped
    (retrains that errored run again), on data whose cache key equals ``fingerprint`` if given.
    Raises ``RunInterrupted`` (SIGINT/SIGTERM during a fit), ``RetrainsFailed``.
    """
    started = time.time()
    space = resolve_space(options.space)
    folder = options.results_path()
    options = replace(options, mlflow=secret(options.mlflow),  # masked in Ray's saved state
                      sweep=replace(options.sweep, optuna_storage=secret(options.sweep.optuna_storage)))
    start_ray(options.address)
    data = prepare_data(space, options, mapper=local_map())
    check_fingerprint(data, fingerprint if resume else None)
    save_run_options(options, fingerprint=data.info.get("cache_key"))
    write_atomic(folder / "splits.csv", lambda temp: write_splits(
        data.manifest if data.manifest is not None else data.splits, temp))
    mode = prepare_wandb(options.wandb)
    options = replace(options, sweep=resolve_on_cluster(options.sweep, space))

    def tracking(job_type: str, *, with_wandb: bool = True) -> list:
        return ((wandb_callbacks(mode=mode, project=options.wandb_project, group=options.name,
                                 job_type=job_type, folder=folder,
                                 tags=sweep_tags(space.name, options.sweep),
                                 metric=space.metric, metric_mode=space.mode) if with_wandb else [])
                + mlflow_callbacks(uri=options.mlflow, experiment=options.name, job_type=job_type))

    sweep_grid = run_sweep(space, data, options, callbacks=tracking("trial"), resume=resume)
    trials = trials_table(sweep_grid, metric=space.metric, mode=space.mode,
                          max_epochs=options.sweep.max_epochs, searched=list(space.search))
    write_csv_atomic(trials, folder / "trials.csv")
    configs = top_configs(sweep_grid, metric=space.metric, mode=space.mode, k=options.top_k)
    if not configs:
        raise RuntimeError(f"no trial reported {space.metric}; see {folder / 'trials.csv'}")
    # W&B: one run per retrain, logged in finish() once its test metrics exist
    retrain_grid = run_retrains(space, data, configs, options,
                                callbacks=tracking("retrain", with_wandb=False), resume=resume)
    return finish(space, data, retrain_grid, configs, trials, options,
                  wall_time_s=time.time() - started, sweep_grid=sweep_grid)


def finish(space: SearchSpace, data: PreparedData, retrain_grid: tune.ResultGrid,
           configs: list[dict[str, Any]], trials: Any, options: RunOptions, *,
           wall_time_s: float, sweep_grid: tune.ResultGrid | None = None) -> dict[str, Any]:
    """Test evaluation of every retrain; leaderboard, best/ and summary.json, then report.md."""
    folder = options.results_path()
    task = get_task(data.info["task"])
    runs = collect_runs(retrain_grid, configs, data.arrays, metric=space.metric,
                        segmentation=task.kind == "segmentation", threshold_rule=space.threshold_rule,
                        groups=split_groups(data.splits), unit=task.group_unit)
    if not runs:
        raise RetrainsFailed(
            f"every retrain failed, so nothing was tested: {retrain_errors(retrain_grid)}. The sweep "
            f"is in {folder / 'trials.csv'}; --resume --name {options.name} runs the retrains again")
    board = leaderboard(runs, metric=space.metric, mode=space.mode)
    write_csv_atomic(board, folder / "leaderboard.csv")
    best = chosen_run(runs, board, mode=space.mode)
    if task.test_metrics is not None:  # the task's own field's metrics (luna16: FROC and CPM)
        best.evaluation["task_metrics"] = task.test_metrics(
            data.splits[data.splits["split"] == "test"], best.evaluation["test_probabilities"],
            Path(data.info["data_dir"]))
    outputs.write_best(folder / "best", best, space=space, data_info=data.info)
    if task.kind == "segmentation":  # show a few test predictions
        save_overlays(folder / "overlays", data.arrays["test/x"], data.arrays["test/y"],
                      best.evaluation["test_probabilities"])
    payload = outputs.summary(
        space=space, run=best, trials=trials, board=board, wall_time_s=wall_time_s,
        searched=list(space.search),
        settings={"sweep": redact(asdict(options.sweep)), "top_k": options.top_k,
                  "retrain_seeds": options.retrain_seeds, "data": data.info})
    outputs.write_json(folder / "summary.json", payload)
    if options.wandb:
        log_wandb_retrains(runs, mode=wandb_mode(), project=options.wandb_project,
                           group=options.name, folder=folder, metric=space.metric,
                           tags=sweep_tags(space.name, options.sweep))
    try:  # last: every results file above is already written
        write_report(folder, space=space, test_labels=data.arrays["test/y"], options=shown(options),
                     histories=None if sweep_grid is None else histories_from_grid(sweep_grid))
    except Exception:  # noqa: BLE001 - a broken report must not fail a finished run
        log.exception("report.md could not be written; the results files are complete")
    return payload
