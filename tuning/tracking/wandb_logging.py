"""The W&B runs of a sweep: Ray's driver-side logger made safe and tidy, and one run per retrain.

Imported lazily by ``tuning.tracking.callbacks`` (it imports wandb). A W&B failure is logged as a warning
and never stops a sweep; no API key is ever passed to W&B or written anywhere by this module.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from pathlib import Path
from typing import Any, Callable

from ray.air.integrations.wandb import WandbLoggerCallback, _WandbLoggingActor

from tuning.search.wandb_search import plain, wandb_name
from tuning.tracking.scoped_env import scoped_env

log = logging.getLogger(__name__)


def wandb_config(config: dict[str, Any]) -> dict[str, Any]:
    """A trial config as flat W&B names: ``{"optim": {"lr": x}}`` or ``{"optim/lr": x}`` ->
    ``{"optim.lr": x}``, the names the exported sweep YAML uses too."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update({f"{wandb_name(key)}.{name}": item
                         for name, item in wandb_config(value).items()})
        else:
            flat[wandb_name(key)] = plain(value)
    return flat


class QuietWandbActor(_WandbLoggingActor):
    """Ray's per-trial W&B actor with a flat, readable config, and W&B torn down before Ray ends
    the actor (otherwise each trial prints a "Connection lost" traceback at exit)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if isinstance(kwargs.get("config"), dict):
            kwargs["config"] = wandb_config(kwargs["config"])
        super().__init__(*args, **kwargs)

    def run(self) -> None:
        try:
            super().run()
        finally:
            self._wandb.teardown()


class SafeWandbLoggerCallback(WandbLoggerCallback):
    """``WandbLoggerCallback`` that logs a warning and switches itself off on any W&B error."""

    _logger_actor_cls = QuietWandbActor

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        import wandb

        kwargs.setdefault("settings", wandb.Settings(silent=True))  # no banner per trial
        super().__init__(*args, **kwargs)
        self._failed = False

    def _safely(self, what: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self._failed:
            return None
        try:
            return call(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - tracking must never stop a sweep
            self._failed = True
            log.warning("W&B logging stopped at %s (%s: %s); the sweep goes on without it",
                        what, type(err).__name__, err)
            return None

    def setup(self, *args: Any, **kwargs: Any) -> None:
        # Ray's callback asks for an API key at setup unless WANDB_MODE says offline or disabled:
        # the callback's own mode says so for the length of that check.
        mode = self.kwargs.get("mode")
        with scoped_env("WANDB_MODE", mode if mode in ("offline", "disabled") else None):
            self._safely("setup", super().setup, *args, **kwargs)

    def log_trial_start(self, trial: Any) -> None:
        self._safely("trial start", super().log_trial_start, trial)

    def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
        self._safely("a result", super().log_trial_result, iteration, trial, result)

    def log_trial_save(self, trial: Any) -> None:
        self._safely("a checkpoint", super().log_trial_save, trial)

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        self._safely("trial end", super().log_trial_end, trial, failed)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._safely("the end", super().on_experiment_end, trials, **info)


def retrain_run_id(group: str, rank: int, seed: int) -> str:
    """A stable W&B run id per (run, rank, seed): letters, digits, ``-`` and ``_`` only."""
    stem = re.sub(r"[^A-Za-z0-9_-]", "-", group)[:40]
    digest = hashlib.sha1(group.encode()).hexdigest()[:6]
    return f"{stem}-{digest}-r{rank}-s{seed}"


def _numbers(row: dict[str, Any]) -> dict[str, float]:
    return {key: float(value) for key, value in row.items()
            if isinstance(value, (int, float)) and math.isfinite(float(value))}


def retrain_summary(run: Any, metric: str) -> dict[str, Any]:
    """What a retrain's W&B summary adds: rank, seed, best val score, the threshold picked on val,
    and each test metric with its 95 % CI."""
    summary: dict[str, Any] = {"rank": run.rank, "seed": run.seed, f"best_{metric}": run.val_score,
                               "threshold": run.evaluation.get("threshold")}
    for name, stat in run.evaluation.get("test", {}).items():
        summary[f"test/{name}"] = stat["value"]
        summary[f"test/{name}_ci_low"], summary[f"test/{name}_ci_high"] = stat["ci_low"], stat["ci_high"]
    return summary


def log_retrain(run: Any, *, mode: str, project: str, group: str, folder: Path,
                metric: str) -> None:
    """One finished retrain as a W&B run (job type ``retrain``): config, per-epoch history,
    and its test metrics in the summary."""
    import wandb

    history_file = Path(run.checkpoint_dir) / "history.json"
    history = json.loads(history_file.read_text()) if history_file.is_file() else []
    folder.mkdir(parents=True, exist_ok=True)
    wb = wandb.init(project=project, group=group, job_type="retrain",
                    name=f"retrain-r{run.rank}-s{run.seed}",
                    id=retrain_run_id(group, run.rank, run.seed), resume="allow",
                    dir=str(folder), mode=mode, config=wandb_config(run.config),
                    settings=wandb.Settings(console="off", silent=True))
    try:
        for row in history:  # one committed row per epoch ("epoch" is in each)
            wb.log(_numbers(row))
        wb.summary.update({k: v for k, v in retrain_summary(run, metric).items() if v is not None})
    finally:
        wb.finish()


def log_retrains(runs: list, *, mode: str, project: str, group: str, folder: Path,
                 metric: str) -> int:
    """``log_retrain`` for each retrain; a failure is a warning. Returns how many were logged."""
    logged = 0
    for run in runs:
        try:
            log_retrain(run, mode=mode, project=project, group=group, folder=folder, metric=metric)
            logged += 1
        except Exception as err:  # noqa: BLE001 - tracking must never fail a finished run
            log.warning("W&B: retrain rank %d seed %d was not logged (%s: %s)",
                        run.rank, run.seed, type(err).__name__, err)
    try:
        import wandb

        wandb.teardown()  # stop the driver's W&B service now, not in an exit hook
    except Exception:  # noqa: BLE001
        pass
    return logged
