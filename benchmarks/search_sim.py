"""One search method run in Ray Tune on a surrogate of training (``surrogate.CurveSurrogate``).

The searcher and scheduler are medtune's own (``build_searcher`` / ``build_scheduler`` from
``SweepSettings``); only the trainable differs: it reports, epoch by epoch, what a trial of
``tuning.search.trainable`` reports (the raw val metric, its best so far ``SCORE``, val loss,
``epoch``, ``early_stopped``), read from the surrogate's curve, without sleeping. The clock is
simulated: each report carries the config's predicted seconds per epoch, and a run's wall time is
the sum of the epochs reported so far divided by the slots (perfect packing of the slots, no
start-up cost per trial).
"""
from __future__ import annotations

import math
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from ray import cloudpickle, tune

from core.metrics import SCORE, VAL_LOSS
from search_spaces.types import SearchSpace
from tuning.search.searchers import build_scheduler, build_searcher, tune_metric
from tuning.search.settings import SweepSettings
from tuning.search.space import flatten, param_space

EPOCH_SECONDS = "epoch_seconds"
CHECKPOINT_FILE = "epoch.txt"


@dataclass(frozen=True)
class Method:
    """A search and a scheduler as ``tuning.run`` names them."""

    name: str
    search: str
    scheduler: str


METHODS = {m.name: m for m in (
    Method("random", "random", "none"),
    Method("random + ASHA", "random", "asha"),
    Method("TPE", "tpe", "none"),
    Method("TPE + ASHA (default)", "tpe", "asha"),
    Method("W&B bayes + hyperband", "wandb-bayes", "wandb-hyperband"),
    Method("BOHB", "bohb", "auto"),
)}


def _restore_epoch() -> int:
    """The epochs a resumed (paused, then continued) trial already reported; 0 for a new one."""
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return 0
    with checkpoint.as_directory() as folder:
        with open(f"{folder}/{CHECKPOINT_FILE}", encoding="utf-8") as f:
            return int(f.read())


def _report(result: dict[str, Any], epoch: int, checkpoint: bool) -> None:
    if not checkpoint:
        tune.report(result)
        return
    with tempfile.TemporaryDirectory() as folder:
        with open(f"{folder}/{CHECKPOINT_FILE}", "w", encoding="utf-8") as f:
            f.write(str(epoch))
        tune.report(result, checkpoint=tune.Checkpoint.from_directory(folder))


def surrogate_trial(config: dict[str, Any], *, surrogate: Any, noise_seed: int, metric: str,
                    max_epochs: int, checkpoint: bool = False) -> None:
    """A sweep trial on the surrogate: its curve for (config, noise_seed), one report per epoch
    until the curve's own early stopping or ``max_epochs``. ``checkpoint``: report a checkpoint
    each epoch, so a scheduler that pauses trials (BOHB's hyperband) can resume them."""
    flat = flatten(config)
    curve = surrogate.sample({key: flat[key] for key in surrogate.space.search}, seed=noise_seed)
    stop = min(curve.stop, max_epochs)
    start = _restore_epoch()
    best = max(curve.metric[:start], default=-math.inf)
    for epoch in range(start + 1, stop + 1):
        value = float(curve.metric[epoch - 1])
        best = max(best, value)
        _report({metric: value, SCORE: best, VAL_LOSS: float(curve.val_loss[epoch - 1]),
                 "epoch": epoch, "early_stopped": int(epoch == stop < max_epochs),
                 EPOCH_SECONDS: curve.seconds}, epoch, checkpoint)


class EpochLog(tune.Callback):
    """Every epoch report in the order the driver (searcher and scheduler) received it."""

    def __init__(self, metric: str, keys: list[str]) -> None:
        self.metric, self.keys, self.rows = metric, keys, []

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                        **info: Any) -> None:
        self.rows.append({"trial": trial.trial_id, "epoch": result["epoch"],
                          "metric": result[self.metric],
                          # a real trial's own clock when it is no surrogate
                          "seconds": result.get(EPOCH_SECONDS, result.get("time_this_iter_s")),
                          "config": repr({k: _python(v) for k, v in flatten(trial.config).items()
                                          if k in self.keys})})


def _python(value: Any) -> Any:
    """A numpy scalar (as BOHB proposes them) as the Python value, so a logged config reads back
    with ``ast.literal_eval``."""
    return value.item() if isinstance(value, np.generic) else value


def anytime(rows: list[dict[str, Any]], slots: int) -> pd.DataFrame:
    """Per report: cumulative trial-epochs, simulated wall seconds and the best val so far."""
    table = pd.DataFrame(rows)
    table["trial_epochs"] = range(1, len(table) + 1)
    table["wall_s"] = table["seconds"].cumsum() / slots
    table["best"] = table["metric"].cummax()
    return table


def run_method(method: Method, space: SearchSpace, surrogate: Any, *, seed: int,
               num_samples: int, max_epochs: int, slots: int,
               overrides: dict[str, Any] | None = None,
               settings: dict[str, Any] | None = None) -> tuple[pd.DataFrame, float]:
    """One seeded run of ``method`` on the surrogate; its epoch log (``anytime``) and the real
    seconds the run took (the searcher's and Ray's own overhead: the trainable never sleeps).
    ``settings`` overrides ``SweepSettings`` fields (grace period, reduction factor...)."""
    sweep = SweepSettings(num_samples=num_samples, max_epochs=max_epochs, max_concurrent=slots,
                          seed=seed, search=method.search, scheduler=method.scheduler,
                          gpus_per_trial=0, **(settings or {}))
    overrides = dict(overrides or {})
    # benchmarks/ is no package Ray's workers can import: ship the trainable's module and the
    # surrogate's by value
    for module in {surrogate_trial.__module__, type(surrogate).__module__}:
        cloudpickle.register_pickle_by_value(sys.modules[module])
    metric = tune_metric(space, sweep)
    log = EpochLog(space.metric, list(space.search))
    trainable = tune.with_parameters(surrogate_trial, surrogate=surrogate, noise_seed=seed,
                                     metric=space.metric, max_epochs=max_epochs,
                                     checkpoint=method.search == "bohb")
    with tempfile.TemporaryDirectory(prefix="search-sim-") as storage:
        tuner = tune.Tuner(
            trainable,
            param_space=param_space(space, {**overrides, "train/max_epochs": max_epochs}),
            tune_config=tune.TuneConfig(
                metric=metric, mode=space.mode, num_samples=num_samples, reuse_actors=True,
                search_alg=build_searcher(space, sweep, overrides),
                scheduler=build_scheduler(space, sweep, overrides)),
            run_config=tune.RunConfig(name="sim", storage_path=storage, callbacks=[log],
                                      verbose=0))
        started = time.perf_counter()
        grid = tuner.fit()
        seconds = time.perf_counter() - started
    if grid.errors:
        raise RuntimeError(f"{method.name} seed {seed}: {len(grid.errors)} trials errored: "
                           f"{grid.errors[0]!r}")
    return anytime(log.rows, slots), seconds
