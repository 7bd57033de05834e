"""A 2-trial sweep end to end: data, Tune, retrain, test, and every results file."""
import json

import pandas as pd
import pytest

from core.data.prepared import DataOptions
from tests.conftest import ensure_ray
from tuning.config.options import RunOptions
from tuning.pipeline import run_pipeline
from tuning.search.settings import SweepSettings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finished_run(tiny_egfr, tmp_path_factory):

    ensure_ray()
    tmp = tmp_path_factory.mktemp("run")
    options = RunOptions(
        space="egfr",
        data=DataOptions(root=tiny_egfr, cache_dir=tmp / "cache"),
        sweep=SweepSettings(num_samples=2, max_epochs=2, max_concurrent=2, seed=1),
        overrides={"data/shape": (16, 16, 16), "train/batch_size": 8},
        name="tiny", results_dir=tmp / "results", top_k=1, retrain_seeds=2, wandb=False)
    payload = run_pipeline(options)
    return payload, options.results_path()


def test_every_results_file_is_written(finished_run):
    _, folder = finished_run
    for name in ["trials.csv", "splits.csv", "leaderboard.csv", "summary.json",
                 "best/model.pt", "best/config.json", "best/threshold.json"]:
        assert (folder / name).is_file(), name


def test_trials_csv_has_one_row_per_trial_with_its_config(finished_run):
    _, folder = finished_run
    trials = pd.read_csv(folder / "trials.csv")
    assert len(trials) == 2
    assert {"trial_id", "status", "epochs", "best_val/auroc", "last_val/auroc", "wall_time_s",
            "optim/lr", "model/kernel_size"} <= set(trials.columns)
    assert set(trials["status"]) <= {"completed", "early_stopped", "scheduler_stopped"}
    assert trials["epochs"].between(1, 2).all()
    assert (trials["best_val/auroc"] >= trials["last_val/auroc"]).all()


def test_summary_holds_test_metrics_with_intervals(finished_run):
    payload, folder = finished_run
    saved = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    assert saved["space"] == "egfr" and saved["selection_metric"] == "val/auroc"
    auroc = saved["test"]["auroc"]
    if auroc["ci_low"] is None:  # the phantom's small test split: honest, not faked
        assert auroc["method"].startswith("undefined") and min(auroc["n_groups"].values()) < 2
    else:
        assert auroc["ci_low"] <= auroc["value"] <= auroc["ci_high"]
    # the test rows' groups reached the evaluation; the config's spread over seeds sits beside
    splits = pd.read_csv(folder / "splits.csv")
    test = splits[splits["split"] == "test"]
    assert auroc["unit"] == "patient" and auroc["method"]  # the egfr task resamples patients
    assert auroc["n_groups"] == {"0": int((test.groupby("group")["label"].min() == 0).sum()),
                                 "1": int(test.groupby("group")["label"].max().sum())}
    assert auroc["over_seeds"]["n_seeds"] == 2
    assert saved["chosen_seed"] in (1001, 1002)  # retrain seeds: run seed + 1000 + i
    assert saved["trials"]["total"] == 2
    assert saved["chosen_config"]["data/shape"] == [16, 16, 16]


def test_leaderboard_has_mean_and_sd_over_seeds(finished_run):
    _, folder = finished_run
    board = pd.read_csv(folder / "leaderboard.csv")
    assert len(board) == 1 and board.loc[0, "seeds"] == 2
    assert {"val/auroc_mean", "val/auroc_sd", "test/auroc_mean_over_seeds",
            "test/auroc_sd_over_seeds", "rep_seed"} <= set(board.columns)
    assert not [c for c in board if "ci_" in c]


def test_splits_keep_test_out_of_the_sweep(finished_run):
    _, folder = finished_run
    splits = pd.read_csv(folder / "splits.csv")
    assert set(splits["split"]) == {"train", "val", "test"}
    assert splits.groupby("group")["split"].nunique().max() == 1
