"""Files of a finished run in ``results/<name>/``: leaderboard, summary, the best model folder."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.model_folder import save_model_folder
from search_spaces.types import SearchSpace
from tuning.config.atomic import write_text_atomic
from tuning.search.retrain import RetrainRun


def jsonable(value: Any) -> Any:
    """Plain JSON types: NaN becomes null, numpy scalars and tuples become numbers and lists."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: Path, payload: Any) -> None:
    """``payload`` as indented JSON (``jsonable``), written atomically."""
    write_text_atomic(path, json.dumps(jsonable(payload), indent=2) + "\n")


def write_best(folder: Path, run: RetrainRun, *, space: SearchSpace,
               data_info: dict[str, Any] | None = None) -> None:
    """``best/``: a self-contained model folder (``core.model_folder``), test metrics, predictions."""
    save_model_folder(folder, weights=run.checkpoint_dir / "model.pt", config=run.config,
                      threshold=run.evaluation["threshold"], name=folder.parent.name,
                      metric=space.metric, training_data=jsonable(data_info or {}))
    write_json(folder / "metrics.json", {"val": {space.metric: run.val_score},
                                         "test": run.evaluation["test"]})
    np.savez(folder / "predictions.npz", val=run.evaluation["val_probabilities"],
             test=run.evaluation["test_probabilities"])


def over_seeds(board: pd.DataFrame, rank: int) -> dict[str, dict[str, Any]]:
    """Per test metric of the config at ``rank``: mean and sd (ddof 1) over its retrain seeds."""
    row = board[board["rank"] == rank].iloc[0]
    names = [c[len("test/"):-len("_mean_over_seeds")] for c in board
             if c.startswith("test/") and c.endswith("_mean_over_seeds")]
    return {name: {"mean": row[f"test/{name}_mean_over_seeds"],
                   "sd": row[f"test/{name}_sd_over_seeds"], "n_seeds": int(row["seeds"])}
            for name in names}


def test_block(run: RetrainRun, board: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """The chosen model's test intervals (value, ci_low, ci_high, method, unit, n_groups, ...),
    each with its config's mean ± sd over seeds beside it as ``over_seeds``."""
    spread = over_seeds(board, run.rank) if "rank" in board else {}
    return {name: {**stat, **({"over_seeds": spread[name]} if name in spread else {})}
            for name, stat in run.evaluation["test"].items()}


def summary(*, space: SearchSpace, run: RetrainRun, trials: pd.DataFrame, board: pd.DataFrame,
            wall_time_s: float, settings: dict[str, Any], searched: list[str]) -> dict[str, Any]:
    """The run in one JSON: space, metric, chosen config, its test metrics, counts, wall time.

    ``test``: the chosen model's (one seed's) values with 95 % intervals over test patients or
    series, and beside each the chosen config's mean ± sd over its retrain seeds.
    """
    counts = trials["status"].value_counts().to_dict() if not trials.empty else {}
    return {
        "space": space.name,
        "selection_metric": space.metric,
        "mode": space.mode,
        "chosen_config": run.config,
        "chosen_seed": run.seed,
        "val": {space.metric: run.val_score},
        "threshold": run.evaluation["threshold"],
        "test": test_block(run, board),
        "confusion": run.evaluation.get("confusion"),
        **run.evaluation.get("task_metrics", {}),
        "test_prevalence": settings.get("data", {}).get("prevalence", {}).get("test"),
        "trials": {"total": int(len(trials)), **{str(k): int(v) for k, v in counts.items()},
                   "trial_epochs": int(trials["epochs"].sum()) if not trials.empty else 0},
        "retrained_configs": int(len(board)),
        "searched": searched,
        "wall_time_s": wall_time_s,
        "settings": settings,
    }


def format_summary(payload: dict[str, Any], results_dir: Path) -> str:
    """A few readable lines for the end of a run."""
    trials = payload["trials"]
    lines = [f"medtune: {payload['space']} finished in {payload['wall_time_s'] / 60:.1f} min",
             f"  trials: {trials['total']} ("
             + ", ".join(f"{k} {v}" for k, v in trials.items() if k not in ("total", "trial_epochs"))
             + f"), {trials['trial_epochs']} trial-epochs",
             f"  chosen on {payload['selection_metric']} (val): {payload['val'][payload['selection_metric']]:.4f}"]
    for key in payload["searched"]:
        lines.append(f"    {key} = {payload['chosen_config'].get(key)}")
    lines.append(f"  test (read once, threshold {payload['threshold']:.3f} from val), "
                 f"the chosen model (seed {payload['chosen_seed']}):")
    for name, stat in payload["test"].items():
        lines.append(f"    {name:<12} {_num(stat['value'])}  95% CI [{_num(stat['ci_low'])}, "
                     f"{_num(stat['ci_high'])}]{_spread(stat)}  ({_how(stat)})")
    lines.append(f"  results: {results_dir}")
    return "\n".join(lines)


def _num(value: Any) -> str:
    return "n/a" if value is None or not math.isfinite(float(value)) else f"{float(value):.3f}"


def _spread(stat: dict[str, Any]) -> str:
    seeds = stat.get("over_seeds")
    if not seeds:
        return ""
    return f"; over {seeds['n_seeds']} seeds {_num(seeds['mean'])} ± {_num(seeds['sd'])}"


def _how(stat: dict[str, Any]) -> str:
    """``method, by patient, 40/9 groups, few positives``."""
    groups = stat.get("n_groups") or {}
    counts = "/".join(str(v) for v in groups.values())
    flag = ", few positives" if stat.get("few_positives") else ""
    return f"{stat.get('method', '?')}; by {stat.get('unit', '?')}, {counts} groups{flag}"
