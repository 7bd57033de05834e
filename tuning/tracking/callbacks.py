"""Tracking, wired in one place: W&B (offline when there is no API key) and MLflow, one run per trial."""
from __future__ import annotations

import logging
import os
from pathlib import Path

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


def wandb_callbacks(*, mode: str, project: str, group: str, job_type: str,
                    folder: Path) -> list:
    """Ray's driver-side W&B logger (keeps the data of ASHA-stopped trials too), or none."""
    if mode == "disabled":
        return []
    try:
        from tuning.tracking.wandb_logging import SafeWandbLoggerCallback
    except ImportError:
        log.warning("wandb is not installed: trials are not tracked in W&B")
        return []
    folder.mkdir(parents=True, exist_ok=True)
    return [SafeWandbLoggerCallback(
        project=project, group=group, job_type=job_type, mode=mode, dir=str(folder),
        log_config=False, upload_timeout=300,
        excludes=["time_this_iter_s", "timestamp", "pid", "hostname", "node_ip",
                  "time_since_restore", "iterations_since_restore"])]


def log_wandb_retrains(runs: list, *, mode: str, project: str, group: str, folder: Path,
                       metric: str) -> int:
    """One W&B run per retrain (job type ``retrain``) with its test metrics in the summary, logged
    from the driver once the test split has been read; failures are warnings. Returns the count."""
    if mode == "disabled" or not runs:
        return 0
    try:
        from tuning.tracking.wandb_logging import log_retrains
    except ImportError:
        log.warning("wandb is not installed: retrains are not tracked in W&B")
        return 0
    return log_retrains(runs, mode=mode, project=project, group=group, folder=folder, metric=metric)


def local_mlflow_uri(folder: Path) -> str:
    """A local MLflow store in ``folder/mlruns`` as a ``file:`` URI (the default of ``--mlflow``)."""
    return (Path(folder).resolve() / "mlruns").as_uri()


def mlflow_callbacks(*, uri: str | None, experiment: str, job_type: str) -> list:
    """Ray's driver-side MLflow logger: one MLflow run per trial, tagged ``job_type``; none without a URI.

    MLflow 3 refuses ``file:`` stores unless ``MLFLOW_ALLOW_FILE_STORE`` is set; a local store is
    what ``--mlflow`` asks for, so its callback allows it while it opens the store (a database or
    server URI needs nothing).
    """
    if not uri:
        return []
    try:
        import mlflow  # noqa: F401  (Ray's callback needs it; fail here with a clear message)
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        from tuning.tracking.mlflow_logging import FileStoreMLflowLoggerCallback
    except ImportError:
        log.warning("mlflow is not installed (pip install 'medtune[mlflow]'): trials are not "
                    "tracked in MLflow")
        return []
    local = uri.startswith("file:") or "://" not in uri
    callback = FileStoreMLflowLoggerCallback if local else MLflowLoggerCallback
    return [callback(tracking_uri=uri, experiment_name=experiment, tags={"job_type": job_type},
                     save_artifact=False)]
