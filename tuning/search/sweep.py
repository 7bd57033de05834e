"""The sweep: a Ray Tune ``Tuner`` whose search proposes configs (Optuna TPE by default) and whose
scheduler stops weak ones (ASHA by default); see ``tuning.search.searchers``."""
from __future__ import annotations

import logging
import warnings
from typing import Any, Callable, Mapping

import numpy as np
import ray
from ray import tune

from search_spaces.types import SearchSpace
from tuning.search.interrupt import fitting
from tuning.search.progress import trial_table
from tuning.search.searchers import build_scheduler, build_searcher, tune_metric
from tuning.search.settings import SweepSettings, epoch_budget, resolve
from tuning.search.space import param_space
from tuning.search.trainable import sweep_trial

log = logging.getLogger(__name__)
# Tuple choices (e.g. UNet channels) are fine in memory; Optuna only warns about storing them.
TUPLE_CHOICES_WARNING = "Choices for a categorical distribution should be"


def short_name(trial: Any) -> str:
    """``trial_<id>``: Ray's default names spell out the whole config and grow unreadable."""
    return f"trial_{trial.trial_id}"


def resolve_on_cluster(settings: SweepSettings, space: SearchSpace) -> SweepSettings:
    """``tuning.search.settings.resolve`` against the space's epoch budget and the running Ray cluster."""
    if settings.resolved:
        return settings
    return resolve(settings, budget=epoch_budget(space.fixed), cluster=ray.cluster_resources())


def with_trial_resources(fn: Any, settings: SweepSettings, **params: Any) -> Any:
    """``fn`` with its large arguments in the object store (once per node) and its CPUs/GPUs
    (``gpus_per_trial`` None: 1 if the running cluster has a GPU, as ``resolve`` decides)."""
    gpus = settings.gpus_per_trial
    if gpus is None:
        gpus = resolve(settings, budget=0, cluster=ray.cluster_resources()).gpus_per_trial
    return tune.with_resources(
        tune.with_parameters(fn, threads=max(1, int(settings.cpus_per_trial)), **params),
        {"cpu": settings.cpus_per_trial, "gpu": gpus})


def sweep_trainable(space: SearchSpace, data: Mapping[str, np.ndarray],
                    settings: SweepSettings) -> Any:
    """The sweep's trainable: ``sweep_trial`` bound to the data and the space's metric."""
    return with_trial_resources(sweep_trial, settings, data=data, metric=space.metric,
                                mode=space.mode)


def fit_or_resume(build: Callable[[], tune.Tuner], trainable: Any, path: str, *,
                  resume: bool, restart_errored: bool = False) -> tune.ResultGrid:
    """Fit a new Tuner, or with ``resume`` continue the one saved at ``path``: the searcher's
    state is restored, finished trials are kept, unfinished ones resume from their last
    checkpoint, errored ones stay errored unless ``restart_errored`` (then they run again from
    scratch). (Ray does not save the scheduler's rung statistics; ASHA rebuilds them from the
    results that follow.) Raises ``RunInterrupted`` if SIGINT/SIGTERM stopped the fit."""
    with warnings.catch_warnings(), fitting():
        warnings.filterwarnings("ignore", message=TUPLE_CHOICES_WARNING)
        if resume and tune.Tuner.can_restore(path):
            log.info("Resuming the experiment at %s", path)
            return tune.Tuner.restore(path, trainable, resume_unfinished=True,
                                      restart_errored=restart_errored).fit()
        return build().fit()


def build_tuner(space: SearchSpace, data: Mapping[str, np.ndarray], settings: SweepSettings, *,
                overrides: dict[str, Any], storage_path: str,
                callbacks: list | None = None, study_name: str | None = None) -> tune.Tuner:
    """A Tuner over the space's param space with the settings' search (seeded) and early
    termination counted in epochs; a compact trial table while it runs. Automatic settings
    (None) are resolved against the space and the running cluster first."""
    settings = resolve_on_cluster(settings, space)
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
