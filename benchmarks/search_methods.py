"""python benchmarks/search_methods.py --space egfr [--space segmentation] [--curves CSV ...] [--seeds 5]

Search methods on one budget (``--trials`` x ``--epochs``), several seeds, on a surrogate of
training fitted on recorded learning curves (``benchmarks/surrogate.py``; the curves of a space
default to ``benchmarks/curves/<space>-hard.csv``, recorded by ``benchmarks/learning_curves.py``).
medtune's own searchers and schedulers run in Ray Tune on a local 2-CPU Ray instance; only the
trainable is simulated (``benchmarks/search_sim.py``: no sleeping, a simulated clock).

Methods: random (no early termination), random + ASHA, TPE (none), TPE + ASHA (medtune's default),
W&B bayes + W&B hyperband, BOHB (TuneBOHB + HyperBandForBOHB). Each (space, method, seed) run's
epoch log is saved under ``--out`` and skipped when present, so runs can be split over processes
(``--methods``) and resumed. ``--range KEY=[LOW,HIGH]`` narrows a searched range (or a choice's
values) for the runs, a variant to label with ``--variant``; the surrogate stays fitted on the
space as recorded. The target is ``--target-frac`` of the best val any run found, or
with ``--target-of recorded`` of the best config the recorded curves hold.

Writes ``--out``/search_methods.md (the table per space) and the anytime figure ``--figure``.
"""
from __future__ import annotations

import argparse
import dataclasses
import fcntl
import json
import logging
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")

import numpy as np  # noqa: E402
import yaml  # noqa: E402
from search_report import first_reach, markdown, method_rows, plot_anytime, read_logs, slug  # noqa: E402
from search_sim import METHODS, run_method  # noqa: E402
from surrogate import CurveSurrogate, default_curves, read_curves  # noqa: E402

from search_spaces import get_space  # noqa: E402
from search_spaces.types import Choice, SearchSpace  # noqa: E402

HERE = Path(__file__).resolve().parent
NAMES = "methods.json"  # file slug -> the method's name (with its variant), in the order first run


def run_space(space_name: str, curves: Path, opts: argparse.Namespace) -> None:
    """Every missing (method, seed) run of one space, each saved as soon as it ends."""
    import ray

    from tuning.search.workers import worker_runtime_env

    space = get_space(space_name)
    table = read_curves(curves)
    epochs = opts.epochs or int(table["epoch"].max())
    surrogate = CurveSurrogate(space, table, epochs=epochs, seed=0)
    space = narrowed(space, opts.ranges)
    folder = opts.out / space_name
    folder.mkdir(parents=True, exist_ok=True)
    timing = folder / "real_seconds.json"
    for name in opts.methods:
        label = f"{name} {opts.variant}" if opts.variant else name
        update_json(folder / NAMES, slug(label), label)
        for seed in range(opts.seeds):
            path = folder / f"{slug(label)}-s{seed}.csv"
            if path.exists():
                continue
            if not ray.is_initialized():
                ray.init(num_cpus=opts.slots, include_dashboard=False, configure_logging=False,
                         runtime_env=worker_runtime_env())
            log, seconds = run_method(METHODS[name], space, surrogate, seed=seed,
                                      num_samples=opts.trials, max_epochs=epochs, slots=opts.slots,
                                      overrides=opts.overrides, settings=opts.settings)
            log.to_csv(path, index=False)
            update_json(timing, path.stem, seconds)
            print(f"{space_name} {label} seed {seed}: best {log['best'].iloc[-1]:.4f}, "
                  f"{len(log)} trial-epochs, {seconds:.0f} s", flush=True)


def narrowed(space: SearchSpace, ranges: dict[str, list]) -> SearchSpace:
    """``space`` with the bounds (or a choice's values) of some searched keys replaced."""
    unknown = sorted(set(ranges) - set(space.search))
    if unknown:
        raise ValueError(f"--range names keys the {space.name} space does not search: {unknown}")
    search = dict(space.search)
    for key, values in ranges.items():
        dist = search[key]
        if isinstance(dist, Choice):
            search[key] = Choice(tuple(values))
        else:  # YAML reads 3e-4 as a string: cast to the bound's own type
            search[key] = type(dist)(*(type(dist.low)(v) for v in values))
    return dataclasses.replace(space, search=search)


def update_json(path: Path, key: str, value: Any) -> None:
    """Set ``key`` in the JSON object at ``path`` under an exclusive lock: processes running other
    ``--methods`` of the same space write the same files."""
    with open(path, "a+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        record = json.loads(handle.read() or "{}")
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({**record, key: value}, indent=1))
        handle.flush()
        fcntl.flock(handle, fcntl.LOCK_UN)


def report(spaces: dict[str, Path], opts: argparse.Namespace) -> str:
    """The table of every space (markdown) and the anytime figure, from the saved runs."""
    sections, logs, targets = [], {}, {}
    for space_name in spaces:
        folder = opts.out / space_name
        names = json.loads((folder / NAMES).read_text()) if (folder / NAMES).exists() else {}
        logs[space_name] = read_logs(folder, list(names.values()))
        runs = [log for by_seed in logs[space_name].values() for log in by_seed.values()]
        if not runs:
            continue
        best_any = max(log["best"].iloc[-1] for log in runs)
        if opts.target_of == "recorded":  # the best config the curves hold, not a lucky draw
            best_any = float(read_curves(spaces[space_name])["metric"].max())
        targets[space_name] = opts.target_frac * best_any
        timing = folder / "real_seconds.json"
        seconds = json.loads(timing.read_text()) if timing.exists() else {}
        real = {(m, s): seconds[f"{slug(m)}-s{s}"] for m, by_seed in logs[space_name].items()
                for s in by_seed if f"{slug(m)}-s{s}" in seconds}
        table = method_rows(logs[space_name], targets[space_name], real,
                            budget=_third_of_random(logs[space_name], targets[space_name]))
        sections.append(f"### {space_name}: target {targets[space_name]:.4f} = "
                        f"{opts.target_frac:g} x the best val {_OF[opts.target_of]} ({best_any:.4f})\n\n"
                        f"{markdown(table)}\n")
    # the figure shows the methods as they ship, in one order (one colour each in every panel);
    # variants of their settings are in the table only
    plot_anytime({s: {m: logs[s][m] for m in METHODS if m in logs[s]} for s in targets},
                 targets, opts.figure)
    text = "\n".join(sections)
    (opts.out / "search_methods.md").write_text(text, encoding="utf-8")
    return text


_OF = {"runs": "any run found", "recorded": "of the recorded curves"}


def _third_of_random(logs: dict[str, dict[int, Any]], target: float) -> float | None:
    """A third of the median trial-epochs random search (full budget) needed to reach ``target``:
    the compute the default search is meant to need at most."""
    runs = logs.get("random", {})
    needed = [first_reach(log, target, "trial_epochs") for log in runs.values()]
    finite = [n for n in needed if n != float("inf")]
    return float(np.median(needed)) / 3 if finite and len(finite) == len(needed) else None


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--space", action="append", default=None, help="repeat for several spaces")
    p.add_argument("--curves", action="append", type=Path, default=None,
                   help="one per --space, in order; default benchmarks/curves/<space>-hard.csv")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--trials", type=int, default=40, help="num_samples of every method")
    p.add_argument("--epochs", type=int, help="epoch budget per trial; default the curves' own")
    p.add_argument("--slots", type=int, default=2, help="trials at once (Ray CPUs)")
    p.add_argument("--methods", nargs="*", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--sweep", nargs="*", default=[], metavar="FIELD=VALUE",
                   help="SweepSettings fields for every method, e.g. grace_period=4")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="fixed config overrides the curves were recorded with")
    p.add_argument("--range", nargs="*", default=[], metavar="KEY=[LOW,HIGH]",
                   help="narrow searched ranges, e.g. optim/lr=[3e-4,1e-2]")
    p.add_argument("--variant", default="", help="a label for --sweep or --range, e.g. 'grace 3'")
    p.add_argument("--target-frac", type=float, default=0.95)
    p.add_argument("--target-of", choices=list(_OF), default="runs",
                   help="the target is a fraction of the best val any run found, or of the best "
                        "config the recorded curves hold")
    p.add_argument("--out", type=Path, default=Path("results/search-methods"))
    p.add_argument("--figure", type=Path, default=HERE / "figures" / "search_methods.png")
    p.add_argument("--report-only", action="store_true")
    opts = p.parse_args(argv)
    opts.space = opts.space or ["egfr"]
    if opts.curves and len(opts.curves) != len(opts.space):
        p.error(f"--curves given {len(opts.curves)} times for {len(opts.space)} spaces")
    opts.settings = _pairs(opts.sweep)
    opts.overrides = _pairs(opts.set)
    opts.ranges = _pairs(opts.range)
    if (opts.settings or opts.ranges) and not opts.variant:
        p.error("--sweep and --range runs need a --variant label, or they would reuse the default's files")
    return opts


def _pairs(items: list[str]) -> dict[str, Any]:
    return {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in items)}


def main(argv: list[str] | None = None) -> None:
    opts = parse(argv)
    # the simulated trials need none of Tune's per-trial result files (CSV, JSON, TensorBoard);
    # set here, not on import: every later Tune run of the process would lose them
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    # ...so Tune's result grid finds no result.json to read back: a warning per run, expected here
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    spaces = {s: (opts.curves[i] if opts.curves else default_curves(s))
              for i, s in enumerate(opts.space)}
    if not opts.report_only:
        for space_name, curves in spaces.items():
            run_space(space_name, curves, opts)
    print(report(spaces, opts))


if __name__ == "__main__":
    main()
