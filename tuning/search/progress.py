"""What a sweep prints while it runs: one compact table of trials every ~30 s, not a block per
trial start and result. Errors stay visible (each errored trial with its error file).

Built on Ray's public ``ProgressReporter`` interface; Ray uses it when ``RAY_AIR_NEW_OUTPUT=0``
(the ``tuning.run`` command sets that), and its own output otherwise.
"""
from __future__ import annotations

import math
import os
import time
from typing import Any, Mapping, Sequence

import pandas as pd
from ray.tune import ProgressReporter

from core.metrics import VAL_LOSS
from search_spaces.types import SearchSpace

SHORT = {"weight_decay": "wd", "batch_size": "batch", "kernel_size": "kernel",
         "pool_size": "pool", "patience": "patience", "dropout": "dropout", "lr": "lr"}


def short_names(keys: list[str]) -> dict[str, str]:
    """``{"optim/lr": "lr", "optim/weight_decay": "wd", ...}``; a name two keys share stays long."""
    short = {key: SHORT.get(key.rsplit("/", 1)[-1], key.rsplit("/", 1)[-1]) for key in keys}
    taken = list(short.values())
    return {key: name if taken.count(name) == 1 else key for key, name in short.items()}


def _flat(config: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's config by flat ``group/key`` names (top-level values such as a retrain's
    ``rank`` keep their own name)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            flat.update({f"{key}/{name}": inner for name, inner in value.items()})
        else:
            flat[key] = value
    return flat


def _cell(value: Any) -> Any:
    """A table cell: floats to 4 significant digits, missing values blank."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.4g}" if isinstance(value, float) else value


class TrialTable(ProgressReporter):
    """Every ``every_s`` seconds and at the end: trial counts by status, the best value any epoch
    of any trial has reached, one row per trial (best first) and the errored trials.

    ``metric_columns``/``parameter_columns`` map a result key / a flat config key to its column.
    """

    def __init__(self, *, metric: str, mode: str, metric_columns: Mapping[str, str],
                 parameter_columns: Mapping[str, str], every_s: float = 30,
                 max_rows: int = 20, sort_by_metric: bool = True) -> None:
        self.metric, self.mode = metric, mode
        self.metric_columns, self.parameter_columns = dict(metric_columns), dict(parameter_columns)
        self.every_s, self.max_rows, self.sort_by_metric = every_s, max_rows, sort_by_metric
        self._start = time.time()
        self._last = -math.inf
        self._total: int | None = None

    def setup(self, start_time: float | None = None, total_samples: int | None = None,
              metric: str | None = None, mode: str | None = None, **kwargs: Any) -> None:
        self._start = start_time or self._start
        self._total = total_samples

    def should_report(self, trials: Sequence[Any], done: bool = False) -> bool:
        now = time.time()
        if done or now - self._last >= self.every_s:
            self._last = now
            return True
        return False

    def report(self, trials: Sequence[Any], done: bool, *sys_info: str) -> None:
        print(self.render(trials, done, *sys_info), flush=True)

    def render(self, trials: Sequence[Any], done: bool = False, *sys_info: str) -> str:
        """The report as text (what ``report`` prints)."""
        counts = pd.Series([t.status for t in trials], dtype=object).value_counts()
        total = f" of {self._total}" if self._total and self._total > 0 else ""
        lines = [f"== {'Finished' if done else 'Status'} after {time.time() - self._start:.0f} s: "
                 f"{len(trials)}{total} trials ("
                 + ", ".join(f"{n} {status}" for status, n in counts.items()) + ")", *sys_info]
        lines += [line for line in (self.best_line(trials),) if line]
        if trials:
            lines.append(self.table(trials, limit=None if done else self.max_rows))
        errored = [t for t in trials if t.status == "ERROR"]
        lines += [f"error: trial {t.trial_id}: {t.error_file or 'no error file'}" for t in errored]
        return "\n".join(lines)

    def best_line(self, trials: Sequence[Any]) -> str:
        """The best value any epoch of any trial has reached so far, and its trial."""
        scored = [(self._best_of(t), t) for t in trials]
        scored = [(value, t) for value, t in scored if value is not None]
        if not scored:
            return ""
        pick = max if self.mode == "max" else min
        value, trial = pick(scored, key=lambda item: item[0])
        return f"Best so far: {self.metric} {value:.4f} (trial {trial.trial_id})"

    def _best_of(self, trial: Any) -> float | None:
        analysis = trial.metric_analysis.get(self.metric)
        return None if not analysis else float(analysis[self.mode])

    def table(self, trials: Sequence[Any], *, limit: int | None = None) -> str:
        """One row per trial: id, status, the metric columns and the searched values."""
        rows = []
        for trial in trials:
            result, config = trial.last_result or {}, _flat(trial.config or {})
            row = {"trial": trial.trial_id, "status": trial.status}
            row.update({name: result.get(key) for key, name in self.metric_columns.items()})
            row.update({name: config.get(key) for key, name in self.parameter_columns.items()})
            rows.append(row)
        frame = pd.DataFrame(rows)
        column = self.metric_columns.get(self.metric)
        if self.sort_by_metric and column in frame:
            frame = frame.sort_values(column, ascending=self.mode == "min", na_position="last",
                                      key=lambda s: pd.to_numeric(s, errors="coerce"))
        shown = frame if limit is None else frame.head(limit)
        more = "" if len(shown) == len(frame) else f"\n... {len(frame) - len(shown)} more trials"
        return shown.map(_cell).to_string(index=False) + more


def _new_output() -> bool:
    """Whether Ray's own output engine is on (it then ignores a given reporter)."""
    return os.environ.get("RAY_AIR_NEW_OUTPUT", "1") != "0"


def trial_table(space: SearchSpace, searched: list[str], *, every_s: int = 30) -> TrialTable | None:
    """A ``TrialTable`` for ``RunConfig(progress_reporter=...)``: status, epoch, the space's
    metric, val loss and the searched keys by short name; None when Ray's new output is on."""
    if _new_output():
        return None
    metrics = {"epoch": "epoch", space.metric: space.metric, VAL_LOSS: "val loss",
               "time_total_s": "time (s)"}
    return TrialTable(metric=space.metric, mode=space.mode, metric_columns=metrics,
                      parameter_columns=short_names(searched), every_s=every_s)


def retrain_table(space: SearchSpace, *, every_s: int = 30) -> TrialTable | None:
    """The same compact table for the retrain Tuner: rank, seed, epoch, metric, val loss."""
    if _new_output():
        return None
    metrics = {"epoch": "epoch", space.metric: space.metric, VAL_LOSS: "val loss"}
    return TrialTable(metric=space.metric, mode=space.mode, metric_columns=metrics,
                      parameter_columns={"rank": "rank", "seed": "seed"}, every_s=every_s,
                      sort_by_metric=False)
