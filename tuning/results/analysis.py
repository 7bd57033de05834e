"""A finished sweep as data: per-trial histories, the best-so-far curve, methods, importance.

Shared by ``tuning.results.report`` and ``tuning.compare``; no plotting here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from search_spaces.types import Choice, Distribution, IntUniform, LogUniform, Uniform

MIN_TRIALS_FOR_IMPORTANCE = 4


def choice_label(value: Any) -> str:
    """A categorical value as short text: ``16`` -> ``"16"``, ``(16, 32)`` or ``"[16, 32]"`` ->
    ``"16-32"`` (trials.csv stores tuples as text), so saved and declared values match."""
    if isinstance(value, (list, tuple)):
        return "-".join(choice_label(v) for v in value)
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        inner = text.strip("()[]").replace(" ", "")
        return "-".join(part.strip("'\"") for part in inner.split(",")) if "," in inner else inner
    return str(int(number)) if number.is_integer() else f"{number:g}"


def number(value: Any, digits: int = 3) -> str:
    """A metric as fixed-point text; ``n/a`` for None or NaN (a metric undefined on the split)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return "n/a"
    return f"{value:.{digits}f}" if np.isfinite(value) else "n/a"


def with_ci(stat: Mapping[str, Any]) -> str:
    """``{"value", "ci_low", "ci_high"}`` as ``0.812 [0.700, 0.900]``."""
    return f"{number(stat.get('value'))} [{number(stat.get('ci_low'))}, {number(stat.get('ci_high'))}]"


class Skipped(Exception):
    """A plot that cannot be drawn for a stated reason (too few trials, no histories)."""


def read_trials(folder: Path) -> pd.DataFrame:
    """A run's ``trials.csv`` with trial ids kept as text (``12345678`` is an id, not a number)."""
    return pd.read_csv(Path(folder) / "trials.csv", dtype={"trial_id": str})


def read_histories(sweep_dir: Path) -> dict[str, pd.DataFrame]:
    """Per-epoch results of every trial in a Ray Tune experiment folder, by trial id.

    Reads each ``trial_*/progress.csv`` (else ``result.json``); a restored trial's repeated
    epochs keep their last report.
    """
    histories = {}
    for folder in sorted(Path(sweep_dir).glob("trial_*")):
        frame = _read_trial(folder)
        if frame is None or frame.empty:
            continue
        if "training_iteration" in frame:
            frame = frame.drop_duplicates("training_iteration", keep="last")
        histories[folder.name.removeprefix("trial_")] = frame.reset_index(drop=True)
    return histories


def _read_trial(folder: Path) -> pd.DataFrame | None:
    progress, results = folder / "progress.csv", folder / "result.json"
    if progress.is_file() and progress.stat().st_size:
        return pd.read_csv(progress)
    if results.is_file() and results.stat().st_size:
        return pd.read_json(results, lines=True)
    return None


def histories_from_grid(grid: Any) -> dict[str, pd.DataFrame]:
    """The same per-trial histories from a Ray ``ResultGrid`` (storage need not be local)."""
    histories = {}
    for result in grid:
        frame = result.metrics_dataframe
        if frame is not None and not frame.empty:
            trial_id = (result.metrics or {}).get("trial_id") or Path(str(result.path)).name
            histories[str(trial_id).removeprefix("trial_")] = frame.reset_index(drop=True)
    return histories


def best_so_far(histories: Mapping[str, pd.DataFrame], *, metric: str, mode: str) -> pd.DataFrame:
    """Every reported trial-epoch in time order: ``trial_epoch`` (1..N), trial_id, value, best, and
    ``wall_s``, seconds from the sweep's first trial start to the end of that trial-epoch (NaN
    when the histories lack Ray's ``timestamp`` and ``time_total_s``)."""
    parts = [frame.assign(trial_id=trial_id) for trial_id, frame in histories.items()
             if metric in frame]
    if not parts:
        return pd.DataFrame(columns=["trial_epoch", "trial_id", "value", "best", "wall_s"])
    rows = pd.concat(parts, ignore_index=True)
    ends = epoch_end_times(rows)
    if ends is not None:
        rows = rows.assign(_end=ends).sort_values("_end", kind="stable")
        wall = (rows["_end"] - trial_starts(rows).min()).to_numpy(dtype=float)
    else:
        order = [c for c in ("timestamp", "time_total_s") if c in rows]
        rows = rows.sort_values(order, kind="stable") if order else rows
        wall = np.full(len(rows), np.nan)
    value = pd.to_numeric(rows[metric], errors="coerce").reset_index(drop=True)
    best = (value.cummax() if mode == "max" else value.cummin()).ffill()
    return pd.DataFrame({"trial_epoch": np.arange(1, len(rows) + 1),
                         "trial_id": rows["trial_id"].to_numpy(), "value": value, "best": best,
                         "wall_s": wall})


def trial_starts(rows: pd.DataFrame) -> pd.Series:
    """Each row's trial start (Unix s): the median over the trial's rows of ``timestamp -
    time_total_s``; Ray's timestamp is whole seconds, so a start is good to about 1 s."""
    start = pd.to_numeric(rows["timestamp"], errors="coerce") - pd.to_numeric(
        rows["time_total_s"], errors="coerce")
    return start.groupby(rows["trial_id"]).transform("median")


def epoch_end_times(rows: pd.DataFrame) -> pd.Series | None:
    """When each trial-epoch ended (Unix s): its trial's start plus its ``time_total_s``, finer
    than Ray's whole-second timestamp; None without those columns."""
    if not {"timestamp", "time_total_s"} <= set(rows):
        return None
    ends = trial_starts(rows) + pd.to_numeric(rows["time_total_s"], errors="coerce")
    return None if ends.isna().all() else ends


def search_methods(run_options: Mapping[str, Any]) -> tuple[str, str]:
    """(search method, scheduler) named in ``run_options.json`` ("auto" resolved); "tpe" and
    "asha" when unnamed (runs from before the choice existed)."""
    sweep = run_options.get("sweep") or {}
    found = {}
    for role, keys in {"search": ("search", "search_method", "searcher", "search_alg", "method"),
                       "scheduler": ("scheduler", "scheduler_name")}.items():
        for source in (sweep, run_options):
            value = next((source[k] for k in keys if source.get(k)), None)
            if isinstance(value, Mapping):  # e.g. {"name": "random", ...}
                value = value.get("name") or value.get("method")
            if value:
                found[role] = str(value)
                break
    search, scheduler = found.get("search", "tpe"), found.get("scheduler", "asha")
    if scheduler == "auto":  # resolved against the search, as the sweep did
        from tuning.search.searchers import scheduler_name
        from tuning.search.settings import SweepSettings

        scheduler = scheduler_name(SweepSettings(search=search, scheduler=scheduler))
    return search, scheduler


def to_optuna(dist: Distribution) -> Any:
    """A declarative distribution as Optuna's (tuple-valued choices become text categories)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if isinstance(dist, (LogUniform, Uniform)):
        return FloatDistribution(dist.low, dist.high, log=isinstance(dist, LogUniform))
    if isinstance(dist, IntUniform):
        return IntDistribution(dist.low, dist.high)
    if isinstance(dist, Choice):
        return CategoricalDistribution([choice_label(v) for v in dist.values])
    raise TypeError(f"Unsupported distribution {dist!r}")


def _optuna_value(value: Any, dist: Distribution) -> Any:
    """A trials.csv value inside its Optuna distribution (clipped; a choice as its label)."""
    if isinstance(dist, Choice):
        label = choice_label(value)
        if label not in {choice_label(v) for v in dist.values}:
            raise ValueError(f"{value!r} is not one of {dist.values}")
        return label
    if isinstance(dist, IntUniform):
        return int(min(max(round(float(value)), dist.low), dist.high))
    return float(min(max(float(value), dist.low), dist.high))


def param_importance(trials: pd.DataFrame, distributions: Mapping[str, Distribution], *,
                     metric: str, mode: str, seed: int = 0) -> dict[str, float]:
    """fANOVA importance of each searched parameter for the trials' best val metric.

    Builds an in-memory Optuna study from the finished trials (every trial with a finite best
    metric); raises ``Skipped`` with the reason when there are too few.
    """
    import optuna
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    score = pd.to_numeric(trials[f"best_{metric}"], errors="coerce")
    finished = trials[np.isfinite(score)]
    if len(finished) < MIN_TRIALS_FOR_IMPORTANCE:
        raise Skipped(f"only {len(finished)} finished trials; fANOVA needs at least "
                      f"{MIN_TRIALS_FOR_IMPORTANCE}")
    if not distributions:
        raise Skipped("no parameter was searched in this run")
    if score[finished.index].nunique() < 2:
        raise Skipped(f"all {len(finished)} finished trials scored the same best {metric}")
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(direction="maximize" if mode == "max" else "minimize")
        dists = {key: to_optuna(dist) for key, dist in distributions.items()}
        for _, row in finished.iterrows():
            params = {key: _optuna_value(row[key], dist) for key, dist in distributions.items()}
            study.add_trial(optuna.trial.create_trial(
                params=params, distributions=dists, value=float(row[f"best_{metric}"])))
        return get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=seed))
    finally:
        optuna.logging.set_verbosity(verbosity)
