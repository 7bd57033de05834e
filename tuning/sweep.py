"""The sweep: a Ray Tune ``Tuner`` with Optuna TPE proposing configs and ASHA stopping weak ones."""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from search_spaces.types import Choice, SearchSpace
from tuning.space import param_space
from tuning.trainable import sweep_trial

log = logging.getLogger(__name__)
# Tuple choices (e.g. UNet channels) are fine in memory; Optuna only warns about storing them.
warnings.filterwarnings("ignore", message="Choices for a categorical distribution should be")


@dataclass(frozen=True)
class SweepSettings:
    """How many trials, how long each may run, and what each one gets."""

    num_samples: int = 50
    max_epochs: int = 60
    max_concurrent: int = 4
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    seed: int = 42
    grace_period: int = 0  # 0: a tenth of max_epochs, at least 2
    reduction_factor: int = 3
    max_failures: int = 0
    time_budget_s: float | None = None


def seed_point(space: SearchSpace, overrides: dict[str, Any]) -> dict[str, Any] | None:
    """The seed project's defaults as TPE's first config, each moved into its range if outside.

    (The EGFR seed used no weight decay; the log-uniform range starts just above zero.)
    None when a searched key has no fixed default.
    """
    point = {}
    for key, dist in space.search.items():
        if key in overrides:  # fixed for this run, no longer searched
            continue
        value = space.fixed.get(key)
        if value is None:
            return None
        if isinstance(dist, Choice):
            point[key] = value if value in dist.values else min(
                dist.values, key=lambda option: abs(option - value))
        else:
            point[key] = type(dist.low)(min(max(value, dist.low), dist.high))
    return point


def short_name(trial: Any) -> str:
    """``trial_<id>``: Ray's default names spell out the whole config and grow unreadable."""
    return f"trial_{trial.trial_id}"


def with_trial_resources(fn: Any, settings: SweepSettings, **params: Any) -> Any:
    """``fn`` with its large arguments in the object store (once per node) and its CPUs/GPUs."""
    return tune.with_resources(
        tune.with_parameters(fn, threads=max(1, int(settings.cpus_per_trial)), **params),
        {"cpu": settings.cpus_per_trial, "gpu": settings.gpus_per_trial})


def sweep_trainable(space: SearchSpace, data: Mapping[str, np.ndarray],
                    settings: SweepSettings) -> Any:
    """The sweep's trainable: ``sweep_trial`` bound to the data and the space's metric."""
    return with_trial_resources(sweep_trial, settings, data=data, metric=space.metric,
                                mode=space.mode)


def fit_or_resume(build: Callable[[], tune.Tuner], trainable: Any, path: str, *,
                  resume: bool) -> tune.ResultGrid:
    """Fit a new Tuner, or with ``resume`` continue the one saved at ``path`` (searcher and
    scheduler state included): finished trials are kept, unfinished ones resume from their
    last checkpoint, errored ones stay errored."""
    if resume and tune.Tuner.can_restore(path):
        log.info("Resuming the experiment at %s", path)
        return tune.Tuner.restore(path, trainable, resume_unfinished=True).fit()
    return build().fit()


def build_tuner(space: SearchSpace, data: Mapping[str, np.ndarray], settings: SweepSettings, *,
                overrides: dict[str, Any], storage_path: str,
                callbacks: list | None = None) -> tune.Tuner:
    """A Tuner over the space's param space with TPE (seeded) and ASHA counted in epochs."""
    grace = settings.grace_period or max(2, settings.max_epochs // 10)
    first = seed_point(space, overrides)
    searcher = OptunaSearch(metric=space.metric, mode=space.mode, seed=settings.seed,
                            points_to_evaluate=[first] if first else None)
    scheduler = ASHAScheduler(time_attr="training_iteration", max_t=settings.max_epochs,
                              grace_period=min(grace, settings.max_epochs),
                              reduction_factor=settings.reduction_factor)
    return tune.Tuner(
        sweep_trainable(space, data, settings),
        param_space=param_space(space, {**overrides, "train/max_epochs": settings.max_epochs}),
        tune_config=tune.TuneConfig(
            metric=space.metric, mode=space.mode, num_samples=settings.num_samples,
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=settings.max_concurrent),
            scheduler=scheduler, reuse_actors=True, time_budget_s=settings.time_budget_s,
            trial_name_creator=short_name, trial_dirname_creator=short_name),
        run_config=tune.RunConfig(
            name="sweep", storage_path=storage_path, callbacks=callbacks or [],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            failure_config=tune.FailureConfig(max_failures=settings.max_failures),
            verbose=1))
