"""Which search proposes configs and which scheduler stops trials early, from ``SweepSettings``.

Every search starts from the seed project's defaults and runs on the same budget (trials x epochs):
``tpe`` (Optuna, seeded), ``random`` (Optuna's seeded uniform sampling of the same param space),
``wandb-bayes`` (W&B's own bayes engine, run locally) and ``bohb`` (HpBandSter's BOHB through
Ray's ``TuneBOHB``). Schedulers: ``asha`` (Ray's ASHA), ``wandb-hyperband`` (W&B's hyperband rule),
``bohb-hyperband`` (Ray's ``HyperBandForBOHB``) or ``none`` (every trial runs its full budget unless
its own early stopping ends it); ``auto`` picks each search's own (W&B's for W&B's search, BOHB's
hyperband for BOHB), else ASHA.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, HyperBandForBOHB, TrialScheduler
from ray.tune.search import ConcurrencyLimiter, SearchAlgorithm, Searcher

from core.errors import ConfigError
from core.metrics import SCORE
from search_spaces.types import Choice, SearchSpace
from tuning.search.settings import SCHEDULERS, SEARCHES

if TYPE_CHECKING:
    from optuna.storages import BaseStorage

    from tuning.search.settings import SweepSettings

log = logging.getLogger(__name__)

JOURNAL_SUFFIXES = (".log", ".jsonl", ".journal")


def seed_point(space: SearchSpace, overrides: dict[str, Any]) -> dict[str, Any] | None:
    """The seed project's defaults as the first config, each moved into its range if outside.

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


def scheduler_name(settings: SweepSettings) -> str:
    """The scheduler a run uses: ``auto`` resolved against its search."""
    if settings.scheduler != "auto":
        return settings.scheduler
    return {"wandb-bayes": "wandb-hyperband", "bohb": "bohb-hyperband"}.get(settings.search, "asha")


def tune_metric(space: SearchSpace, settings: SweepSettings) -> str:
    """The key Tune, the searcher and the scheduler rank trials by: ``SCORE``, the best-so-far
    val metric each epoch reports (top-k ranks by the same best value). W&B's hyperband reads the
    raw metric's history and takes its best itself, so with it the raw metric is Tune's."""
    return space.metric if scheduler_name(settings) == "wandb-hyperband" else SCORE


def grace_epochs(settings: SweepSettings) -> int:
    """Epochs every trial gets before early termination may stop it (ASHA's grace period,
    W&B hyperband's ``min_iter``): ``grace_period``, or a tenth of the budget, at least 2."""
    return min(settings.grace_period or max(2, settings.max_epochs // 10), settings.max_epochs)


def check_search(settings: SweepSettings) -> None:
    """Raise ``ConfigError`` for an unknown search or scheduler, a missing ``sweeps`` package (W&B)
    or ``hpbandster``/``ConfigSpace`` (BOHB), or an Optuna storage given to a search that is not
    Optuna's."""
    if settings.search not in SEARCHES:
        raise ConfigError(f"unknown search {settings.search!r}; choose one of {', '.join(SEARCHES)}")
    if settings.scheduler not in SCHEDULERS:
        raise ConfigError(f"unknown scheduler {settings.scheduler!r}; "
                          f"choose one of {', '.join(SCHEDULERS)}")
    if "wandb" in settings.search or "wandb" in scheduler_name(settings):
        from tuning.search.wandb_search import require_sweeps

        require_sweeps()
    if settings.search == "bohb" or scheduler_name(settings) == "bohb-hyperband":
        require_bohb()
    if settings.optuna_storage and settings.search != "tpe":
        raise ConfigError(f"--optuna-storage is for --search tpe (Optuna), not {settings.search}")


def require_bohb() -> None:
    """Raise ``ConfigError`` unless BOHB's packages (``hpbandster``, ``ConfigSpace``) import."""
    try:
        import ConfigSpace  # noqa: F401
        import hpbandster  # noqa: F401
    except ImportError as error:
        raise ConfigError(f"--search bohb needs hpbandster and ConfigSpace ({error}): "
                          "pip install 'medtune[bohb]'") from None


def optuna_storage(target: str) -> BaseStorage:
    """An Optuna storage from a database URL (``sqlite:///x.db``, ``postgresql://...``) or a file
    path: a journal file for ``.log``/``.jsonl``/``.journal``, else a SQLite database."""
    import optuna

    if "://" in target:
        if target.startswith("sqlite:///"):
            Path(target[len("sqlite:///"):]).expanduser().parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.RDBStorage(target)
    path = Path(target).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix in JOURNAL_SUFFIXES:
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(str(path)))
    return optuna.storages.RDBStorage(f"sqlite:///{path}")


def optuna_sampler(settings: SweepSettings) -> Any:
    """The run's Optuna sampler, seeded: uniform random sampling for ``random`` (Ray's own random
    search cannot start from a seed point that holds a tuple, such as the UNet's channels), else
    TPE with the settings' startup trials and (uni/multi)variate model."""
    import optuna

    if settings.search == "random":
        return optuna.samplers.RandomSampler(seed=settings.seed)
    return optuna.samplers.TPESampler(seed=settings.seed, n_startup_trials=settings.tpe_startup_trials,
                                      multivariate=settings.tpe_multivariate)


def build_searcher(space: SearchSpace, settings: SweepSettings, overrides: dict[str, Any], *,
                   study_name: str | None = None) -> SearchAlgorithm | Searcher:
    """The run's search over the space's searched keys, seeded, seed defaults first, at most
    ``max_concurrent`` trials at once; ``study_name`` names an on-disk Optuna study."""
    check_search(settings)
    first = seed_point(space, overrides)
    points = [first] if first else []
    if settings.search == "wandb-bayes":
        from tuning.search.wandb_search import WandbBayesSearch

        searcher: Searcher = WandbBayesSearch(
            space, overrides=overrides, seed=settings.seed, points_to_evaluate=points,
            min_iter=grace_epochs(settings), eta=settings.reduction_factor)
    elif settings.search == "bohb":
        from ray.tune.search.bohb import TuneBOHB

        searcher = TuneBOHB(metric=tune_metric(space, settings), mode=space.mode,
                            seed=settings.seed, points_to_evaluate=points or None)
    else:
        from ray.tune.search.optuna import OptunaSearch

        storage = optuna_storage(settings.optuna_storage) if settings.optuna_storage else None
        searcher = OptunaSearch(metric=tune_metric(space, settings), mode=space.mode,
                                sampler=optuna_sampler(settings),
                                points_to_evaluate=points or None, storage=storage,
                                study_name=study_name if storage is not None else None)
    return ConcurrencyLimiter(searcher, max_concurrent=settings.max_concurrent)


def build_scheduler(space: SearchSpace, settings: SweepSettings,
                    overrides: dict[str, Any] | None = None) -> TrialScheduler:
    """Early termination counted in epochs (``training_iteration``), or FIFO for ``none``. BOHB's
    hyperband has no grace period: its brackets start at ``max_epochs / reduction_factor**k``."""
    name = scheduler_name(settings)
    grace = grace_epochs(settings)
    if name == "none":
        return FIFOScheduler()
    if name == "bohb-hyperband":
        return HyperBandForBOHB(time_attr="training_iteration", max_t=settings.max_epochs,
                                reduction_factor=settings.reduction_factor)
    if name == "wandb-hyperband":
        from tuning.search.wandb_search import WandbHyperband, wandb_sweep_config

        return WandbHyperband(wandb_sweep_config(space, overrides=overrides, min_iter=grace,
                                                 eta=settings.reduction_factor))
    return ASHAScheduler(time_attr="training_iteration", max_t=settings.max_epochs,
                         grace_period=grace, reduction_factor=settings.reduction_factor)
