"""W&B tracking, wired in one place: one W&B run per trial, offline when there is no API key."""
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

        wandb.ensure_configured()
        return "online" if wandb.api.api_key else "offline"
    except Exception:  # no wandb, no settings file: track locally
        return "offline"


def prepare_wandb(enabled: bool) -> str:
    """Decide the mode before Ray starts, so trial and logger processes inherit WANDB_MODE."""
    if not enabled:
        return "disabled"
    mode = wandb_mode()
    if mode == "offline":
        os.environ["WANDB_MODE"] = "offline"  # Ray's callback then skips its API-key check
    os.environ.setdefault("WANDB_SILENT", "true")
    return mode


def wandb_callbacks(*, mode: str, project: str, group: str, job_type: str,
                    folder: Path) -> list:
    """Ray's driver-side W&B logger (keeps the data of ASHA-stopped trials too), or none."""
    if mode == "disabled":
        return []
    try:
        from ray.air.integrations.wandb import WandbLoggerCallback
    except ImportError:
        log.warning("wandb is not installed: trials are not tracked in W&B")
        return []
    folder.mkdir(parents=True, exist_ok=True)
    return [WandbLoggerCallback(project=project, group=group, job_type=job_type, mode=mode,
                                dir=str(folder), log_config=False,
                                excludes=["time_this_iter_s", "timestamp", "pid", "hostname",
                                          "node_ip", "time_since_restore", "iterations_since_restore"])]
