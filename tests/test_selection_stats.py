"""One score per trial, one seed story, and reports that keep the chosen model's intervals apart."""
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from core.evaluate import evaluate_predictions
from core.metrics import SCORE, VAL_AUROC
from core.train import BestWeights
from search_spaces import get_space
from tuning.config.options import RunOptions
from tuning.results.outputs import format_summary, summary
from tuning.results.report import leaderboard_lines, protocol_lines, summary_lines
from tuning.search.retrain import RetrainRun, chosen_run, leaderboard, retrain_seeds, split_groups
from tuning.search.searchers import tune_metric
from tuning.search.settings import SweepSettings
from tuning.search.trainable import best_so_far

EGFR = get_space("egfr")


def test_the_reported_score_is_the_best_so_far_of_the_metric():
    best = BestWeights(VAL_AUROC, "max")
    module = SimpleNamespace(state_dict=lambda: {})
    seen = []
    for value in [0.6, 0.8, 0.7]:
        trainer = SimpleNamespace(sanity_checking=False, current_epoch=len(seen),
                                  callback_metrics={VAL_AUROC: value}, callbacks=[best])
        best.on_validation_end(trainer, module)
        seen.append(best_so_far(trainer))
    assert seen == [0.6, 0.8, 0.8]
    assert math.isnan(best_so_far(SimpleNamespace(callbacks=[])))


def test_searcher_scheduler_and_tune_rank_by_the_score():
    assert tune_metric(EGFR, SweepSettings(search="tpe", scheduler="asha")) == SCORE
    assert tune_metric(EGFR, SweepSettings(search="random", scheduler="none")) == SCORE
    # W&B's hyperband takes the best of the raw metric's history itself
    assert tune_metric(EGFR, SweepSettings(search="wandb-bayes", scheduler="auto")) == EGFR.metric


def test_retrain_seeds_never_repeat_the_sweeps_seed():
    assert retrain_seeds(42, 3) == [1042, 1043, 1044]
    assert 42 not in retrain_seeds(42, 50)


def test_split_groups_follow_the_test_rows_in_order():
    splits = pd.DataFrame({"id": list("abcde"), "group": ["p1", "p2", "p1", "p3", "p3"],
                           "split": ["test", "train", "test", "val", "test"]})
    assert list(split_groups(splits)) == ["p1", "p1", "p3"]


def test_evaluation_resamples_the_groups_it_is_given():
    rng = np.random.default_rng(0)
    y = np.repeat(rng.integers(0, 2, 30), 4)
    p = 0.3 * y + 0.6 * np.repeat(rng.random(30), 4) + 0.1 * rng.random(len(y))  # patient effect
    kw = dict(val_y=y, val_p=p, test_y=y, test_p=p, segmentation=False, n_boot=500)
    grouped = evaluate_predictions(**kw, groups=np.repeat(np.arange(30), 4), unit="patient")
    rows = evaluate_predictions(**kw)
    assert grouped["test"]["auroc"]["unit"] == "patient" and rows["test"]["auroc"]["unit"] == "case"
    unnamed = evaluate_predictions(**kw, groups=np.repeat(np.arange(30), 4))
    assert unnamed["test"]["auroc"]["unit"] == "group"
    assert sum(grouped["test"]["auroc"]["n_groups"].values()) == 30
    width = {k: v["test"]["auroc"]["ci_high"] - v["test"]["auroc"]["ci_low"]
             for k, v in (("grouped", grouped), ("rows", rows))}
    assert width["grouped"] > 1.3 * width["rows"]


def run(rank, seed, val, auroc):
    stat = {"value": auroc, "ci_low": auroc - 0.1, "ci_high": auroc + 0.05,
            "method": "bootstrap, stratified, t on the logit scale", "unit": "patient",
            "n_groups": {"0": 20, "1": 6}, "n_boot": 2000, "few_positives": True}
    return RetrainRun(rank=rank, seed=seed, config={"optim/lr": 1e-3 * (rank + 1)}, val_score=val,
                      evaluation={"threshold": 0.5, "test": {"auroc": stat}}, checkpoint_dir=Path("."))


RUNS = [run(0, 1042, 0.80, 0.70), run(0, 1043, 0.78, 0.74),
        run(1, 1042, 0.70, 0.90), run(1, 1043, 0.72, 0.88)]


def test_leaderboard_names_what_each_number_is_and_holds_no_per_config_interval():
    board = leaderboard(RUNS, metric=VAL_AUROC, mode="max")
    assert list(board["rank"]) == [0, 1]
    assert board.loc[0, "test/auroc_mean_over_seeds"] == pytest.approx(0.72)
    assert board.loc[0, "test/auroc_sd_over_seeds"] == pytest.approx(np.std([0.70, 0.74], ddof=1))
    assert board.loc[0, "rep_seed"] == 1042
    assert not [c for c in board if "ci_" in c]


def test_summary_puts_the_seed_spread_beside_the_chosen_models_interval():
    board = leaderboard(RUNS, metric=VAL_AUROC, mode="max")
    best = chosen_run(RUNS, board, mode="max")
    trials = pd.DataFrame({"status": ["completed"], "epochs": [3]})
    payload = summary(space=EGFR, run=best, trials=trials, board=board, wall_time_s=60.0,
                      settings={}, searched=[])
    auroc = payload["test"]["auroc"]
    assert (auroc["value"], auroc["method"], auroc["unit"]) == (0.70, best.evaluation["test"]["auroc"]["method"], "patient")
    assert auroc["n_groups"] == {"0": 20, "1": 6} and auroc["few_positives"]
    assert auroc["over_seeds"]["mean"] == pytest.approx(0.72) and auroc["over_seeds"]["n_seeds"] == 2
    text = format_summary(payload, Path("results/x"))
    assert "over 2 seeds 0.720 ±" in text and "by patient, 20/6 groups, few positives" in text


def test_report_leads_with_the_chosen_model_and_keeps_finalists_for_audit(tmp_path):
    board = leaderboard(RUNS, metric=VAL_AUROC, mode="max")
    board.to_csv(tmp_path / "leaderboard.csv", index=False)
    lines = "\n".join(leaderboard_lines(tmp_path / "leaderboard.csv", space=EGFR))
    head, audit = lines.split("audit only: choosing on these invalidates the intervals")
    assert "0.890" not in head and "0.720" not in head      # no test numbers beside val
    assert "0.890 ±" in audit and "0.720" not in audit      # only the other finalist's
    best = chosen_run(RUNS, board, mode="max")
    payload = summary(space=EGFR, run=best, trials=pd.DataFrame({"status": ["completed"],
                      "epochs": [3]}), board=board, wall_time_s=60.0, settings={}, searched=[])
    options = RunOptions(space="egfr", sweep=SweepSettings(seed=42), retrain_seeds=2, top_k=2)
    text = "\n".join(summary_lines(payload, space=EGFR, options=options, segmentation=False))
    assert "| auroc | 0.700 | [0.600, 0.750] | 0.720 ±" in text
    assert "### What these numbers mean" in text and "**Few positives**" in text
    assert "(test patients: 20 with a negative, 6 with a positive)" in text
    protocol = "\n".join(protocol_lines(payload, space=EGFR, options=options, segmentation=False))
    assert "(1042, 1043; none is the sweep's" in protocol and "(seed 42, also every trial" in protocol
