"""Tracking that needs a switch from the environment sets it only while it needs it."""
import os

import pytest

from tuning.tracking.callbacks import local_mlflow_uri, mlflow_callbacks
from tuning.tracking.scoped_env import scoped_env


def test_scoped_env_restores_what_was_there(monkeypatch):
    monkeypatch.setenv("MEDTUNE_PROBE", "before")
    monkeypatch.delenv("MEDTUNE_ABSENT", raising=False)
    with scoped_env("MEDTUNE_PROBE", "inside"), scoped_env("MEDTUNE_ABSENT", "inside"):
        assert os.environ["MEDTUNE_PROBE"] == os.environ["MEDTUNE_ABSENT"] == "inside"
    assert os.environ["MEDTUNE_PROBE"] == "before" and "MEDTUNE_ABSENT" not in os.environ


@pytest.mark.slow
def test_a_local_mlflow_store_logs_every_trial_and_leaves_the_environment(ray_local, tmp_path,
                                                                        monkeypatch):
    from mlflow.tracking import MlflowClient
    from ray import tune

    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    uri = local_mlflow_uri(tmp_path)
    [callback] = mlflow_callbacks(uri=uri, experiment="probe", job_type="trial")

    def trainable(config):
        for step in range(2):
            tune.report({"score": config["x"] * step})

    tune.Tuner(trainable, param_space={"x": tune.grid_search([1, 2])},
               run_config=tune.RunConfig(storage_path=str(tmp_path / "ray"), callbacks=[callback],
                                         verbose=0)).fit()
    assert "MLFLOW_ALLOW_FILE_STORE" not in os.environ
    with scoped_env("MLFLOW_ALLOW_FILE_STORE", "true"):
        client = MlflowClient(tracking_uri=uri)
        runs = client.search_runs([client.get_experiment_by_name("probe").experiment_id])
    assert sorted(run.data.metrics["score"] for run in runs) == [1.0, 2.0]
    assert {run.data.tags["job_type"] for run in runs} == {"trial"}
    assert sorted(run.data.params["x"] for run in runs) == ["1", "2"]
    assert all(run.info.status == "FINISHED" for run in runs)
    history = client.get_metric_history(runs[0].info.run_id, "score")
    assert [point.step for point in history] == [1, 2]  # one batch per report, step = iteration
