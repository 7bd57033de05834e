"""report.md and its plots: a tiny egfr run end to end, and the pieces on synthetic data."""
import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from core.data.prepared import DataOptions
from search_spaces import get_space
from search_spaces.types import choice, loguniform, randint, uniform
from tests.conftest import ensure_ray
from tuning.config.options import RunOptions
from tuning.results import plots
from tuning.results.analysis import (
    Skipped,
    best_so_far,
    choice_label,
    number,
    param_importance,
    search_methods,
)
from tuning.results.report import final_sections, write_report
from tuning.search.settings import SweepSettings

SWEEP_PLOTS = ["best_so_far.png", "parameters.png", "importance.png", "stopping.png",
               "learning_curves.png"]
CLASSIFICATION_PLOTS = ["test_roc_pr.png", "test_confusion.png"]


def tiny_options(root, tmp, *, name: str, num_samples: int = 4) -> RunOptions:
    """A few-second egfr sweep on the 40-case phantom: 16^3 volumes, 2 epochs, 1 retrain."""
    return RunOptions(
        space="egfr", data=DataOptions(root=root, cache_dir=tmp / "cache"),
        sweep=SweepSettings(num_samples=num_samples, max_epochs=2, max_concurrent=2, seed=1),
        # the seed's margin-box resize, not 1.25 mm resampling: tiny tumour crops all score AUROC 1,
        # and the importance plot needs trials that differ
        overrides={"data/shape": (16, 16, 16), "data/spacing": None, "train/batch_size": 8}, name=name,
        results_dir=tmp / "results", top_k=1, retrain_seeds=1, wandb=False)


def run_tiny(options: RunOptions):
    """Run the whole pipeline (Ray as in test_pipeline); the results folder and test labels."""

    from tuning.pipeline import prepare_data, run_pipeline

    ensure_ray()
    run_pipeline(options)
    data = prepare_data(get_space("egfr"), options)  # a cache hit: the labels the run tested on
    return options.results_path(), np.asarray(data.arrays["test/y"])


def assert_real_png(path, *, min_size=(300, 200)):
    """A readable PNG of at least ``min_size`` (width, height) pixels that is not blank."""
    image = imread(path)
    height, width = image.shape[:2]
    assert width >= min_size[0] and height >= min_size[1], (path, image.shape)
    assert image[..., :3].std() > 0.02, f"{path} looks blank"


@pytest.fixture(scope="module")
def reported(tiny_egfr, tmp_path_factory):
    return run_tiny(tiny_options(tiny_egfr, tmp_path_factory.mktemp("report"), name="tiny-report"))


@pytest.mark.slow
def test_report_links_every_plot_as_a_real_png(reported):
    folder, _ = reported
    text = (folder / "report.md").read_text(encoding="utf-8")
    for name in SWEEP_PLOTS + CLASSIFICATION_PLOTS:
        assert f"](plots/{name})" in text, name
        assert_real_png(folder / "plots" / name)
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert all((folder / link).is_file() for link in linked)
    assert "## Notes" not in text and "Not drawn" not in text


@pytest.mark.slow
def test_report_states_the_selection_protocol(reported):
    folder, _ = reported
    text = (folder / "report.md").read_text(encoding="utf-8")
    for phrase in ["## Selection protocol", "Sweep on train/val only", "**val** split",
                   "`optim/lr` | log-uniform on [1e-05, 0.01]",
                   "`model/kernel_size` | one of `2`, `3`, `5`",
                   "`train/patience` | integer, uniform on [5, 30]",
                   "Fixed for this run, not searched: `train/batch_size` = 8",
                   "top 1 distinct configs", "1 seed(s) each (1001;", "best mean `val/auroc`",
                   "Youden's J", "Test read once", "## Leaderboard", "95 % CI",
                   "### What these numbers mean", "(seed 1, also every trial's training seed)"]:
        assert phrase in text, phrase


@pytest.mark.slow
def test_report_numbers_match_the_results_files(reported):
    folder, _ = reported
    text = (folder / "report.md").read_text(encoding="utf-8")
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    trials = pd.read_csv(folder / "trials.csv")
    assert f"**Sweep**: {len(trials)} trials" in text
    assert f"{int(trials['epochs'].sum())} trial-epochs" in text
    for name, stat in summary["test"].items():  # a metric undefined on tiny test data reads n/a
        value, low, high = (number(stat[k]) for k in ("value", "ci_low", "ci_high"))
        assert f"| {name} | {value} | [{low}, {high}] |" in text


@pytest.mark.slow
def test_a_failing_plot_is_noted_and_the_rest_still_drawn(reported, tmp_path, monkeypatch):
    folder, labels = reported
    copy = shutil.copytree(folder, tmp_path / "copy")
    shutil.rmtree(copy / "plots")

    def broken(*args, **kwargs):
        raise RuntimeError("no ink")

    monkeypatch.setattr(plots, "plot_importance", broken)
    text = write_report(copy, space=get_space("egfr"), test_labels=labels).read_text(encoding="utf-8")
    assert "## Notes" in text and "The importance plot failed: RuntimeError: no ink" in text
    assert not (copy / "plots" / "importance.png").exists()
    for name in ["best_so_far.png", "test_roc_pr.png"]:
        assert_real_png(copy / "plots" / name)


def _history(trial_id, values, start):
    return pd.DataFrame({"trial_id": trial_id, "training_iteration": range(1, len(values) + 1),
                         "timestamp": [start + 10 * i for i in range(len(values))],
                         "time_total_s": [10.0 * (i + 1) for i in range(len(values))],
                         "val/auroc": values})


@pytest.mark.parametrize("mode,best", [("max", [0.5, 0.6, 0.6, 0.6, 0.9]),
                                       ("min", [0.5, 0.5, 0.4, 0.4, 0.4])])
def test_best_so_far_counts_trial_epochs_in_time_order(mode, best):
    histories = {"a": _history("a", [0.5, 0.4, 0.9], start=0),   # epochs at t = 0, 10, 20
                 "b": _history("b", [0.6, 0.45], start=5)}        # epochs at t = 5, 15
    curve = best_so_far(histories, metric="val/auroc", mode=mode)
    assert list(curve["trial_epoch"]) == [1, 2, 3, 4, 5]
    assert list(curve["trial_id"]) == ["a", "b", "a", "b", "a"]
    assert list(curve["best"]) == best


@pytest.mark.parametrize("value,label", [(16, "16"), ("16", "16"), (16.0, "16"), (0.5, "0.5"),
                                         ((16, 32, 64), "16-32-64"), ("(16, 32, 64)", "16-32-64"),
                                         ("[16, 32, 64]", "16-32-64"),
                                         ("densenet121", "densenet121")])
def test_choice_label_matches_saved_and_declared_values(value, label):
    assert choice_label(value) == label


SPACE = {"optim/lr": loguniform(1e-5, 1e-2), "model/dropout": uniform(0.0, 0.5),
         "train/patience": randint(5, 30), "model/channels": choice((8, 16), (16, 32))}


def _trials(n, seed=0):
    rng = np.random.default_rng(seed)
    lr = 10 ** rng.uniform(-5, -2, n)
    return pd.DataFrame({"trial_id": [f"t{i}" for i in range(n)], "status": "completed",
                         "best_val/auroc": 0.5 + 0.1 * np.log10(lr) + 0.6,
                         "optim/lr": lr, "model/dropout": rng.uniform(0, 0.5, n),
                         "train/patience": rng.integers(5, 31, n),
                         "model/channels": rng.choice(["(8, 16)", "(16, 32)"], n)})


def test_fanova_finds_the_parameter_that_drives_the_metric():
    scores = param_importance(_trials(12), SPACE, metric="val/auroc", mode="max")
    assert set(scores) == set(SPACE) and abs(sum(scores.values()) - 1) < 1e-6
    assert max(scores, key=scores.get) == "optim/lr"


def test_fanova_with_too_few_trials_gives_a_reason():
    with pytest.raises(Skipped, match="only 3 finished trials"):
        param_importance(_trials(3), SPACE, metric="val/auroc", mode="max")


def test_search_methods_default_to_tpe_and_asha():
    assert search_methods({"sweep": {"num_samples": 4}}) == ("tpe", "asha")
    assert search_methods({"sweep": {"search": "random", "scheduler": "fifo"}}) == ("random", "fifo")


def test_segmentation_final_sections_embed_overlays_and_a_dice_histogram(tmp_path):
    from tuning.results.overlays import save_overlays

    rng = np.random.default_rng(0)
    masks = np.zeros((8, 32, 32), np.uint8)
    masks[:, 8:24, 8:24] = 1
    probs = np.clip(masks + rng.normal(0, 0.4, masks.shape), 0, 1).astype(np.float32)
    (tmp_path / "best").mkdir()
    (tmp_path / "best" / "threshold.json").write_text(json.dumps({"threshold": 0.5}))
    np.savez(tmp_path / "best" / "predictions.npz", val=probs, test=probs)
    save_overlays(tmp_path / "overlays", rng.uniform(0, 1, (8, 1, 32, 32)), masks, probs, n=2)
    notes = []
    text = "\n".join(final_sections(tmp_path, test_labels=masks, segmentation=True, notes=notes))
    assert notes == []
    assert "](overlays/overlay_0000.png)" in text and "](overlays/overlay_0007.png)" in text
    assert "](plots/dice_hist.png)" in text
    assert_real_png(tmp_path / "plots" / "dice_hist.png")
