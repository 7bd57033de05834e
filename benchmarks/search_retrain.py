"""python benchmarks/search_retrain.py --space egfr [--out results/search-methods] [--difficulty hard]

Each search method's winner, trained for real: the config with the best val metric in the run of
the method's median seed (median by best val found, ``benchmarks/search_methods.py``'s saved
runs), trained once with ``core.train.train`` on the space's phantom, then evaluated once on test
with the threshold picked on val and intervals over patients (``core.evaluate``,
``core.intervals``), as ``tuning.search.retrain`` does for a sweep's finalists.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from search_report import read_logs  # noqa: E402
from search_sim import METHODS  # noqa: E402

from core.config import TrialConfig  # noqa: E402
from core.data.prepared import DataOptions  # noqa: E402
from core.evaluate import evaluate_predictions, predict  # noqa: E402
from core.tasks import get_task, prepare  # noqa: E402
from core.train import train  # noqa: E402
from search_spaces import get_space  # noqa: E402


def winner(runs: dict[int, pd.DataFrame]) -> tuple[int, dict[str, Any], float]:
    """(median seed, its best config, that config's best val) of one method's runs."""
    by_best = sorted(runs, key=lambda seed: runs[seed]["best"].iloc[-1])
    seed = by_best[len(by_best) // 2]
    row = runs[seed].loc[runs[seed]["metric"].idxmax()]
    return seed, ast.literal_eval(row["config"]), float(row["metric"])


def retrain(space_name: str, params: dict[str, Any], data: Any, *, overrides: dict[str, Any],
            seed: int) -> dict[str, Any]:
    """Train ``params`` for real and read test once: the val-best epoch's val metric and the test
    metrics with their intervals."""
    space = get_space(space_name)
    cfg = TrialConfig.from_dict({**space.fixed, **overrides, **params, "train/seed": seed})
    arrays, task = data.arrays, get_task(cfg.data.task)
    result = train(cfg, arrays, metric=space.metric, mode=space.mode)
    batch = cfg.train.batch_size
    groups = data.splits.loc[data.splits["split"] == "test", "group"].to_numpy()
    evaluation = evaluate_predictions(
        val_y=np.asarray(arrays["val/y"]), val_p=predict(result.module, arrays["val/x"], batch_size=batch),
        test_y=np.asarray(arrays["test/y"]), test_p=predict(result.module, arrays["test/x"], batch_size=batch),
        segmentation=task.kind == "segmentation", threshold_rule=space.threshold_rule,
        groups=groups, unit=task.group_unit)
    return {"val": result.best_score, "best_epoch": result.best_epoch, "test": evaluation["test"]}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--space", default="egfr")
    p.add_argument("--out", type=Path, default=Path("results/search-methods"))
    p.add_argument("--difficulty", default="hard")
    p.add_argument("--seed", type=int, default=42, help="training seed (the curves' own)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    p.add_argument("--methods", nargs="*", default=list(METHODS))
    opts = p.parse_args()
    overrides = {k: __import__("yaml").safe_load(v) for k, v in (i.split("=", 1) for i in opts.set)}
    space = get_space(opts.space)
    cfg = TrialConfig.from_dict({**space.fixed, **overrides}).data
    data = prepare(get_task(cfg.task), cfg, DataOptions(phantom_difficulty=opts.difficulty),
                   seed=opts.seed)
    logs = read_logs(opts.out / opts.space, opts.methods)
    path = opts.out / opts.space / "retrained.json"
    done = json.loads(path.read_text()) if path.exists() else {}
    for method, runs in logs.items():
        if method in done:
            continue
        seed, params, sim_val = winner(runs)
        outcome = retrain(opts.space, params, data, overrides=overrides, seed=opts.seed)
        done[method] = {"median_seed": seed, "config": params, "surrogate_val": sim_val, **outcome}
        path.write_text(json.dumps(done, indent=1, default=float))
        headline = next(iter(outcome["test"]))
        stat = outcome["test"][headline]
        print(f"{method}: val {outcome['val']:.4f}, test {headline} {stat['value']:.3f} "
              f"[{stat['ci_low']:.3f}, {stat['ci_high']:.3f}] ({stat['method']})", flush=True)


if __name__ == "__main__":
    main()
