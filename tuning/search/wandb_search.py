"""W&B's own sweep engine inside Ray Tune: its bayes search as a ``Searcher`` and its hyperband
early termination as a trial scheduler.

Both run W&B's open-source ``sweeps`` package locally (``pip install "medtune[wandb-sweeps]"``):
no API key, no network and no hosted sweep. The space is converted once, by
``wandb_sweep_config``, which ``tuning.export_wandb_sweep`` writes out as YAML too.
"""
from __future__ import annotations

import contextlib
import logging
import math
import pickle
import warnings
from typing import Any, Iterator

import numpy as np
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher

from core.errors import ConfigError
from search_spaces.types import Choice, Distribution, IntUniform, LogUniform, SearchSpace, Uniform
from tuning.search.space import nest

log = logging.getLogger(__name__)

GOALS = {"max": "maximize", "min": "minimize"}
INSTALL_HINT = 'pip install "medtune[wandb-sweeps]" (or: pip install sweeps)'


def require_sweeps() -> Any:
    """W&B's sweep engine (the ``sweeps`` package), or a ``ConfigError`` saying how to install it."""
    try:
        with warnings.catch_warnings():  # sweeps' pydantic-1 style models warn under pydantic 2
            warnings.simplefilter("ignore")
            import sweeps
    except ImportError as err:
        raise ConfigError(f"W&B's sweep engine is not installed: {INSTALL_HINT}") from err
    return sweeps


def wandb_name(key: str) -> str:
    """medtune's ``group/key`` as W&B's ``group.key``: sweep parameter names may not hold ``/``,
    and ``group.key`` is how W&B shows a nested config."""
    return key.replace("/", ".")


def plain(value: Any) -> Any:
    """Tuples as lists (YAML and W&B have no tuples)."""
    if isinstance(value, (tuple, list)):
        return [plain(item) for item in value]
    return value


def wandb_parameter(dist: Distribution) -> dict[str, Any]:
    """One declarative distribution as a W&B sweep parameter."""
    if isinstance(dist, LogUniform):
        return {"distribution": "log_uniform_values", "min": float(dist.low), "max": float(dist.high)}
    if isinstance(dist, Uniform):
        return {"distribution": "uniform", "min": float(dist.low), "max": float(dist.high)}
    if isinstance(dist, IntUniform):  # both ends included, as in the space
        return {"distribution": "int_uniform", "min": int(dist.low), "max": int(dist.high)}
    if isinstance(dist, Choice):
        return {"values": plain(list(dist.values))}
    raise TypeError(f"Unsupported distribution {dist!r}")


def wandb_sweep_config(space: SearchSpace, *, overrides: dict[str, Any] | None = None,
                       min_iter: int = 2, eta: float = 3, method: str = "bayes") -> dict[str, Any]:
    """The space as a W&B sweep config: method, metric and goal, hyperband early termination
    counted in epochs, searched keys as distributions and fixed keys (and ``overrides``) as values."""
    overrides = overrides or {}
    parameters = {wandb_name(key): {"value": plain(value)}
                  for key, value in {**space.fixed, **overrides}.items()}
    parameters.update({wandb_name(key): wandb_parameter(dist)
                       for key, dist in space.search.items() if key not in overrides})
    return {"method": method,
            "metric": {"name": space.metric, "goal": GOALS[space.mode]},
            "early_terminate": {"type": "hyperband", "min_iter": int(min_iter), "eta": eta},
            "parameters": dict(sorted(parameters.items()))}


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float, np.number)) and math.isfinite(float(value))


def _run(sweeps: Any, name: str, state: str, metric: str, history: list[float],
         config: dict[str, Any] | None = None) -> Any:
    """A ``sweeps.SweepRun`` (built with W&B's field aliases, which pydantic 2 requires); its
    summary holds the last value, as a W&B run's does."""
    summary = {metric: history[-1]} if history else {}
    return sweeps.SweepRun(name=name, state=state, config=config or {}, summaryMetrics=summary,
                           sampledHistory=[{metric: value} for value in history])


class WandbBayesSearch(Searcher):
    """Proposes configs with W&B's bayes sweep: a Gaussian process over every finished and running
    trial (``sweeps.next_run``), seeded, after any ``points_to_evaluate``.

    Finished trials, those stopped early included, count with the best value of the metric in
    their history; errored ones are imputed as the worst, as W&B does. Running ones enter the
    Gaussian process at its own prediction. The state is plain data, saved and restored by Tune.
    """

    def __init__(self, space: SearchSpace, *, overrides: dict[str, Any] | None = None,
                 seed: int = 0, points_to_evaluate: list[dict[str, Any]] | None = None,
                 min_iter: int = 2, eta: float = 3) -> None:
        super().__init__(metric=space.metric, mode=space.mode)
        require_sweeps()
        overrides = overrides or {}
        self._config = wandb_sweep_config(space, overrides=overrides, min_iter=min_iter, eta=eta)
        self._searched = {key: dist for key, dist in space.search.items() if key not in overrides}
        self._points = [dict(point) for point in points_to_evaluate or []]
        self._rng = np.random.RandomState(seed).get_state()
        self._trials: dict[str, dict[str, Any]] = {}  # id -> config (flat), history, state

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict,
                              **spec: Any) -> bool:
        """The space came with the constructor: each suggestion replaces the param space's
        distributions of the searched keys, its fixed values stay."""
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        flat = self._points.pop(0) if self._points else self._propose()
        self._trials[trial_id] = {"config": flat, "history": [], "state": "running"}
        return nest(flat)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        value = result.get(self.metric)
        if trial_id in self._trials and _finite(value):
            self._trials[trial_id]["history"].append(float(value))

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        trial = self._trials.get(trial_id)
        if trial is None:
            return
        value = (result or {}).get(self.metric)
        if not trial["history"] and _finite(value):
            trial["history"].append(float(value))
        trial["state"] = "failed" if error else "finished"

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as file:
            pickle.dump(self.__dict__.copy(), file)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as file:
            self.__dict__.update(pickle.load(file))

    def _propose(self) -> dict[str, Any]:
        """One config from ``sweeps.next_run``, as the space's own values (choices, ints, bounds)."""
        sweeps = require_sweeps()
        runs = [_run(sweeps, trial_id, trial["state"], self.metric, trial["history"],
                     {wandb_name(k): {"value": plain(v)} for k, v in trial["config"].items()})
                for trial_id, trial in self._trials.items()]
        with self._seeded(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Gaussian-process fit chatter from scikit-learn
            proposal = sweeps.next_run(self._config, runs)
        return {key: self._from_wandb(dist, proposal.config[wandb_name(key)]["value"])
                for key, dist in self._searched.items()}

    @staticmethod
    def _from_wandb(dist: Distribution, value: Any) -> Any:
        if isinstance(dist, Choice):
            return dist.values[plain(list(dist.values)).index(plain(value))]
        if isinstance(dist, IntUniform):
            return int(min(max(int(value), dist.low), dist.high))
        return float(min(max(float(value), dist.low), dist.high))  # exp(log(x)) may round out

    @contextlib.contextmanager
    def _seeded(self) -> Iterator[None]:
        """W&B's engine draws from NumPy's global generator: run it on this searcher's own state."""
        outer = np.random.get_state()
        np.random.set_state(self._rng)
        try:
            yield
        finally:
            self._rng = np.random.get_state()
            np.random.set_state(outer)


class WandbHyperband(FIFOScheduler):
    """Stops a trial when W&B's hyperband rule (``sweeps.stop_runs``) says so, checked at each of
    its epoch reports against every trial's per-epoch history: at epochs ``min_iter * eta**k`` a
    trial whose best value is outside the top ``1/eta`` of the values reached there stops."""

    def __init__(self, sweep_config: dict[str, Any]) -> None:
        super().__init__()
        require_sweeps()
        self._config = {key: sweep_config[key]
                        for key in ("method", "metric", "early_terminate", "parameters")}
        self._histories: dict[str, list[float]] = {}
        self.stopped: list[str] = []

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        """The metric and goal come from the sweep config (the space's); Tune's must agree."""
        return metric in (None, self._config["metric"]["name"])

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        value = result.get(self._config["metric"]["name"])
        if not _finite(value):
            return TrialScheduler.CONTINUE
        self._histories.setdefault(trial.trial_id, []).append(float(value))
        if not self._should_stop(trial.trial_id):
            return TrialScheduler.CONTINUE
        self.stopped.append(trial.trial_id)
        log.debug("W&B hyperband stops %s after %d epochs", trial.trial_id,
                  len(self._histories[trial.trial_id]))
        return TrialScheduler.STOP

    def _should_stop(self, trial_id: str) -> bool:
        sweeps = require_sweeps()
        metric = self._config["metric"]["name"]
        runs = [_run(sweeps, other, "running" if other == trial_id else "finished", metric, history)
                for other, history in self._histories.items()]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            stop = sweeps.stop_runs(self._config, runs)
        return any(run.name == trial_id for run in stop)

    def debug_string(self) -> str:
        return f"W&B hyperband: {len(self.stopped)} trials stopped early"
