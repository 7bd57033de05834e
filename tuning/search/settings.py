"""How a sweep runs (``SweepSettings``), as plain data: each field's default and its flag's help
live here once, and the command line of ``tuning.run`` is made from them.

A None default is an automatic choice made explicit; ``resolve`` decides it, in one place, from the
space's epoch budget and the cluster's resources, so a notebook run and the CLI behave alike.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping

SEARCHES = ("tpe", "random", "wandb-bayes", "bohb")
SCHEDULERS = ("auto", "asha", "wandb-hyperband", "bohb-hyperband", "none")
DEFAULT_EPOCHS = 60  # the budget of a space whose fixed config names none


def _flag(help: str, **spec: Any) -> dict[str, Any]:
    """Field metadata read by ``tuning.config.flags`` (a dict: this module imports nothing)."""
    return {"flag": {"help": help, "group": "sweep", **spec}}


@dataclass(frozen=True)
class SweepSettings:
    """How many trials, how long each may run, and what each one gets."""

    num_samples: int = field(default=50, metadata=_flag("trials to run"))
    max_epochs: int | None = field(default=None, metadata=_flag(
        "epoch budget per trial (ASHA's max_t)", default_text="the space's train/max_epochs"))
    max_concurrent: int | None = field(default=None, metadata=_flag(
        "trials at once", default_text="as many as the cluster's CPUs and GPUs allow"))
    cpus_per_trial: float = field(default=1.0, metadata=_flag("CPUs per trial"))
    gpus_per_trial: float | None = field(default=None, metadata=_flag(
        "GPUs per trial; fractions pack trials on one GPU",
        default_text="1 if the cluster has a GPU, else 0"))
    seed: int = field(default=42, metadata=_flag("seed for splits, TPE and training"))
    grace_period: int = 0  # 0: a tenth of max_epochs, at least 2
    reduction_factor: int = 3
    tpe_startup_trials: int = 10  # TPE: configs sampled at random (after the seed's) before it models
    tpe_multivariate: bool = False  # TPE: one joint density over the params instead of one each
    max_failures: int = field(default=0, metadata=_flag("retries of a failed trial"))
    time_budget_s: float | None = field(default=None, metadata=_flag(
        "wall seconds for the search", name="time-budget", default_text="no limit"))
    search: str = field(default="tpe", metadata=_flag(
        "what proposes configs, all seeded and starting from the seed defaults: Optuna TPE; random "
        "sampling of the same space; W&B's own bayes engine run locally, no key or network "
        "(pip install 'medtune[wandb-sweeps]'); or BOHB, TPE-like models per budget with "
        "hyperband (pip install 'medtune[bohb]')", choices=SEARCHES))
    scheduler: str = field(default="auto", metadata=_flag(
        "what stops weak trials early, in epochs: ASHA; W&B's hyperband rule (the sweeps package's "
        "stop_runs, min_iter = ASHA's grace period); BOHB's synchronous hyperband (pauses and resumes "
        "trials from their checkpoints); or none (each trial runs its epoch budget or until its own "
        "early stopping). auto: wandb-hyperband with --search wandb-bayes, bohb-hyperband with "
        "--search bohb, else asha",
        choices=SCHEDULERS))
    optuna_storage: str | None = field(default=None, metadata=_flag(
        "keep the TPE study on disk, named after the run, for optuna-dashboard: a database URL "
        "(sqlite:///results/NAME/optuna.db), a SQLite file path, or a .log journal file",
        metavar="URL_OR_PATH", default_text="in memory"))

    @property
    def resolved(self) -> bool:
        """Whether every automatic choice has been made (see ``resolve``)."""
        return None not in (self.max_epochs, self.max_concurrent, self.gpus_per_trial)


def epoch_budget(fixed: Mapping[str, Any]) -> int:
    """A space's epoch budget per trial: its fixed ``train/max_epochs``."""
    return int(fixed.get("train/max_epochs", DEFAULT_EPOCHS))


def resolve(settings: SweepSettings, *, budget: int, cluster: Mapping[str, float]) -> SweepSettings:
    """The settings with every automatic choice made: ``max_epochs`` the space's ``budget``,
    ``gpus_per_trial`` 1 when ``cluster`` (Ray's resources: {"CPU": 8, "GPU": 2}) has a GPU, else 0,
    and ``max_concurrent`` as many trials as its CPUs and GPUs hold at once (at least 1)."""
    max_epochs = budget if settings.max_epochs is None else settings.max_epochs
    gpus = settings.gpus_per_trial
    if gpus is None:
        gpus = 1.0 if cluster.get("GPU", 0) >= 1 else 0.0
    concurrent = settings.max_concurrent
    if concurrent is None:
        slots = cluster.get("CPU", 1) // max(settings.cpus_per_trial, 1e-3)
        if gpus > 0:
            slots = min(slots, cluster.get("GPU", 0) // gpus)
        concurrent = max(1, int(slots))
    return replace(settings, max_epochs=max_epochs, gpus_per_trial=gpus, max_concurrent=concurrent)
