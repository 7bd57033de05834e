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
    path.write_text(json.dumps(jsonable(payload), indent=2) + "\n")


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


def summary(*, space: SearchSpace, run: RetrainRun, trials: pd.DataFrame, board: pd.DataFrame,
            wall_time_s: float, settings: dict[str, Any], searched: list[str]) -> dict[str, Any]:
    """The run in one JSON: space, metric, chosen config, its test metrics, counts, wall time."""
    counts = trials["status"].value_counts().to_dict() if not trials.empty else {}
    return {
        "space": space.name,
        "selection_metric": space.metric,
        "mode": space.mode,
        "chosen_config": run.config,
        "chosen_seed": run.seed,
        "val": {space.metric: run.val_score},
        "threshold": run.evaluation["threshold"],
        "test": run.evaluation["test"],
        "confusion": run.evaluation.get("confusion"),
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
    lines.append(f"  test (read once, threshold {payload['threshold']:.3f} from val):")
    for name, stat in payload["test"].items():
        lines.append(f"    {name:<12} {stat['value']:.3f}  95% CI [{stat['ci_low']:.3f}, {stat['ci_high']:.3f}]")
    lines.append(f"  results: {results_dir}")
    return "\n".join(lines)
