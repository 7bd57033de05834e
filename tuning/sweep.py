"""The sweep: a Ray Tune ``Tuner`` whose search proposes configs (Optuna TPE by default) and whose
scheduler stops weak ones (ASHA by default); see ``tuning.searchers``."""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
from ray import tune

from search_spaces.types import SearchSpace
from tuning.progress import quiet_ray_output, trial_table
from tuning.searchers import build_scheduler, build_searcher, tune_metric
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
    search: str = "tpe"  # tpe | random | wandb-bayes (tuning.searchers)
    scheduler: str = "auto"  # auto | asha | wandb-hyperband | none
    optuna_storage: str | None = None  # a database URL or file for the TPE study; None: in memory


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
    """Fit a new Tuner, or with ``resume`` continue the one saved at ``path``: the searcher's
    state is restored, finished trials are kept, unfinished ones resume from their last
    checkpoint, errored ones stay errored. (Ray does not save the scheduler's rung statistics;
    ASHA rebuilds them from the results that follow.)"""
    quiet_ray_output()  # a restored Tuner keeps its reporter; Ray's output engine must allow it
    if resume and tune.Tuner.can_restore(path):
        log.info("Resuming the experiment at %s", path)
        return tune.Tuner.restore(path, trainable, resume_unfinished=True).fit()
    return build().fit()


def build_tuner(space: SearchSpace, data: Mapping[str, np.ndarray], settings: SweepSettings, *,
                overrides: dict[str, Any], storage_path: str,
                callbacks: list | None = None, study_name: str | None = None) -> tune.Tuner:
    """A Tuner over the space's param space with the settings' search (seeded) and early
    termination counted in epochs; a compact trial table while it runs."""
    quiet_ray_output()
    searched = [key for key in space.search if key not in overrides]
    return tune.Tuner(
        sweep_trainable(space, data, settings),
        param_space=param_space(space, {"train/seed": settings.seed, **overrides,
                                        "train/max_epochs": settings.max_epochs}),
        tune_config=tune.TuneConfig(
            metric=tune_metric(space, settings), mode=space.mode, num_samples=settings.num_samples,
            search_alg=build_searcher(space, settings, overrides, study_name=study_name),
            scheduler=build_scheduler(space, settings, overrides), reuse_actors=True,
            time_budget_s=settings.time_budget_s,
            trial_name_creator=short_name, trial_dirname_creator=short_name),
        run_config=tune.RunConfig(
            name="sweep", storage_path=storage_path, callbacks=callbacks or [],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            failure_config=tune.FailureConfig(max_failures=settings.max_failures),
            progress_reporter=trial_table(space, searched), verbose=1))
