"""One MLflow run per trial, logged from the driver in one batch per report. Imported lazily by
``tuning.tracking.callbacks`` (it imports mlflow).

Why not Ray's ``MLflowLoggerCallback``: it makes one store call per metric and per parameter, each
after looking the run up again, which on a ``file:`` store is tens of file reads and writes per
epoch on the sweep's event loop. Here a trial's parameters go in one ``log_batch`` at its start and
each report's metrics in one ``log_batch``.
"""
from __future__ import annotations

import time
from typing import Any

from mlflow.entities import Metric, Param, RunStatus
from mlflow.tracking import MlflowClient
from ray.tune.logger import LoggerCallback
from ray.tune.utils import flatten_dict

from tuning.search.wandb_search import plain
from tuning.tracking.metrics import trial_metrics
from tuning.tracking.scoped_env import scoped_env


def mlflow_params(config: dict[str, Any]) -> list[Param]:
    """A trial config as MLflow params under medtune's names (``optim/lr``), values as text."""
    return [Param(key, str(plain(value))) for key, value in flatten_dict(config, delimiter="/").items()]


class MlflowTrialCallback(LoggerCallback):
    """One MLflow run per trial in ``experiment`` (created when missing), tagged with ``tags``.

    MLflow 3 opens a ``file:`` store only with ``MLFLOW_ALLOW_FILE_STORE=true``; with ``local``, it
    is set while the client opens the store at setup and restored after (the client keeps the
    opened store)."""

    def __init__(self, *, tracking_uri: str, experiment_name: str, tags: dict[str, str],
                 local: bool) -> None:
        self.tracking_uri, self.experiment_name = tracking_uri, experiment_name
        self.tags, self.local = dict(tags), local
        self._client: MlflowClient | None = None
        self._experiment_id = ""
        self._runs: dict[str, str] = {}  # trial id -> MLflow run id

    def setup(self, *args: Any, **kwargs: Any) -> None:
        with scoped_env("MLFLOW_ALLOW_FILE_STORE", "true" if self.local else None):
            self._client = MlflowClient(tracking_uri=self.tracking_uri)
            found = self._client.get_experiment_by_name(self.experiment_name)
            self._experiment_id = (found.experiment_id if found is not None
                                   else self._client.create_experiment(self.experiment_name))

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self.setup()
        return self._client

    def log_trial_start(self, trial: Any) -> None:
        if trial.trial_id in self._runs:  # a restored trial keeps its run
            return
        run = self.client.create_run(self._experiment_id, run_name=str(trial),
                                     tags={**self.tags, "trial_name": str(trial)})
        self._runs[trial.trial_id] = run.info.run_id
        self.client.log_batch(run.info.run_id, params=mlflow_params(trial.config))

    def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
        run_id = self._runs.get(trial.trial_id)
        if run_id is None:
            return
        step = int(result.get("training_iteration", iteration))
        now = int(time.time() * 1000)
        self.client.log_batch(run_id, metrics=[Metric(key, value, now, step)
                                               for key, value in trial_metrics(result).items()])

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        run_id = self._runs.pop(trial.trial_id, None)
        if run_id is not None:
            status = RunStatus.to_string(RunStatus.FAILED if failed else RunStatus.FINISHED)
            self.client.set_terminated(run_id, status=status)

    def __getstate__(self) -> dict[str, Any]:  # Tune pickles callbacks; a client may not pickle
        return {**self.__dict__, "_client": None}
