"""python -m tuning.run --space egfr [--data DIR] [--quick] [--config run.yaml]

Sweep a search space with Ray Tune (Optuna TPE + ASHA), retrain the best configs with
several seeds, evaluate them once on the held-out test split, and write ``results/<name>/``.
The flags are made from the options' dataclasses (``tuning.config``); ``--help`` lists them.
"""
from __future__ import annotations

import logging
import os
import sys

from core.errors import ConfigError, DataError
from tuning.config.command import options_from_args, parse, parser
from tuning.config.options import OPTIONS_FILE, load_options
from tuning.pipeline import run_pipeline
from tuning.results.outputs import format_summary

__all__ = ["main", "options_from_args", "parse", "parser"]


def configure_process() -> None:
    """What this command sets for its own process: log format, Ray's table reporter (an explicit
    ``RAY_AIR_NEW_OUTPUT=1`` wins), and no repeated warnings from Ray or Optuna."""
    import optuna

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the new engine ignores a given reporter
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if "TUNE_WARN_THRESHOLD_S" not in os.environ:  # "The `process_trial_result` operation took"
        logging.getLogger("ray.tune.utils.util").setLevel(logging.ERROR)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # "A new study created in memory"


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    configure_process()
    try:
        options = options_from_args(args)
    except (DataError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.resume:
        if args.name is None or not (options.results_path() / OPTIONS_FILE).is_file():
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
    print(format_summary(payload, options.results_path()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
