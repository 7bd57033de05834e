"""--folds K: grouped, stratified folds over train + val; one model per fold, mean metrics per epoch."""
import json

import numpy as np
import pandas as pd
import pytest

from core.config import TrialConfig
from core.data.folds import assign_folds, cross_validation_arrays
from core.data.prepared import PreparedData
from core.errors import DataError
from core.train import train


def _rows(n_groups=30, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(n_groups):
        label = int(g % 3 == 0)
        rows += [{"id": f"g{g}-{k}", "group": f"g{g}", "label": label} for k in range(rng.integers(1, 3))]
    return pd.DataFrame(rows)


def test_folds_are_grouped_stratified_and_seeded():
    rows = _rows()
    folds = assign_folds(rows, k=5, seed=1)
    assert set(folds) == set(range(5))
    assert (rows.assign(fold=folds).groupby("group")["fold"].nunique() == 1).all()
    positives = rows.assign(fold=folds).drop_duplicates("group").groupby("fold")["label"].sum()
    assert positives.min() >= 1 and positives.max() - positives.min() <= 1
    assert (assign_folds(rows, k=5, seed=1) == folds).all()
    assert (assign_folds(rows, k=5, seed=2) != folds).any()


def test_too_many_folds_for_the_positives_names_the_fix():
    with pytest.raises(DataError, match="at least 11 patients of each class.*fewer folds"):
        assign_folds(_rows(), k=11, seed=0)


def _prepared(n=40):
    rng = np.random.default_rng(0)
    split = np.array(["train"] * 24 + ["val"] * 8 + ["test"] * 8)
    labels = np.tile([0, 1], n // 2)
    splits = pd.DataFrame({"id": [f"c{i}" for i in range(n)], "group": [f"c{i}" for i in range(n)],
                           "label": labels, "split": split})
    x = (rng.normal(size=(n, 1, 6, 6, 6)) + labels[:, None, None, None, None]).astype(np.float16)
    arrays = {f"{name}/{part}": (x if part == "x" else labels)[split == name]
              for name in ("train", "val", "test") for part in ("x", "y")}
    return PreparedData(arrays=arrays, splits=splits)


def test_cross_validation_pools_train_and_val_only():
    arrays = cross_validation_arrays(_prepared(), k=4, seed=0)
    assert len(arrays["train/x"]) == len(arrays["train/y"]) == len(arrays["train/fold"]) == 32
    assert set(arrays) == {"train/x", "train/y", "train/fold"}


def test_training_on_folds_reports_the_mean_of_the_fold_models_each_epoch():
    arrays = cross_validation_arrays(_prepared(), k=3, seed=0)
    cfg = TrialConfig.from_dict({"data/shape": (6, 6, 6), "model/channels": (4, 8), "model/kernel_size": 3,
                                 "model/pool_size": 2, "train/batch_size": 8, "train/max_epochs": 2,
                                 "optim/lr": 1e-2})
    result = train(cfg, arrays, metric="val/auroc", mode="max")
    assert len(result.history) == 2 and len(result.module.folds) == 3
    for epoch in result.history:
        folds = [epoch[f"val/fold{k}/auroc"] for k in range(3)]
        assert epoch["val/auroc"] == pytest.approx(np.mean(folds))
        assert epoch["val/loss"] == pytest.approx(np.mean([epoch[f"val/fold{k}/loss"] for k in range(3)]))
    weights = [next(fold.parameters()).detach() for fold in result.module.folds]
    assert not np.allclose(weights[0].numpy(), weights[1].numpy())


@pytest.mark.slow
def test_a_sweep_with_folds_chooses_by_the_fold_mean_and_still_tests_once(tiny_egfr, tmp_path):
    from core.data.prepared import DataOptions
    from tests.conftest import ensure_ray
    from tuning.config.options import RunOptions
    from tuning.pipeline import run_pipeline
    from tuning.search.settings import SweepSettings

    ensure_ray()
    options = RunOptions(
        space="egfr", data=DataOptions(root=tiny_egfr, cache_dir=tmp_path / "cache"), folds=3,
        sweep=SweepSettings(num_samples=2, max_epochs=2, max_concurrent=2, seed=1),
        overrides={"data/shape": (8, 8, 8), "train/batch_size": 8}, name="folds",
        results_dir=tmp_path / "results", top_k=1, retrain_seeds=1, wandb=False)
    payload = run_pipeline(options)
    folder = options.results_path()
    trial = next((folder / "sweep").glob("trial_*/result.json"))
    first = json.loads(trial.read_text(encoding="utf-8").splitlines()[0])
    folds = [first[f"val/fold{k}/auroc"] for k in range(3)]
    assert first["val/auroc"] == pytest.approx(np.nanmean(folds))
    assert payload["trials"]["total"] == 2 and "auroc" in payload["test"]
