"""Tables from Ray results: every sweep trial as a row of ``trials.csv``."""
from __future__ import annotations

import math
from typing import Any

import pandas as pd
from ray import tune

from tuning.search.space import flatten


def trial_status(result: tune.Result, *, max_epochs: int) -> tuple[str, str]:
    """``(status, reason)``: errored / infeasible (out of memory) / early_stopped / completed /
    scheduler_stopped, with the error's last line when there is one."""
    if result.error is not None:
        reason = str(result.error).strip().splitlines()[-1][:300]
        oom = "out of memory" in str(result.error).lower()
        return ("infeasible" if oom else "errored"), reason
    metrics = result.metrics or {}
    if metrics.get("early_stopped"):
        return "early_stopped", ""
    if metrics.get("epoch", 0) >= max_epochs:
        return "completed", ""
    return "scheduler_stopped", ""


def best_of(series: pd.Series, mode: str) -> float:
    """The best finite value of a metric's history (NaN when there is none)."""
    values = pd.to_numeric(series, errors="coerce").dropna()
    if values.empty:
        return math.nan
    return float(values.max() if mode == "max" else values.min())


def trials_table(grid: tune.ResultGrid, *, metric: str, mode: str, max_epochs: int,
                 searched: list[str]) -> pd.DataFrame:
    """One row per trial: id, status, epochs run, best and last val metric, wall time, config."""
    rows: list[dict[str, Any]] = []
    for result in grid:
        metrics = result.metrics or {}
        history = result.metrics_dataframe
        has_metric = history is not None and metric in history
        status, reason = trial_status(result, max_epochs=max_epochs)
        config = flatten(result.config or {})
        rows.append({
            "trial_id": _trial_id(result),
            "status": status,
            "epochs": int(metrics.get("epoch", 0) or 0),
            f"best_{metric}": best_of(history[metric], mode) if has_metric else math.nan,
            f"last_{metric}": float(history[metric].iloc[-1]) if has_metric else math.nan,
            "wall_time_s": float(metrics.get("time_total_s", math.nan) or math.nan),
            "reason": reason,
            **{key: config.get(key) for key in searched},
        })
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    return table.sort_values(f"best_{metric}", ascending=(mode == "min"),
                             na_position="last").reset_index(drop=True)


def _trial_id(result: tune.Result) -> str:
    """The trial's id from its folder name (``trial_<id>``): an errored trial's metrics may be
    those its reused process reported for an earlier trial."""
    path = str(getattr(result, "path", "") or "")
    return path.rstrip("/").rsplit("/", 1)[-1].removeprefix("trial_")
