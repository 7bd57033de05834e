"""Tracking, wired in one place: W&B (offline when there is no API key) and MLflow, one run per trial."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tuning.search.settings import SweepSettings

log = logging.getLogger(__name__)


def wandb_mode() -> str:
    """``online`` with a key (env or ``wandb login``), else ``offline``; WANDB_MODE wins if set."""
    preset = os.environ.get("WANDB_MODE")
    if preset in ("offline", "disabled", "online"):
        return preset
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        import wandb

        return "online" if wandb.login(prompt=False, verify=False) else "offline"
    except Exception:  # no wandb, no settings file: track locally
        return "offline"


def prepare_wandb(enabled: bool) -> str:
    """The run's W&B mode, decided once before it starts; every W&B call is then given it."""
    return wandb_mode() if enabled else "disabled"


def sweep_tags(space: str, settings: SweepSettings) -> tuple[str, ...]:
    """The W&B tags of every run of a sweep: ``space:egfr``, ``search:tpe``, ``scheduler:asha``
    (``auto`` resolved against the search), so W&B filters and groups runs by space and method."""
    from tuning.search.searchers import scheduler_name  # imports Ray: only when a sweep runs

    return (f"space:{space}", f"search:{settings.search}", f"scheduler:{scheduler_name(settings)}")


def wandb_callbacks(*, mode: str, project: str, group: str, job_type: str,
                    folder: Path, tags: tuple[str, ...] = (), metric: str | None = None,
                    metric_mode: str = "max") -> list:
    """One W&B run per trial, written from the driver by one thread (no process per trial, no key
    in any Ray runtime env; the data of ASHA-stopped trials kept), or none when W&B is off.
    ``group`` is the sweep's name (one W&B group per sweep); with ``metric`` each epoch also logs
    the trial's best so far as ``best_<metric>``."""
    if mode == "disabled":
        return []
    try:
        from tuning.tracking.wandb_logging import WandbTrialCallback
    except ImportError:
        log.warning("wandb is not installed: trials are not tracked in W&B")
        return []
    folder.mkdir(parents=True, exist_ok=True)
    return [WandbTrialCallback(project=project, group=group, job_type=job_type, mode=mode,
                               dir=str(folder), tags=tags, metric=metric, metric_mode=metric_mode)]


def log_wandb_retrains(runs: list, *, mode: str, project: str, group: str, folder: Path,
                       metric: str, tags: tuple[str, ...] = ()) -> int:
    """One W&B run per retrain (job type ``retrain``) with its test metrics in the summary, logged
    from the driver once the test split has been read; failures are warnings. Returns the count."""
    if mode == "disabled" or not runs:
        return 0
    try:
        from tuning.tracking.wandb_logging import log_retrains
    except ImportError:
        log.warning("wandb is not installed: retrains are not tracked in W&B")
        return 0
    return log_retrains(runs, mode=mode, project=project, group=group, folder=folder, metric=metric,
                        tags=tags)


def local_mlflow_uri(folder: Path) -> str:
    """A local MLflow store in ``folder/mlruns`` as a ``file:`` URI (the default of ``--mlflow``)."""
    return (Path(folder).resolve() / "mlruns").as_uri()


def mlflow_callbacks(*, uri: str | None, experiment: str, job_type: str) -> list:
    """One MLflow run per trial, tagged ``job_type``, logged from the driver a batch per report;
    none without a URI.

    MLflow 3 refuses ``file:`` stores unless ``MLFLOW_ALLOW_FILE_STORE`` is set; a local store is
    what ``--mlflow`` asks for, so its callback allows it while it opens the store (a database or
    server URI needs nothing).
    """
    if not uri:
        return []
    try:
        from tuning.tracking.mlflow_logging import MlflowTrialCallback
    except ImportError:
        log.warning("mlflow is not installed (pip install 'medtune[mlflow]'): trials are not "
                    "tracked in MLflow")
        return []
    local = uri.startswith("file:") or "://" not in uri
    return [MlflowTrialCallback(tracking_uri=uri, experiment_name=experiment,
                                tags={"job_type": job_type}, local=local)]
