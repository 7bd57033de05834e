"""Search methods on one budget: W&B's bayes engine as a Ray searcher proposes valid configs, its
hyperband rule stops lagging trials, the exported sweep YAML passes W&B's schema, an Optuna study
can live on disk, and random / W&B / FIFO sweeps run end to end in Ray Tune."""
import importlib.util
import math
import sys

import numpy as np
import pytest
import yaml

from core.config import TrialConfig
from core.data.prepared import DataOptions
from core.errors import ConfigError
from core.metrics import SCORE
from search_spaces import SPACE_NAMES, get_space
from search_spaces.types import Choice, IntUniform, LogUniform, Uniform
from tuning.search.searchers import build_scheduler, build_searcher, check_search, optuna_storage, seed_point
from tuning.search.settings import SweepSettings
from tuning.search.space import flatten, param_space
from tuning.search.sweep import build_tuner
from tuning.search.wandb_search import WandbBayesSearch, WandbHyperband, wandb_parameter, wandb_sweep_config

EGFR = get_space("egfr")
needs_sweeps = pytest.mark.skipif(importlib.util.find_spec("sweeps") is None,
                                  reason='W&B\'s engine: pip install "medtune[wandb-sweeps]"')
needs_bohb = pytest.mark.skipif(importlib.util.find_spec("hpbandster") is None,
                                reason='BOHB: pip install "medtune[bohb]"')


def inside(dist, value):
    if isinstance(dist, Choice):
        return value in dist.values
    if isinstance(dist, IntUniform):
        return isinstance(value, int) and dist.low <= value <= dist.high
    return isinstance(value, float) and dist.low <= value <= dist.high


def suggest_with_history(searcher, n, *, finish_every=1, seed=0):
    """``n`` suggestions; each trial reports three epochs, and most of them finish before the next."""
    rng = np.random.default_rng(seed)
    configs = []
    for i in range(n):
        configs.append(flatten(searcher.suggest(f"t{i}")))
        for _ in range(3):
            searcher.on_trial_result(f"t{i}", {EGFR.metric: float(rng.uniform(0.4, 0.9))})
        if i % finish_every == 0:
            searcher.on_trial_complete(f"t{i}", error=(i == 3))
    return configs


@needs_sweeps
def test_wandb_searcher_proposes_complete_configs_inside_the_space():
    first = seed_point(EGFR, {})
    searcher = WandbBayesSearch(EGFR, seed=3, points_to_evaluate=[first])
    configs = suggest_with_history(searcher, 7, finish_every=2)
    assert configs[0] == first
    for config in configs:
        assert set(config) == set(EGFR.search)
        for key, value in config.items():
            assert inside(EGFR.search[key], value), (key, value)
    assert len({tuple(sorted(c.items())) for c in configs}) == len(configs)


@needs_sweeps
def test_wandb_searcher_leaves_overridden_keys_to_the_param_space():
    searcher = WandbBayesSearch(EGFR, overrides={"train/batch_size": 8}, seed=0)
    config = flatten(searcher.suggest("a"))
    assert "train/batch_size" not in config and set(config) == set(EGFR.search) - {"train/batch_size"}


@needs_sweeps
def test_wandb_searcher_is_seeded_and_its_saved_state_continues_the_same(tmp_path):
    one, two = WandbBayesSearch(EGFR, seed=5), WandbBayesSearch(EGFR, seed=5)
    assert suggest_with_history(one, 4) == suggest_with_history(two, 4)
    one.save(str(tmp_path / "state.pkl"))
    restored = WandbBayesSearch(EGFR, seed=99)
    restored.restore(str(tmp_path / "state.pkl"))
    assert flatten(restored.suggest("next")) == flatten(one.suggest("next"))
    state = np.random.get_state()
    WandbBayesSearch(EGFR, seed=1).suggest("x")
    assert np.array_equal(np.random.get_state()[1], state[1])  # the global generator is untouched


@needs_sweeps
def test_wandb_hyperband_stops_a_trial_outside_the_top_third():
    scheduler = WandbHyperband(wandb_sweep_config(EGFR, min_iter=2, eta=3))
    assert scheduler.set_search_properties(EGFR.metric, EGFR.mode)
    curves = {"good": [0.5, 0.6, 0.7, 0.8, 0.8], "flat": [0.5, 0.5, 0.5, 0.5, 0.5]}
    decisions = {}
    for name, curve in curves.items():
        trial = type("Trial", (), {"trial_id": name})()
        decisions[name] = []
        for value in curve:  # Tune sends no result after STOP
            decisions[name].append(scheduler.on_trial_result(None, trial, {EGFR.metric: value}))
            if decisions[name][-1] == "STOP":
                break
    assert decisions["good"] == ["CONTINUE"] * 5
    assert decisions["flat"] == ["CONTINUE", "CONTINUE", "STOP"]  # W&B's first band: index 2
    assert scheduler.stopped == ["flat"]


@pytest.mark.parametrize("dist,expected", [
    (LogUniform(1e-5, 1e-2), {"distribution": "log_uniform_values", "min": 1e-5, "max": 1e-2}),
    (Uniform(0.0, 0.6), {"distribution": "uniform", "min": 0.0, "max": 0.6}),
    (IntUniform(5, 30), {"distribution": "int_uniform", "min": 5, "max": 30}),
    (Choice((8, 16)), {"values": [8, 16]}),
    (Choice(((16, 32), (32, 64))), {"values": [[16, 32], [32, 64]]}),
])
def test_each_distribution_becomes_its_wandb_parameter(dist, expected):
    assert wandb_parameter(dist) == expected


@needs_sweeps
@pytest.mark.parametrize("space", SPACE_NAMES)
def test_the_exported_sweep_yaml_passes_wandbs_schema(space, tmp_path):
    from tuning.search.wandb_search import require_sweeps
    from tuning.tracking.export import main

    sweeps = require_sweeps()

    out = tmp_path / "sweep.yaml"
    assert main(["--space", space, "--out", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert text.startswith("# W&B sweep config") and "--search wandb-bayes" in text
    config = yaml.safe_load(text)
    assert sweeps.schema_violations_from_proposed_config(config) == []
    declared = get_space(space)
    assert config["metric"] == {"name": declared.metric,
                                "goal": "maximize" if declared.mode == "max" else "minimize"}
    assert config["early_terminate"]["type"] == "hyperband"
    names = {key.replace("/", ".") for key in {**declared.fixed, **declared.search}}
    assert set(config["parameters"]) == names
    for key in declared.search:
        assert "value" not in config["parameters"][key.replace("/", ".")]


def test_check_search_names_the_bad_choice(monkeypatch):
    with pytest.raises(ConfigError, match="unknown search 'grid'"):
        check_search(SweepSettings(search="grid"))
    with pytest.raises(ConfigError, match="--optuna-storage is for --search tpe"):
        check_search(SweepSettings(search="random", optuna_storage="x.db"))
    monkeypatch.setitem(sys.modules, "sweeps", None)  # as if not installed
    with pytest.raises(ConfigError, match="pip install"):
        check_search(SweepSettings(search="wandb-bayes"))
    monkeypatch.setitem(sys.modules, "hpbandster", None)
    with pytest.raises(ConfigError, match=r"medtune\[bohb\]"):
        check_search(SweepSettings(search="bohb"))


@pytest.mark.parametrize("argv,expected", [
    (["--search", "random", "--optuna-storage", "x.db"], "--optuna-storage is for --search tpe"),
    (["--search", "wandb-bayes"], "medtune[wandb-sweeps]"),
])
def test_the_cli_exits_2_on_a_search_it_cannot_run(capsys, monkeypatch, tmp_path, argv, expected):
    from tuning.run import main

    monkeypatch.setitem(sys.modules, "sweeps", None)  # as if not installed
    code = main(["--space", "egfr", "--no-wandb", "--results-dir", str(tmp_path), *argv])
    assert code == 2 and expected in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_the_cli_resolves_auto_to_the_searchs_scheduler():
    from tuning.run import options_from_args, parse

    def scheduler(*argv):
        return options_from_args(parse(["--space", "egfr", *argv])).sweep.scheduler

    assert (scheduler(), scheduler("--search", "wandb-bayes"), scheduler("--search", "bohb"),
            scheduler("--scheduler", "none")) == ("asha", "wandb-hyperband", "bohb-hyperband", "none")


@pytest.mark.parametrize("search,scheduler,kinds", [
    ("tpe", "auto", ("OptunaSearch", "AsyncHyperBandScheduler")),
    ("random", "none", ("OptunaSearch", "FIFOScheduler")),
    pytest.param("wandb-bayes", "auto", ("WandbBayesSearch", "WandbHyperband"), marks=needs_sweeps),
    pytest.param("wandb-bayes", "asha", ("WandbBayesSearch", "AsyncHyperBandScheduler"),
                 marks=needs_sweeps),
    pytest.param("bohb", "auto", ("TuneBOHB", "HyperBandForBOHB"), marks=needs_bohb),
])
def test_the_factory_builds_each_search_and_scheduler(search, scheduler, kinds):
    settings = SweepSettings(search=search, scheduler=scheduler, max_concurrent=2, max_epochs=60)
    searcher = build_searcher(EGFR, settings, {})
    inner = getattr(searcher, "searcher", searcher)
    assert (type(inner).__name__, type(build_scheduler(EGFR, settings)).__name__) == kinds


@needs_bohb
def test_bohb_proposes_the_seed_defaults_first_then_configs_inside_the_space():
    settings = SweepSettings(search="bohb", max_concurrent=2, max_epochs=27, seed=4)
    searcher = build_searcher(EGFR, settings, {}).searcher
    searcher.set_search_properties(SCORE, EGFR.mode, param_space(EGFR, {}))
    configs = [flatten(searcher.suggest(f"t{i}")) for i in range(2)]  # max_concurrent at once
    assert {key: configs[0][key] for key in EGFR.search} == seed_point(EGFR, {})
    for config in configs[1:]:
        assert all(inside(dist, config[key]) for key, dist in EGFR.search.items()), config
    scheduler = build_scheduler(EGFR, settings)
    assert (scheduler._max_t_attr, scheduler._eta) == (27, 3)


@pytest.mark.parametrize("search", ["random", "tpe"])
def test_a_search_starts_from_seed_defaults_that_hold_a_tuple(search):
    """The UNet's channels are a tuple: the segmentation space's seed point must still come first."""
    from search_spaces import get_space

    space, overrides = get_space("segmentation"), {"data/shape": (64, 64)}
    settings = SweepSettings(search=search, max_concurrent=2, max_epochs=20, seed=3)
    searcher = build_searcher(space, settings, overrides).searcher
    searcher.set_search_properties(space.metric, space.mode, param_space(space, overrides))
    configs = [flatten(searcher.suggest(f"t{i}")) for i in range(2)]
    assert {key: tuple(configs[0][key]) if key == "model/channels" else configs[0][key]
            for key in space.search} == seed_point(space, overrides)
    assert all(inside(dist, configs[1][key]) for key, dist in space.search.items()), configs[1]
    if search == "random":
        assert type(searcher._ot_study.sampler).__name__ == "RandomSampler"


@pytest.mark.parametrize("target", ["sqlite", "study.db", "study.log"])
def test_an_optuna_study_on_disk_is_named_after_the_run(tmp_path, target):
    import optuna

    where = f"sqlite:///{tmp_path}/url.db" if target == "sqlite" else str(tmp_path / target)
    settings = SweepSettings(optuna_storage=where, max_concurrent=2)
    searcher = build_searcher(EGFR, settings, {}, study_name="egfr-run").searcher
    searcher.set_search_properties(EGFR.metric, EGFR.mode, param_space(EGFR, {}))
    searcher.suggest("t0")
    study = optuna.load_study(study_name="egfr-run", storage=optuna_storage(where))
    assert len(study.trials) == 1 and study.trials[0].params == seed_point(EGFR, {})


# --- end to end in Ray Tune ------------------------------------------------------------------

OVERRIDES = {"data/shape": (16, 16, 16), "train/batch_size": 8}


@pytest.fixture(scope="module")
def tiny_arrays(tiny_egfr, tmp_path_factory):
    from core.tasks import get_task, prepare

    cfg = TrialConfig.from_dict({**EGFR.fixed, **OVERRIDES})
    options = DataOptions(root=tiny_egfr, cache_dir=tmp_path_factory.mktemp("cache"))
    return prepare(get_task(cfg.data.task), cfg.data, options, seed=1).without_test().arrays


@pytest.mark.slow
@pytest.mark.parametrize("search,scheduler", [
    ("random", "asha"), ("tpe", "none"), pytest.param("wandb-bayes", "auto", marks=needs_sweeps)])
def test_a_two_trial_sweep_runs_with_each_search(ray_local, tiny_arrays, tmp_path, search,
                                                 scheduler):
    settings = SweepSettings(num_samples=2, max_epochs=2, max_concurrent=2, seed=1,
                             search=search, scheduler=scheduler)
    grid = build_tuner(EGFR, tiny_arrays, settings, overrides=OVERRIDES,
                       storage_path=str(tmp_path)).fit()
    assert len(grid) == 2 and not grid.errors
    for result in grid:
        config = flatten(result.config)
        assert all(inside(dist, config[key]) for key, dist in EGFR.search.items()
                   if key not in OVERRIDES)
        assert math.isfinite(result.metrics[EGFR.metric])
        assert config["train/seed"] == settings.seed  # --seed seeds sweep training
        history = result.metrics_dataframe  # the score is the raw metric's best so far
        assert list(history[SCORE]) == list(history[EGFR.metric].cummax())
    if scheduler == "none":  # FIFO: every trial runs its whole budget
        assert all(result.metrics["epoch"] == 2 for result in grid)
    if search == "wandb-bayes":  # Tune saved the searcher's state, as --resume restores it
        restored = WandbBayesSearch(EGFR, overrides=OVERRIDES)
        restored.restore_from_dir(str(tmp_path / "sweep"))
        assert [t["state"] for t in restored._trials.values()] == ["finished", "finished"]
        assert all(len(t["history"]) >= 1 for t in restored._trials.values())


@pytest.mark.slow
def test_a_tpe_sweep_keeps_its_study_on_disk(ray_local, tiny_arrays, tmp_path):
    import optuna

    where = f"sqlite:///{tmp_path}/optuna.db"
    settings = SweepSettings(num_samples=2, max_epochs=3, max_concurrent=2, seed=1,
                             optuna_storage=where, scheduler="none")
    grid = build_tuner(EGFR, tiny_arrays, settings, overrides=OVERRIDES,
                       storage_path=str(tmp_path), study_name="tiny-tpe").fit()
    study = optuna.load_study(study_name="tiny-tpe", storage=where)
    assert [trial.state.name for trial in study.trials] == ["COMPLETE", "COMPLETE"]
    # TPE learned each trial's best epoch, not its last
    best = sorted(result.metrics_dataframe[EGFR.metric].max() for result in grid)
    assert sorted(trial.value for trial in study.trials) == pytest.approx(best)
