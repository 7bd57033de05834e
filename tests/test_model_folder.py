"""best/ is a self-contained model folder: it reloads (weights only) and predicts what the run saved."""
import json
import shutil

import numpy as np
import pytest
import torch

from core.data.prepared import DataOptions
from core.errors import DataError
from core.evaluate import predict
from core.model_folder import load_model_folder
from core.tasks import get_task, prepare
from tests.conftest import ensure_ray
from tuning.config.options import RunOptions
from tuning.search.settings import SweepSettings
from tuning.tracking.callbacks import local_mlflow_uri


@pytest.fixture(scope="module")
def finished_run(tiny_egfr, tmp_path_factory):
    """One tiny egfr run (2 trials, 1 epoch, 1 retrain) tracked in a local MLflow store."""

    from tuning.pipeline import run_pipeline

    ensure_ray()
    tmp = tmp_path_factory.mktemp("model-folder")
    options = RunOptions(
        space="egfr", data=DataOptions(root=tiny_egfr, cache_dir=tmp / "cache"),
        sweep=SweepSettings(num_samples=2, max_epochs=1, max_concurrent=2, seed=1),
        overrides={"data/shape": (16, 16, 16), "train/batch_size": 8},
        name="tiny", results_dir=tmp / "results", top_k=1, retrain_seeds=1, wandb=False)
    options.mlflow = local_mlflow_uri(options.results_path())
    run_pipeline(options)
    return options


@pytest.mark.slow
def test_best_holds_everything_needed_to_use_the_model(finished_run):
    best = finished_run.results_path() / "best"
    info = json.loads((best / "model.json").read_text(encoding="utf-8"))
    assert info["name"] == "tiny" and info["task"] == "egfr"
    assert info["class_names"] == ["Wildtype", "Mutant"]
    assert info["preprocessing"]["shape"] == [16, 16, 16]
    assert info["preprocessing"]["hu_window"] == [-1000.0, 400.0]
    assert set(info["versions"]) >= {"medtune", "torch", "monai", "python"}
    assert info["threshold"] == json.loads((best / "threshold.json").read_text(encoding="utf-8"))["threshold"]
    assert info["training_data"]["n_with_mask"] > 0


@pytest.mark.slow
def test_the_reloaded_model_predicts_the_saved_test_probabilities(finished_run, tmp_path, monkeypatch):
    moved = tmp_path / "elsewhere" / "best"  # alone, away from the sweep's other files
    shutil.copytree(finished_run.results_path() / "best", moved)
    loads = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **kw: loads.append(kw) or real_load(*a, **kw))
    model = load_model_folder(moved)
    assert loads and all(kw.get("weights_only") is True for kw in loads)
    data = prepare(get_task(model.task), model.config.data, finished_run.data, seed=finished_run.sweep.seed)
    with np.load(moved / "predictions.npz") as saved:
        expected = saved["test"]
    assert np.allclose(predict(model.module, data.arrays["test/x"]), expected, atol=1e-5)


@pytest.mark.slow
def test_every_trial_and_retrain_is_an_mlflow_run(finished_run):
    import os

    MlflowClient = pytest.importorskip("mlflow.tracking").MlflowClient

    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=finished_run.mlflow)
    experiment = client.get_experiment_by_name("tiny")
    runs = client.search_runs([experiment.experiment_id])
    kinds = sorted(run.data.tags["job_type"] for run in runs)
    assert kinds == ["retrain", "trial", "trial"]
    assert all("val/auroc" in run.data.metrics for run in runs)


def test_a_pickled_object_is_refused_as_weights(tmp_path):
    from tests.model_folders import EGFR, random_model_folder

    folder = random_model_folder(tmp_path / "run" / "best", EGFR)
    torch.save({"net": torch.nn.Linear(2, 2)}, folder / "model.pt")  # a module, not a state dict
    with pytest.raises(DataError, match="weights only"):
        load_model_folder(folder)


def test_a_folder_without_model_json_names_what_is_missing(tmp_path):
    with pytest.raises(DataError, match="model.json is missing"):
        load_model_folder(tmp_path)
