"""What a sweep prints while it runs: one compact table of trials every ~30 s, not a block per
trial start and result. Errors stay visible (Ray's error table, warnings and above)."""
from __future__ import annotations

import logging
import os
from typing import Any

from ray.tune import CLIReporter

from core.metrics import VAL_LOSS
from search_spaces.types import SearchSpace

SHORT = {"weight_decay": "wd", "batch_size": "batch", "kernel_size": "kernel",
         "pool_size": "pool", "patience": "patience", "dropout": "dropout", "lr": "lr"}


def quiet_ray_output() -> None:
    """Use Ray's configurable table reporter and drop repeated noise; set before a Tuner runs.

    An explicit ``RAY_AIR_NEW_OUTPUT=1`` or ``TUNE_WARN_THRESHOLD_S`` in the environment wins.
    """
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the new engine ignores a given reporter
    if "TUNE_WARN_THRESHOLD_S" not in os.environ:  # "The `process_trial_result` operation took"
        logging.getLogger("ray.tune.utils.util").setLevel(logging.ERROR)


def short_names(keys: list[str]) -> dict[str, str]:
    """``{"optim/lr": "lr", "optim/weight_decay": "wd", ...}``; a name two keys share stays long."""
    short = {key: SHORT.get(key.rsplit("/", 1)[-1], key.rsplit("/", 1)[-1]) for key in keys}
    taken = list(short.values())
    return {key: name if taken.count(name) == 1 else key for key, name in short.items()}


class TrialTable(CLIReporter):
    """Ray's trial table, sorted by the metric, with one "best so far" line in place of Ray's
    "Current best trial ... parameters={...}"."""

    def report(self, trials: list, done: bool, *sys_info: str) -> None:
        lines = self._progress_str(trials, done, *sys_info).split("\n")
        best = self._best_line(trials)
        lines = [best if line.startswith("Current best trial:") else line for line in lines]
        self._print("\n".join(line for line in lines if line))

    def _best_line(self, trials: list) -> str:
        """The best value any epoch of any trial has reached so far, and its trial."""
        metric, mode = self._metric, self._mode
        scored = [(trial.metric_analysis[metric][mode], trial) for trial in trials
                  if metric and mode and metric in trial.metric_analysis]
        if not scored:
            return ""
        pick = max if mode == "max" else min
        value, trial = pick(scored, key=lambda item: item[0])
        return f"Best so far: {metric} {value:.4f} (trial {trial.trial_id})"


def trial_table(space: SearchSpace, searched: list[str], *, every_s: int = 30) -> Any:
    """A ``TrialTable`` for ``RunConfig(progress_reporter=...)``: status, epoch, the space's
    metric, val loss and the searched keys by short name; None when Ray's new output is on."""
    if os.environ.get("RAY_AIR_NEW_OUTPUT", "1") != "0":
        return None
    metrics = {"epoch": "epoch", space.metric: space.metric, VAL_LOSS: "val loss",
               "time_total_s": "time (s)"}
    return TrialTable(metric_columns=metrics, parameter_columns=short_names(searched),
                      max_report_frequency=every_s, sort_by_metric=True, max_progress_rows=20,
                      print_intermediate_tables=True)


def retrain_table(space: SearchSpace, *, every_s: int = 30) -> Any:
    """The same compact table for the retrain Tuner: rank, seed, epoch, metric, val loss."""
    if os.environ.get("RAY_AIR_NEW_OUTPUT", "1") != "0":
        return None
    metrics = {"epoch": "epoch", space.metric: space.metric, VAL_LOSS: "val loss"}
    return TrialTable(metric_columns=metrics, parameter_columns={"rank": "rank", "seed": "seed"},
                      max_report_frequency=every_s, print_intermediate_tables=True)
