"""The W&B runs of a sweep: one run per trial from one writer thread in the driver, and one run
per retrain.

Imported lazily by ``tuning.tracking.callbacks`` (it imports wandb). A W&B failure is logged as a
warning and never stops a sweep. No API key is passed anywhere by this module: W&B reads it from
its own environment or settings in the driver, the one process that logs.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from pathlib import Path
from typing import Any

import wandb  # here, so that a missing wandb fails the import that callbacks.py checks
from ray.tune.logger import LoggerCallback

from core.metrics import SCORE
from tuning.search.wandb_search import plain, wandb_name
from tuning.tracking.metrics import trial_metrics
from tuning.tracking.wandb_writer import WandbWriter

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


class WandbTrialCallback(LoggerCallback):
    """One W&B run per trial (W&B id = Tune's trial id), written by one ``WandbWriter`` thread in
    the driver: every reported epoch is logged as it arrives, so trials ASHA stops keep their
    history. Runs share project, group (one per sweep), job type and tags; each run's config is its
    trial's config under flat names (``optim.lr``), as W&B's parallel-coordinates panel wants it.

    With ``metric`` (the sweep's selection metric, ``mode`` max or min), each epoch also logs
    ``best_<metric>``, the trial's best so far, so a run's summary holds the value the sweep ranked
    it by, as a W&B sweep's runs do, whether the trial finished or was stopped early.
    """

    def __init__(self, *, project: str, group: str, job_type: str, mode: str, dir: str,
                 tags: tuple[str, ...] = (), metric: str | None = None,
                 metric_mode: str = "max") -> None:
        self.init_kwargs = {"project": project, "group": group, "job_type": job_type,
                            "mode": mode, "dir": dir, "tags": list(tags)}
        self.metric, self.metric_mode = metric, metric_mode
        self._best: dict[str, float] = {}  # trial id -> best metric so far
        self._writer: WandbWriter | None = None

    def __getstate__(self) -> dict[str, Any]:  # Tune pickles callbacks; a thread does not pickle
        return {**self.__dict__, "_writer": None}

    @property
    def writer(self) -> WandbWriter:
        if self._writer is None:
            # no per-run system sampling, and no pip listing per trial (0.15 s of the driver's
            # GIL each); each retrain run still records the environment's packages
            settings = wandb.Settings(silent=True, console="off", x_disable_stats=True,
                                      x_save_requirements=False)
            self._writer = WandbWriter({**self.init_kwargs, "settings": settings})
        return self._writer

    def setup(self, *args: Any, **kwargs: Any) -> None:
        _ = self.writer  # start the thread before the first trial

    def log_trial_start(self, trial: Any) -> None:
        self.writer.start(trial.trial_id, name=str(trial), config=wandb_config(trial.config))

    def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
        metrics = trial_metrics(result)
        best = self._best_so_far(trial.trial_id, metrics)
        if best is not None:
            metrics[f"best_{self.metric}"] = best
        self.writer.log(trial.trial_id, metrics)

    def _best_so_far(self, trial_id: str, metrics: dict[str, float]) -> float | None:
        """The trial's best ``metric`` over its reports so far (and the trainable's own
        best-so-far ``score``, which survives a restore); None before the first value."""
        if self.metric is None:
            return None
        seen = [v for v in (self._best.get(trial_id), metrics.get(self.metric), metrics.get(SCORE))
                if v is not None]
        if not seen:
            return None
        self._best[trial_id] = max(seen) if self.metric_mode == "max" else min(seen)
        return self._best[trial_id]

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        self._best.pop(trial.trial_id, None)
        self.writer.finish(trial.trial_id)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


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
                metric: str, tags: tuple[str, ...] = ()) -> None:
    """One finished retrain as a W&B run (job type ``retrain``): config, per-epoch history,
    and its test metrics in the summary."""
    history_file = Path(run.checkpoint_dir) / "history.json"
    history = json.loads(history_file.read_text()) if history_file.is_file() else []
    folder.mkdir(parents=True, exist_ok=True)
    wb = wandb.init(project=project, group=group, job_type="retrain",
                    name=f"retrain-r{run.rank}-s{run.seed}",
                    id=retrain_run_id(group, run.rank, run.seed), resume="allow", tags=list(tags),
                    dir=str(folder), mode=mode, config=wandb_config(run.config),
                    settings=wandb.Settings(console="off", silent=True))
    try:
        for row in history:  # one committed row per epoch ("epoch" is in each)
            wb.log(_numbers(row))
        wb.summary.update({k: v for k, v in retrain_summary(run, metric).items() if v is not None})
    finally:
        wb.finish()


def log_retrains(runs: list, *, mode: str, project: str, group: str, folder: Path,
                 metric: str, tags: tuple[str, ...] = ()) -> int:
    """``log_retrain`` for each retrain; a failure is a warning. Returns how many were logged."""
    logged = 0
    for run in runs:
        try:
            log_retrain(run, mode=mode, project=project, group=group, folder=folder, metric=metric,
                        tags=tags)
            logged += 1
        except Exception as err:  # noqa: BLE001 - tracking must never fail a finished run
            log.warning("W&B: retrain rank %d seed %d was not logged (%s: %s)",
                        run.rank, run.seed, type(err).__name__, err)
    try:
        wandb.teardown()  # stop the driver's W&B service now, not in an exit hook
    except Exception:  # noqa: BLE001
        pass
    return logged
