"""python -m tuning.run --space egfr [--data DIR] [--quick] [--config run.yaml]

Sweep a search space with Ray Tune (Optuna TPE + ASHA), retrain the best configs with
several seeds, evaluate them once on the held-out test split, and write ``results/<name>/``.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from core.data.prepared import DataOptions
from core.errors import ConfigError, DataError
from search_spaces import SPACE_NAMES, get_space
from tuning.options import RunOptions, load_options
from tuning.pipeline import run_pipeline
from tuning.searchers import SCHEDULERS, SEARCHES, check_search, scheduler_name
from tuning.sweep import SweepSettings
from tuning.tracking import local_mlflow_uri

LOCAL_MLFLOW = "local"  # --mlflow without a URI: mlruns/ in the run's results folder
QUICK = {"num_samples": 8, "top_k": 2, "retrain_seeds": 2, "cpus_per_trial": 1.0}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tuning.run", description=__doc__.split("\n\n")[1],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--space", required=True, choices=SPACE_NAMES, help="search space (task) to run")
    p.add_argument("--config", type=Path, metavar="YAML",
                   help="read options from a YAML file (keys: these flags' names); flags override it")
    data = p.add_argument_group("data")
    data.add_argument("--data", type=Path, help="dataset folder; omitted: the built-in phantom")
    data.add_argument("--labels-csv", type=Path, help="labels CSV (default: the one CSV in --data)")
    data.add_argument("--id-column", default="Case ID", help="CSV column holding the case id")
    data.add_argument("--label-column", default="EGFR mutation status", help="CSV label column")
    data.add_argument("--positive-value", default="Mutant", help="label value of the positive class")
    data.add_argument("--weights", type=Path,
                      help="local pretrained weights for the 2D classifier (nothing is downloaded)")
    sweep = p.add_argument_group("sweep")
    sweep.add_argument("--quick", action="store_true",
                       help=f"a few-minute preset: {QUICK}, the space's short epoch budget")
    sweep.add_argument("--num-samples", type=int, help="trials to run (default 50)")
    sweep.add_argument("--max-epochs", type=int, help="epoch budget per trial (ASHA's max_t)")
    sweep.add_argument("--max-concurrent", type=int, help="trials at once (default: as resources allow)")
    sweep.add_argument("--cpus-per-trial", type=float, help="CPUs per trial (default 1)")
    sweep.add_argument("--gpus-per-trial", type=float,
                       help="GPUs per trial; fractions pack trials on one GPU (default: 1 if any GPU)")
    sweep.add_argument("--max-failures", type=int, default=0, help="retries of a failed trial")
    sweep.add_argument("--time-budget", type=float, help="wall seconds for the search")
    sweep.add_argument("--seed", type=int, default=42, help="seed for splits, TPE and training")
    sweep.add_argument("--search", choices=SEARCHES, default="tpe",
                       help="what proposes configs, all seeded and starting from the seed defaults: "
                            "Optuna TPE; random sampling of the same space; or W&B's own bayes "
                            "engine run locally, no key or network (pip install "
                            "'medtune[wandb-sweeps]')")
    sweep.add_argument("--scheduler", choices=SCHEDULERS, default="auto",
                       help="what stops weak trials early, in epochs: ASHA; W&B's hyperband rule "
                            "(the sweeps package's stop_runs, min_iter = ASHA's grace period); or "
                            "none (each trial runs its epoch budget or until its own early "
                            "stopping). auto: wandb-hyperband with --search wandb-bayes, else asha")
    sweep.add_argument("--optuna-storage", metavar="URL_OR_PATH",
                       help="keep the TPE study on disk, named after the run, for optuna-dashboard: "
                            "a database URL (sqlite:///results/NAME/optuna.db), a SQLite file "
                            "path, or a .log journal file")
    final = p.add_argument_group("retrain and test")
    final.add_argument("--top-k", type=int, help="best configs to retrain (default 3)")
    final.add_argument("--retrain-seeds", type=int, help="seeds per retrained config (default 3)")
    where = p.add_argument_group("where")
    where.add_argument("--name", help="experiment name (default: SPACE-YYYYmmdd-HHMMSS)")
    where.add_argument("--resume", action="store_true",
                       help="continue the run --name (its saved options) after its driver stopped")
    where.add_argument("--results-dir", type=Path, default=Path("results"), help="results root")
    where.add_argument("--storage-path", default=os.environ.get("MEDTUNE_STORAGE_PATH"),
                       help="Ray storage (folder, NFS or s3://) for checkpoints, shared by every "
                            "node (default: $MEDTUNE_STORAGE_PATH, else the results folder)")
    where.add_argument("--address", help="Ray cluster to join ('auto' for a running one)")
    track = p.add_argument_group("tracking")
    track.add_argument("--wandb-project", default="medtune", help="W&B project for all runs")
    track.add_argument("--no-wandb", action="store_true",
                       help="do not track in W&B (default: online with a key, else offline)")
    track.add_argument("--mlflow", nargs="?", const=LOCAL_MLFLOW, metavar="URI",
                       help="also track every trial and retrain in MLflow; without a URI, in "
                            "mlruns/ of the results folder (a file: store)")
    return p


def _config_keys(p: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The keys a ``--config`` file may hold: every flag's name (underscored) but help and config."""
    return {a.dest: a for a in p._actions if a.option_strings and a.dest not in ("help", "config")}


def config_keys() -> list[str]:
    """The keys of a ``--config`` file (and of ``run_options.yaml``), underscored."""
    return sorted(_config_keys(parser()))


def _config_value(p: argparse.ArgumentParser, action: argparse.Action, key: str, value: Any) -> Any:
    """A YAML value as its flag would give it; a value of the wrong kind exits 2 naming the key."""
    if action.dest == "mlflow" and isinstance(value, bool):
        return LOCAL_MLFLOW if value else None
    if action.nargs == 0:  # on/off flags
        if not isinstance(value, bool):
            p.error(f"--config key {key!r} must be true or false, not {value!r}")
        return value
    if value is None:
        return None
    kind = action.type or str
    bad_int = kind is int and isinstance(value, float) and not value.is_integer()
    if isinstance(value, (bool, list, dict)) or bad_int:
        p.error(f"--config key {key!r} must be one {getattr(kind, '__name__', kind)}, not {value!r}")
    try:
        value = kind(value)
    except (TypeError, ValueError):
        p.error(f"--config key {key!r}: {value!r} is not a valid {getattr(kind, '__name__', kind)}")
    if action.choices is not None and value not in action.choices:
        p.error(f"--config key {key!r}: {value!r} is not one of {', '.join(map(str, action.choices))}")
    return value


def apply_config(p: argparse.ArgumentParser, path: Path) -> None:
    """Make a YAML run file's values the parser's defaults, so flags given as well override them.

    Keys are flag names with dashes or underscores; an unknown key exits 2 listing the valid ones.
    """
    try:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        p.error(f"--config {path}: {err.strerror}")
    except yaml.YAMLError as err:
        p.error(f"--config {path} is not valid YAML: {err}")
    if not isinstance(loaded, (dict, type(None))):
        p.error(f"--config {path} must map flag names to values, not hold a {type(loaded).__name__}")
    keys, values, unknown = _config_keys(p), {}, []
    for raw, value in (loaded or {}).items():
        key = str(raw).lstrip("-").replace("-", "_")
        if key not in keys:
            unknown.append(str(raw))
        elif key in values:
            p.error(f"--config {path} gives {key!r} twice (with dashes and with underscores)")
        else:
            values[key] = _config_value(p, keys[key], str(raw), value)
    if unknown:
        p.error(f"--config {path}: unknown keys {', '.join(unknown)}; valid keys: "
                f"{', '.join(sorted(k.replace('_', '-') for k in keys))}")
    for key in values:
        keys[key].required = False
    p.set_defaults(**values)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The CLI's arguments: a ``--config`` file's values, overridden by the flags given."""
    p = parser()
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", type=Path)
    known, _ = pre.parse_known_args(argv)
    if known.config is not None:
        apply_config(p, known.config)
    return p.parse_args(argv)


def options_from_args(args: argparse.Namespace) -> RunOptions:
    """Flags over the quick preset over the defaults; the space's quick overrides when --quick."""
    space = get_space(args.space)
    preset = QUICK if args.quick else {}

    def pick(flag: str, default):
        value = getattr(args, flag)
        return value if value is not None else preset.get(flag, default)

    max_epochs = args.max_epochs or (space.quick.get("train/max_epochs") if args.quick else None)
    settings = SweepSettings(
        num_samples=pick("num_samples", 50),
        max_epochs=max_epochs or space.fixed.get("train/max_epochs", 60),
        max_concurrent=pick("max_concurrent", 0), cpus_per_trial=pick("cpus_per_trial", 1.0),
        gpus_per_trial=pick("gpus_per_trial", -1.0), seed=args.seed,
        max_failures=args.max_failures, time_budget_s=args.time_budget, search=args.search,
        scheduler=args.scheduler, optuna_storage=args.optuna_storage)
    check_search(settings)
    settings = dataclasses.replace(settings, scheduler=scheduler_name(settings))  # auto, resolved
    data = DataOptions(root=args.data, labels_csv=args.labels_csv, id_column=args.id_column,
                       label_column=args.label_column, positive_value=args.positive_value)
    name = args.name or f"{args.space}-{time.strftime('%Y%m%d-%H%M%S')}"
    overrides = {k: v for k, v in space.quick.items() if k != "train/max_epochs"} if args.quick else {}
    if args.weights is not None:
        if not args.weights.is_file():
            raise DataError(f"--weights {args.weights} is not a file; give a local .pt/.pth state dict")
        overrides["model/weights"] = str(args.weights.resolve())
    options = RunOptions(space=args.space, data=data, sweep=settings, name=name, overrides=overrides,
                         results_dir=args.results_dir, storage_path=args.storage_path,
                         address=args.address, top_k=pick("top_k", 3),
                         retrain_seeds=pick("retrain_seeds", 3), wandb=not args.no_wandb,
                         wandb_project=args.wandb_project, mlflow=args.mlflow)
    if args.mlflow == LOCAL_MLFLOW:
        options.mlflow = local_mlflow_uri(options.results_path())
    return options


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        options = options_from_args(args)
    except (DataError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.resume:
        if not args.name or not (options.results_path() / "run_options.json").is_file():
            print(f"error: --resume needs --name of a started run; nothing to resume in "
                  f"{options.results_path()}", file=sys.stderr)
            return 2
        options = load_options(options.results_path())
    elif options.results_path().exists():
        print(f"error: {options.results_path()} already exists; pick another --name, or add "
              "--resume to continue it, so no finished result is overwritten", file=sys.stderr)
        return 2
    try:
        payload = run_pipeline(options, resume=args.resume)
    except (DataError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from tuning.outputs import format_summary
    print(format_summary(payload, options.results_path()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
