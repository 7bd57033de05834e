"""python benchmarks/tracking_overhead.py [--trials 8] [--epochs 12] [--slots 2] [--repeats 3]

What tracking costs a sweep: the same seeded egfr sweep (Optuna TPE + ASHA, as ``--quick`` runs
it: 8 trials of 12 epochs on 1 CPU each) with tracking off, with W&B offline (medtune's default)
and with a local MLflow store, in one process on one Ray instance. The three run alternately,
in a rotated order each repeat, so that load from other processes on the machine falls on all
of them. For each run:

    overhead per trial = (sweep wall time - sum of trial compute / parallel slots) / trials

Trial compute is each trial's own ``time_total_s``, so trials that happen to train longer do not
count as overhead. A tracker's cost per trial is its overhead minus that of the run with tracking
off in the same repeat; the mean and standard deviation over repeats are printed. ASHA's grace
period is the whole budget and early stopping's patience is out of reach, so all runs do the same
work.

``--hooks-only`` (also printed after the sweeps) measures the trackers without training, so
without the noise of other jobs: the same callbacks fed a stream of fake trials (the egfr config,
a result per epoch) in the order Tune calls them, timing the per-trial calls (the time they hold
the sweep's event loop), the calls made once per sweep (setup; the end, which waits until the last
run is closed), and the CPU seconds it all took in this process and its child processes (W&B's
service, counted once it has exited).
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
os.environ.setdefault("WANDB_MODE", "offline")  # the default without a key; nothing uploads
os.environ.setdefault("WANDB_SILENT", "true")

import ray  # noqa: E402

from core.config import TrialConfig  # noqa: E402
from core.data.prepared import DataOptions  # noqa: E402
from core.tasks import get_task, prepare  # noqa: E402
from search_spaces import get_space  # noqa: E402
from tuning.search.settings import SweepSettings  # noqa: E402
from tuning.search.sweep import build_tuner  # noqa: E402
from tuning.search.workers import worker_runtime_env  # noqa: E402
from tuning.tracking.callbacks import local_mlflow_uri, mlflow_callbacks, wandb_callbacks  # noqa: E402

VARIANTS = ("off", "wandb", "mlflow")


def callbacks(variant: str, folder: Path, name: str) -> list:
    """The tracking callbacks ``tuning.pipeline`` would give the sweep for ``variant``."""
    if variant == "wandb":
        return wandb_callbacks(mode="offline", project="tracking-overhead", group=name,
                               job_type="trial", folder=folder, tags=("egfr", "tpe"))
    if variant == "mlflow":
        return mlflow_callbacks(uri=local_mlflow_uri(folder), experiment=name, job_type="trial")
    return []


def one_sweep(variant: str, arrays: dict, settings: SweepSettings, folder: Path,
              name: str) -> tuple[float, float, int]:
    """(wall seconds, overhead per trial in seconds, trials) of one sweep."""
    space = get_space("egfr")
    started = time.perf_counter()
    grid = build_tuner(space, arrays, settings, overrides={"train/patience": 1000},
                       storage_path=str(folder / "ray"), study_name=name,
                       callbacks=callbacks(variant, folder, name)).fit()
    wall = time.perf_counter() - started
    compute = sum(float(r.metrics.get("time_total_s", 0.0)) for r in grid)
    return wall, (wall - compute / settings.max_concurrent) / len(grid), len(grid)


def cpu_seconds() -> float:
    """CPU seconds of this process and its finished children (user + system)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def hook_cost(variant: str, trials: int, epochs: int, folder: Path) -> tuple[float, float, float]:
    """(seconds in the per-trial hooks per trial, seconds in setup and experiment end, CPU seconds
    per trial) of ``variant``'s callbacks fed ``trials`` fake trials of ``epochs`` results each,
    two trials at a time."""
    config = get_space("egfr").fixed
    cbs = callbacks(variant, folder, f"hooks-{variant}")
    cpu, spent = cpu_seconds(), {"trial": 0.0, "fixed": 0.0}

    def call(hook: str, *args: object, phase: str = "trial") -> None:
        t = time.perf_counter()
        for cb in cbs:
            getattr(cb, hook)(*args)
        spent[phase] += time.perf_counter() - t

    call("setup", phase="fixed")
    for pair in range(0, trials, 2):
        fakes = [SimpleNamespace(trial_id=f"fake{i:05d}", config=config) for i in range(pair, pair + 2)]
        for fake in fakes:
            call("log_trial_start", fake)
        for epoch in range(1, epochs + 1):
            for fake in fakes:
                result = {"val/auroc": 0.5 + epoch / 100, "val/loss": 0.7, "train/loss": 0.6,
                          "epoch": epoch, "training_iteration": epoch, "time_this_iter_s": 1.0,
                          "done": False, "config": config, "trial_id": fake.trial_id}
                call("log_trial_result", epoch, fake, result)
        for fake in fakes:
            call("log_trial_end", fake)
    call("on_experiment_end", [], phase="fixed")  # W&B: waits until every run is closed
    return spent["trial"] / trials, spent["fixed"], (cpu_seconds() - cpu) / trials


def print_hook_costs(trials: int, epochs: int, repeats: int) -> None:
    print(f"\ntrackers without training ({trials} fake trials x {epochs} epochs):")
    with tempfile.TemporaryDirectory() as tmp:
        for variant in VARIANTS[1:]:
            runs = [hook_cost(variant, trials, epochs, Path(tmp) / f"{variant}{r}")
                    for r in range(repeats)]
            hooks, fixed, cpu = ([run[i] for run in runs] for i in range(3))
            print(f"  {variant:6s} per trial in hooks {statistics.mean(hooks):.4f} s, CPU "
                  f"{statistics.mean(cpu):.3f} s (max {max(cpu):.3f}); once per sweep (setup, "
                  f"end) {statistics.mean(fixed):.2f} s (max {max(fixed):.2f}); n {repeats}")


def spread(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else float("nan")
    return f"{statistics.mean(values):+6.2f} s (sd {sd:4.2f}, n {len(values)})"


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    args.add_argument("--trials", type=int, default=8)
    args.add_argument("--epochs", type=int, default=12)
    args.add_argument("--slots", type=int, default=2)
    args.add_argument("--repeats", type=int, default=3)
    args.add_argument("--hooks-only", action="store_true",
                      help="only the trackers fed fake trials, no sweep")
    opts = args.parse_args()
    if opts.hooks_only:
        print_hook_costs(opts.trials, opts.epochs, opts.repeats)
        return
    space = get_space("egfr")
    cfg = TrialConfig.from_dict(space.fixed).data
    arrays = prepare(get_task(cfg.task), cfg, DataOptions(), seed=42).without_test().arrays
    ray.init(num_cpus=opts.slots, include_dashboard=False, configure_logging=False,
             runtime_env=worker_runtime_env())  # as tuning.pipeline starts Ray
    settings = SweepSettings(num_samples=opts.trials, max_epochs=opts.epochs, cpus_per_trial=1.0,
                             max_concurrent=opts.slots, grace_period=opts.epochs, seed=1)
    overheads: dict[str, list[float]] = {v: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(opts.repeats):
            order = VARIANTS[repeat % 3:] + VARIANTS[:repeat % 3]
            for variant in order:
                name = f"{variant}-{repeat}"
                wall, per_trial, n = one_sweep(variant, arrays, settings, Path(tmp) / name, name)
                overheads[variant].append(per_trial)
                print(f"repeat {repeat} {variant:6s} trials {n}  wall {wall:6.1f} s  "
                      f"overhead/trial {per_trial:5.2f} s", flush=True)
    ray.shutdown()
    print("\noverhead per trial, mean over repeats:")
    for variant in VARIANTS:
        print(f"  {variant:6s} {spread(overheads[variant])}")
    print("tracking's cost per trial (minus 'off' in the same repeat):")
    for variant in VARIANTS[1:]:
        diffs = [a - b for a, b in zip(overheads[variant], overheads["off"])]
        print(f"  {variant:6s} {spread(diffs)}")
    print_hook_costs(opts.trials, opts.epochs, opts.repeats)


if __name__ == "__main__":
    main()
