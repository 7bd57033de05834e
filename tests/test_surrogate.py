"""The search benchmark's surrogate: on a synthetic curves table whose best config is known, it
ranks held-out configs, keeps the budget and early stopping, and its noise is seeded."""
import ast
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from search_spaces import get_space
from search_spaces.types import Choice, IntUniform, LogUniform

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from search_methods import narrowed  # noqa: E402
from surrogate import CurveSurrogate, features, reach, validate  # noqa: E402

EGFR = get_space("egfr")


def quality(p):
    """A config's plateau: best near lr 1e-3, worse with much dropout."""
    return 0.9 - 0.08 * (np.log10(p["optim/lr"]) + 3) ** 2 - 0.2 * p["model/dropout"]


def _draw(rng):
    return {"optim/lr": float(10 ** rng.uniform(-5, -2)), "optim/weight_decay": float(10 ** rng.uniform(-6, -2)),
            "train/batch_size": int(rng.choice([8, 16, 32, 64])), "model/dropout": float(rng.uniform(0, 0.6)),
            "model/kernel_size": int(rng.choice([2, 3, 5])), "model/pool_size": int(rng.choice([2, 3])),
            "train/patience": int(rng.integers(5, 31))}


def fake_table(n=40, epochs=20, seed=0):
    """A table shaped as benchmarks/learning_curves.py writes it: config 0 the defaults."""
    rng = np.random.default_rng(seed)
    rows = []
    for config in range(n):
        p = {k: EGFR.fixed[k] for k in EGFR.search} if config == 0 else _draw(rng)
        stop = min(epochs, 4 + p["train/patience"] // 2)
        e = np.arange(1, stop + 1)
        metric = 0.5 + (quality(p) - 0.5) * (1 - np.exp(-e / 4)) + rng.normal(0, 0.01, stop)
        rows.append(pd.DataFrame({"epoch": e, "metric": metric, "val_loss": 0.7 - 0.2 * (1 - np.exp(-e / 4)),
                                  "seconds": 0.01 * p["train/batch_size"], "config": config,
                                  "kind": "defaults" if config == 0 else "random",
                                  **{f"param/{k}": v for k, v in p.items()}}))
    return pd.concat(rows, ignore_index=True)


@pytest.fixture(scope="module")
def table():
    return fake_table()


def test_features_put_log_params_on_a_log_scale_and_choices_one_hot():
    low = {**{k: EGFR.fixed[k] for k in EGFR.search}, "optim/lr": 1e-5, "optim/weight_decay": 0.0}
    high = {**low, "optim/lr": 1e-2, "train/batch_size": 64}
    mid = {**low, "optim/lr": 10 ** -3.5, "train/batch_size": "64"}  # as read back from a CSV
    x = features(EGFR, [low, high, mid])
    assert x.shape == (3, 1 + 1 + 4 + 1 + 3 + 2 + 1)
    assert x[:, 0] == pytest.approx([0.0, 1.0, 0.5])  # lr: log scale
    assert x[0, 1] == 0.0  # weight decay 0 clipped to the range's low end
    assert list(x[0, 2:6]) == [0, 0, 1, 0] and list(x[1, 2:6]) == list(x[2, 2:6]) == [0, 0, 0, 1]


def test_held_out_configs_are_ranked_better_than_by_the_mean(table):
    result = validate(EGFR, table, folds=4, trees=40)
    assert result["configs"] == 40
    assert result["spearman"] > 0.6
    assert result["mae"] < 0.8 * result["mae_mean_baseline"]
    assert result["stop_mae_epochs"] < 3


def test_a_sample_is_seeded_within_the_budget_and_keeps_early_stopping(table):
    surrogate = CurveSurrogate(EGFR, table, trees=40)
    params = {k: EGFR.fixed[k] for k in EGFR.search}
    one, again = surrogate.sample(params, seed=1), surrogate.sample(params, seed=1)
    assert np.array_equal(one.metric, again.metric) and one.stop == again.stop
    draws = {tuple(surrogate.sample(params, seed=s).metric.round(6)) for s in range(6)}
    assert len(draws) > 1  # seeds differ
    for patience in (5, 30):
        curve = surrogate.sample({**params, "train/patience": patience}, seed=0)
        assert 1 <= curve.stop <= 20 and len(curve.metric) == len(curve.val_loss) == curve.stop
        assert ((curve.metric >= 0) & (curve.metric <= 1)).all() and curve.seconds > 0
    short, long = surrogate.predict([{**params, "train/patience": 5}, {**params, "train/patience": 30}])
    assert short.stop < long.stop  # the table stops at 4 + patience // 2


@pytest.mark.slow
@pytest.mark.parametrize("method", ["TPE + ASHA (default)", pytest.param("BOHB", marks=pytest.mark.skipif(
    __import__("importlib").util.find_spec("hpbandster") is None, reason='pip install "medtune[bohb]"'))])
def test_medtunes_searcher_runs_in_ray_tune_on_the_surrogate(ray_local, table, method):
    from search_sim import METHODS, run_method

    surrogate = CurveSurrogate(EGFR, table, trees=40)
    log, seconds = run_method(METHODS[method], EGFR, surrogate, seed=0, num_samples=6, max_epochs=9,
                              slots=2)
    assert log["trial"].nunique() == 6 and len(log) <= 6 * 9 and seconds > 0
    seed_point = {k: EGFR.fixed[k] for k in EGFR.search} | {"optim/weight_decay": 1e-6}
    # the seed defaults are a trial of every method (with 2 slots its first report need not come first)
    assert seed_point in [ast.literal_eval(config) for config in log["config"].unique()]
    for _, epochs in log.groupby("trial")["epoch"]:  # a resumed trial continues from a checkpoint
        epochs = list(epochs)
        assert epochs[0] == 1 and all(b <= max(epochs[:i + 1]) + 1 for i, b in enumerate(epochs[1:]))
    assert list(log["best"]) == list(log["metric"].cummax())
    assert list(log["trial_epochs"]) == list(range(1, len(log) + 1))
    assert (log["wall_s"].diff().dropna() > 0).all()


def test_the_table_counts_trial_epochs_to_the_target_and_runs_that_never_reach_it():
    from search_report import method_rows
    from search_sim import anytime

    def log(values):
        return anytime([{"trial": "t", "epoch": i + 1, "metric": v, "seconds": 2.0, "config": "{}"}
                        for i, v in enumerate(values)], slots=2)

    logs = {"a": {0: log([0.5, 0.9, 0.7]), 1: log([0.95, 0.6]), 2: log([0.6, 0.7, 0.8, 0.91])},
            "b": {0: log([0.5, 0.6]), 1: log([0.7, 0.8])}}
    table = method_rows(logs, target=0.9).set_index("method")
    assert table.loc["a", "trial-epochs to target"] == "2 [2, 3]"  # median [q1, q3] of 2, 1, 4: 1.5 -> 2
    assert table.loc["a", "sim. wall s to target"] == "2 [2, 3]"  # 2 s per epoch on 2 slots
    assert table.loc["a", "never reached"] == 0 and table.loc["b", "never reached"] == 2
    assert table.loc["b", "trial-epochs to target"].startswith("never")
    assert table.loc["a", "best val found"] == "0.9100 [0.9050, 0.9300]"
    within = method_rows(logs, target=0.9, budget=2).set_index("method")["best val within 2 trial-epochs"]
    assert within["a"] == "0.9000 [0.8000, 0.9250]"  # best of the first 2 epochs: 0.9, 0.95, 0.7


def test_the_reach_profile_counts_configs_that_reach_a_target_and_when():
    def curve(config, values):
        return pd.DataFrame({"config": config, "epoch": range(1, len(values) + 1), "metric": values})

    table = pd.concat([curve(0, [0.5, 0.8, 0.96]), curve(1, [0.97]), curve(2, [0.6, 0.7, 0.7, 0.7])])
    profile = reach(table, 0.95)
    assert profile["configs_reaching"] == "2 of 3" and profile["share"] == pytest.approx(2 / 3)
    assert profile["median_first_epoch"] == 2.0  # epochs 3 and 1
    assert profile["median_stop_epoch_of_misses"] == 4.0


def test_a_narrowed_range_keeps_each_distributions_kind():
    space = narrowed(EGFR, {"optim/lr": ["3e-4", "1e-2"], "train/patience": [5, 9],
                            "train/batch_size": [16, 32]})
    assert space.search["optim/lr"] == LogUniform(3e-4, 1e-2)
    assert space.search["train/patience"] == IntUniform(5, 9)
    assert space.search["train/batch_size"] == Choice((16, 32))
    assert space.search["model/dropout"] == EGFR.search["model/dropout"] and space.fixed == EGFR.fixed
    with pytest.raises(ValueError, match="does not search"):
        narrowed(EGFR, {"optim/momentum": [0.1, 0.9]})


def test_importing_the_search_benchmark_leaves_tunes_result_files_on():
    # this module imported search_methods: every later sweep of the process still writes them
    assert os.environ.get("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS") != "1"
