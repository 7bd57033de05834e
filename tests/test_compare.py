"""python -m tuning.compare: finished runs side by side (table, budget notes, anytime curves against
trial-epochs and wall time), never ranked by test metrics, and a clear error for a bad folder."""
import json
import shutil

import pandas as pd
import pytest
from matplotlib.image import imread

from tests.test_report import assert_real_png, run_tiny, tiny_options
from tuning.results.analysis import best_so_far
from tuning.results.compare import main

SEARCHED = ["optim/lr", "model/dropout"]


def fake_run(root, name, *, vals, test_auroc, search="tpe", num_samples=2, seed=1,
             fingerprint="egfr-aaaa", epoch_s=10.0, options=True):
    """A finished run's folder as a run writes it: summary.json, trials.csv, run_options.json and
    sweep/trial_*/progress.csv; ``vals`` holds each trial's val AUROC per epoch, trials started
    5 s apart, each epoch ``epoch_s`` long."""
    folder = root / name
    t0 = 1_800_000_000
    trials = []
    for i, values in enumerate(vals):
        trial_id = f"{name[-1]}{i:07d}"
        total = [epoch_s * (e + 1) for e in range(len(values))]
        frame = pd.DataFrame({"val/auroc": values, "epoch": range(1, len(values) + 1),
                              "training_iteration": range(1, len(values) + 1),
                              "time_total_s": total,
                              "timestamp": [int(t0 + 5 * i + t) for t in total], "trial_id": trial_id})
        (folder / "sweep" / f"trial_{trial_id}").mkdir(parents=True)
        frame.to_csv(folder / "sweep" / f"trial_{trial_id}" / "progress.csv", index=False)
        trials.append({"trial_id": trial_id, "status": "completed", "epochs": len(values),
                       "best_val/auroc": max(values), "optim/lr": 1e-3, "model/dropout": 0.1})
    pd.DataFrame(trials).to_csv(folder / "trials.csv", index=False)
    sweep = {"num_samples": num_samples, "max_epochs": 3, "seed": seed, "grace_period": 0,
             "reduction_factor": 3, "time_budget_s": None, "search": search, "scheduler": "auto"}
    best = max(max(v) for v in vals)
    summary = {"space": "egfr", "selection_metric": "val/auroc", "mode": "max",
               "val": {"val/auroc": best}, "searched": SEARCHED, "wall_time_s": 120.0,
               "trials": {"total": len(vals), "completed": len(vals),
                          "trial_epochs": sum(map(len, vals))},
               "test": {"auroc": {"value": test_auroc, "ci_low": test_auroc - 0.2,
                                  "ci_high": min(test_auroc + 0.1, 1.0)}},
               "settings": {"sweep": sweep, "data": {"cache_key": fingerprint}}}
    (folder / "summary.json").write_text(json.dumps(summary))
    if options:
        payload = {"space": "egfr", "sweep": sweep, "folds": 0, "data_fingerprint": fingerprint,
                   "overrides": {"train/batch_size": 8}, "data": {"root": None}}
        (folder / "run_options.json").write_text(json.dumps(payload))
    return folder


def test_anytime_curves_run_against_trial_epochs_and_wall_time(tmp_path):
    """Trial a starts at 0 s, trial b 5 s later; 10 s epochs: epochs end at 10, 15, 20, 25, 30 s."""
    run = fake_run(tmp_path, "run-a", vals=[[0.5, 0.4, 0.9], [0.6, 0.45]], test_auroc=0.7)
    from tuning.results.analysis import read_histories

    curve = best_so_far(read_histories(run / "sweep"), metric="val/auroc", mode="max")
    assert list(curve["trial_epoch"]) == [1, 2, 3, 4, 5]
    assert list(curve["wall_s"]) == pytest.approx([10, 15, 20, 25, 30])
    assert list(curve["best"]) == [0.5, 0.6, 0.6, 0.6, 0.9]


def test_compare_draws_two_panels_one_line_per_run(tmp_path, capsys):
    runs = [fake_run(tmp_path, "run-a", vals=[[0.5, 0.7], [0.6, 0.65]], test_auroc=0.7),
            fake_run(tmp_path, "run-b", vals=[[0.55, 0.8], [0.5, 0.6]], test_auroc=0.6,
                     search="random", epoch_s=30.0)]
    assert main([*map(str, runs), "--out", str(tmp_path / "cmp")]) == 0
    png = tmp_path / "cmp" / "compare.png"
    assert_real_png(png, min_size=(1200, 400))  # two panels side by side
    height, width = imread(png).shape[:2]
    assert width > 2 * height
    text = (tmp_path / "cmp" / "compare.md").read_text(encoding="utf-8")
    assert "](compare.png)" in text and "trial-epochs and wall time" in text


def test_budget_notes_name_each_setting_that_differs(tmp_path, capsys):
    runs = [fake_run(tmp_path, "run-a", vals=[[0.5, 0.7]], test_auroc=0.7),
            fake_run(tmp_path, "run-b", vals=[[0.6, 0.8]], test_auroc=0.6, num_samples=5,
                     fingerprint="egfr-bbbb", search="random", seed=2)]
    assert main([*map(str, runs), "--out", str(tmp_path / "cmp")]) == 0
    text = (tmp_path / "cmp" / "compare.md").read_text(encoding="utf-8")
    assert "**Budgets differ** in num_samples, data: not a like-for-like comparison." in text
    assert "- num_samples: run-a: 2, run-b: 5" in text
    assert "- data: run-a: fingerprint egfr-aaaa, run-b: fingerprint egfr-bbbb" in text
    assert "- search: run-a: tpe, run-b: random" in text
    assert "Seeds: run-a: 1, run-b: 2" in text
    assert "**Budgets differ**" in capsys.readouterr().out  # on stdout too


def test_matching_budgets_are_said_to_match_and_the_methods_named(tmp_path):
    runs = [fake_run(tmp_path, "run-a", vals=[[0.5, 0.7]], test_auroc=0.7),
            fake_run(tmp_path, "run-b", vals=[[0.6, 0.8]], test_auroc=0.6, search="random")]
    assert main([*map(str, runs), "--out", str(tmp_path / "cmp")]) == 0
    text = (tmp_path / "cmp" / "compare.md").read_text(encoding="utf-8")
    assert "**Budgets match**" in text and "num_samples 2" in text and "fingerprint egfr-aaaa" in text
    assert "Methods differ in search:" in text and "Same seed in every run: 1." in text
    assert "**Budgets differ**" not in text


def test_a_run_without_saved_options_cannot_be_said_to_match(tmp_path):
    runs = [fake_run(tmp_path, "run-a", vals=[[0.5, 0.7]], test_auroc=0.7),
            fake_run(tmp_path, "run-b", vals=[[0.6, 0.8]], test_auroc=0.6, options=False)]
    assert main([*map(str, runs), "--out", str(tmp_path / "cmp")]) == 0
    text = (tmp_path / "cmp" / "compare.md").read_text(encoding="utf-8")
    assert "**Budgets differ** in folds, overrides" in text and "run-b: unknown" in text


@pytest.mark.parametrize("order,expected", [("given", ["run-a", "run-b", "run-c"]),
                                            ("val", ["run-b", "run-c", "run-a"])])
def test_rows_are_never_ranked_by_test_metrics(tmp_path, order, expected):
    """run-a has the best test AUROC and the worst val: it is never put first for its test."""
    runs = [fake_run(tmp_path, "run-a", vals=[[0.5, 0.6]], test_auroc=0.95),
            fake_run(tmp_path, "run-b", vals=[[0.6, 0.9]], test_auroc=0.55),
            fake_run(tmp_path, "run-c", vals=[[0.7, 0.8]], test_auroc=0.75)]
    assert main([*map(str, runs), "--out", str(tmp_path / "cmp"), "--order", order]) == 0
    assert list(pd.read_csv(tmp_path / "cmp" / "compare.csv")["name"]) == expected
    text = (tmp_path / "cmp" / "compare.md").read_text(encoding="utf-8")
    rows = [line.split(" | ")[0].strip("| ") for line in text.splitlines() if line.startswith("| run-")]
    assert rows == expected
    assert "information only" in text and "must not be used to choose" in text


@pytest.fixture(scope="module")
def two_runs(tiny_egfr, tmp_path_factory):
    """One tiny sweep, and a copy of it under another name with its method renamed."""
    tmp = tmp_path_factory.mktemp("compare")
    first, _ = run_tiny(tiny_options(tiny_egfr, tmp, name="tiny-a", num_samples=3))
    second = shutil.copytree(first, first.parent / "tiny-b")
    options = json.loads((second / "run_options.json").read_text(encoding="utf-8"))
    options["sweep"]["search"] = "random"
    (second / "run_options.json").write_text(json.dumps(options))
    return first, second


@pytest.mark.slow
def test_compare_writes_one_row_per_run_and_one_plot(two_runs, tmp_path, capsys):
    first, second = two_runs
    assert main([str(first), str(second), "--out", str(tmp_path / "cmp")]) == 0
    table = pd.read_csv(tmp_path / "cmp" / "compare.csv")
    assert list(table["name"]) == ["tiny-a", "tiny-b"]
    assert list(table["search"]) == ["tpe", "random"] and set(table["scheduler"]) == {"asha"}
    assert (table["trials"] == 3).all() and (table["trial_epochs"] > 0).all()
    assert {"test/auroc", "test/auroc_ci_low", "test/auroc_ci_high"} <= set(table.columns)
    text = (tmp_path / "cmp" / "compare.md").read_text(encoding="utf-8")
    assert "| tiny-a | egfr | tpe | asha | 3 |" in text and "| tiny-b | egfr | random | asha | 3 |" in text
    assert "](compare.png)" in text
    assert_real_png(tmp_path / "cmp" / "compare.png")
    assert "tiny-a" in capsys.readouterr().out


def test_compare_rejects_a_folder_that_is_not_a_finished_run(tmp_path, capsys):
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "trials.csv").write_text("trial_id,status\n")
    assert main([str(unfinished), "--out", str(tmp_path / "cmp")]) == 2
    err = capsys.readouterr().err
    assert f"missing {unfinished / 'summary.json'}" in err
    assert not (tmp_path / "cmp").exists()


def test_compare_names_a_folder_that_does_not_exist(tmp_path, capsys):
    assert main([str(tmp_path / "nowhere"), "--out", str(tmp_path / "cmp")]) == 2
    assert "nowhere is not a folder" in capsys.readouterr().err
