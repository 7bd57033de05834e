"""Faults cost only time: a NaN trial is recorded as errored, a lost node's trials resume on
another node from their checkpoints, and a killed driver's sweep continues with --resume."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from ray import tune

from search_spaces import get_space
from search_spaces.types import choice
from tuning.search.settings import SweepSettings
from tuning.search.space import nest
from tuning.search.sweep import build_tuner, sweep_trainable
from tuning.search.trials import trial_status, trials_table
from tuning.search.workers import worker_runtime_env

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def tiny_arrays(seed=0, n_train=48, n_val=16):
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in [("train", n_train), ("val", n_val)]:
        y = np.array([0, 1] * (n // 2))
        x = rng.normal(0, 1, (n, 1, 8, 8, 8)).astype(np.float32) + y[:, None, None, None, None]
        out[f"{split}/x"], out[f"{split}/y"] = x, y
    return out


def tiny_space(**search):
    base = get_space("egfr")
    fixed = {**base.fixed, "data/shape": (8, 8, 8), "train/batch_size": 8}
    return replace(base, fixed=fixed, search=search or {"optim/lr": choice(1e-3, 3e-3)})


def test_oom_is_infeasible_and_other_errors_errored():
    oom = SimpleNamespace(error=RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"), metrics={})
    nan = SimpleNamespace(error=FloatingPointError("training loss became nan"), metrics={})
    assert trial_status(oom, max_epochs=5)[0] == "infeasible"
    assert trial_status(nan, max_epochs=5) == ("errored", "training loss became nan")


def test_a_nan_trial_is_recorded_as_errored_and_the_sweep_goes_on(ray_local, tmp_path):
    space = tiny_space()
    settings = SweepSettings(num_samples=1, max_epochs=2, max_concurrent=2)
    config = nest({**space.fixed, "train/max_epochs": 2,
                   "optim/lr": tune.grid_search([1e-3, 1e15])})
    grid = tune.Tuner(sweep_trainable(space, tiny_arrays(), settings), param_space=config,
                      run_config=tune.RunConfig(storage_path=str(tmp_path), name="nan")).fit()
    table = trials_table(grid, metric=space.metric, mode=space.mode, max_epochs=2,
                         searched=["optim/lr"])
    by_lr = table.set_index("optim/lr")
    assert by_lr.loc[1e15, "status"] == "errored"
    assert "loss became" in by_lr.loc[1e15, "reason"]
    assert by_lr.loc[1e-3, "status"] == "completed"


def _reports(folder: Path) -> dict[str, list[dict]]:
    """trial folder -> its reports so far, read from Tune's result.json files."""
    return {result.parent.name: [json.loads(line) for line in
                                 result.read_text(encoding="utf-8").splitlines() if line.strip()]
            for result in folder.glob("trial_*/result.json")}


def _mid_trial_on_other_node(reports: dict[str, list[dict]], head: str, *, before: int) -> bool:
    """Whether some trial last reported from a node other than ``head`` before epoch ``before``:
    killing that node then cuts the trial short, not just after its final report."""
    return any(rows and rows[-1].get("node_id") not in (head, None) and rows[-1]["epoch"] < before
               for rows in reports.values())


def test_a_lost_worker_node_costs_only_time(no_ray, tmp_path):
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    worker = cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, runtime_env=worker_runtime_env())  # as tuning.run starts Ray
    try:
        space = tiny_space()
        settings = SweepSettings(num_samples=4, max_epochs=6, max_concurrent=2, grace_period=6,
                                 max_failures=3)
        tuner = build_tuner(space, tiny_arrays(n_train=160), settings, overrides={},
                            storage_path=str(tmp_path))
        killed = {}

        head = ray.get_runtime_context().get_node_id()

        def kill_worker_mid_trial():
            deadline = time.time() + 120
            while time.time() < deadline and not killed:
                reports = _reports(tmp_path / "sweep")
                if _mid_trial_on_other_node(reports, head, before=4):
                    killed["before"] = reports
                    cluster.remove_node(worker)
                    return
                time.sleep(0.05)

        killer = threading.Thread(target=kill_worker_mid_trial)
        killer.start()
        grid = tuner.fit()
        killer.join()
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert killed, "no trial was mid-way on the worker node"
    assert len(grid) == 4 and not grid.errors
    moved = 0
    for result in grid:
        epochs = list(result.metrics_dataframe["epoch"])
        # Every epoch trained; the count continues from the checkpoint rather than restarting.
        # At most the one epoch in flight when the node died (reported, its checkpoint not yet
        # registered by the driver) is trained again.
        assert sorted(set(epochs)) == list(range(1, 7)), epochs
        assert len(epochs) - 6 <= 1, epochs
        assert result.metrics["training_iteration"] == 6 and result.metrics["epoch"] == 6
        moved += result.metrics_dataframe["node_id"].nunique() > 1
    assert moved >= 1, "no trial resumed on the surviving node"


def _run_cli(args, env, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "tuning.run", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, **kwargs)


def test_a_killed_driver_resumes_with_every_trial_once(no_ray, tiny_egfr, tmp_path):
    env = {**os.environ, "MEDTUNE_CACHE_DIR": str(tmp_path / "cache")}
    args = ["--space", "egfr", "--data", str(tiny_egfr), "--num-samples", "6",
            "--max-epochs", "3", "--max-concurrent", "2", "--top-k", "1", "--retrain-seeds", "1",
            "--no-wandb", "--name", "killed", "--results-dir", str(tmp_path)]
    driver = _run_cli(args, env)
    sweep = tmp_path / "killed" / "sweep"
    deadline = time.time() + 240
    while time.time() < deadline and len(list(sweep.glob("trial_*/checkpoint_*"))) < 2:
        time.sleep(0.5)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    assert not (tmp_path / "killed" / "trials.csv").exists(), "the driver finished before the kill"
    resumed = _run_cli([*args, "--resume"], env)
    out, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, out.decode()[-3000:]
    trials = pd.read_csv(tmp_path / "killed" / "trials.csv")
    assert len(trials) == 6 and trials["trial_id"].is_unique
    assert trials["best_val/auroc"].notna().all()
    assert json.loads((tmp_path / "killed" / "summary.json").read_text(encoding="utf-8"))["trials"]["total"] == 6


def test_a_reused_trial_process_waits_for_a_stopped_trial_to_end_its_epoch(ray_local):
    """ASHA stops trials mid-epoch; Tune's 2 s default wait would error the next trial."""
    @ray_local.remote
    def wait_s() -> str | None:
        return os.environ.get("TUNE_FUNCTION_THREAD_TIMEOUT_S")

    assert int(ray_local.get(wait_s.remote())) >= 600
