"""python -m tuning.run --space egfr [--data DIR] [--quick] [--config run.yaml]

Sweep a search space with Ray Tune (Optuna TPE + ASHA), retrain the best configs with
several seeds, evaluate them once on the held-out test split, and write ``results/<name>/``.
The flags are made from the options' dataclasses (``tuning.config``); ``--help`` lists them.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from pathlib import Path

from core.errors import ConfigError, DataError
from tuning.config.command import options_from_args, parse, parser
from tuning.config.options import (
    OPTIONS_FILE,
    OPTIONS_YAML,
    RunOptions,
    options_folders,
    save_run_options,
)
from tuning.config.resume import resume_options
from tuning.config.secrets import redact_text
from tuning.pipeline import RetrainsFailed, run_pipeline
from tuning.results.outputs import format_summary
from tuning.search.interrupt import EXIT_INTERRUPTED, STOP, RunInterrupted

__all__ = ["main", "options_from_args", "parse", "parser"]


def configure_process() -> None:
    """What this command sets for its own process: log format, Ray's table reporter (an explicit
    ``RAY_AIR_NEW_OUTPUT=1`` wins), and no repeated warnings from Ray or Optuna."""
    import optuna

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the new engine ignores a given reporter
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # tuning.interrupt handles Ctrl-C (and SIGTERM)
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if "TUNE_WARN_THRESHOLD_S" not in os.environ:  # "The `process_trial_result` operation took"
        logging.getLogger("ray.tune.utils.util").setLevel(logging.ERROR)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # "A new study created in memory"


def claim(folder: Path) -> bool:
    """Make the results folder, atomically: False if it exists (another run owns that name)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        folder.mkdir()
    except FileExistsError:
        return False
    return True


def release(options: RunOptions) -> None:
    """Undo ``claim`` for a run that stopped before it ran anything: its option files, then the
    folders if empty (a later run may take the name)."""
    for folder in options_folders(options):
        for name in (OPTIONS_FILE, OPTIONS_YAML):
            (folder / name).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            folder.rmdir()


def start(args: argparse.Namespace) -> tuple[RunOptions, str | None]:
    """The run's options and saved data fingerprint: resumed (saved options, checked against the
    flags given) or new, its results folder claimed and options saved before any preprocessing."""
    if args.resume:
        options, fingerprint = resume_options(args, args.given)
        save_run_options(options, fingerprint=fingerprint)  # the new head's results folder too
        return options, fingerprint
    options = options_from_args(args)
    if not claim(options.results_path()):
        raise FileExistsError(options.results_path())
    save_run_options(options)
    return options, None


def resume_command(options: RunOptions) -> str:
    """``--resume --name NAME`` plus the flags that locate the run when they are not defaults."""
    parts = ["--resume", "--name", str(options.name)]
    if Path(options.results_dir) != Path("results"):
        parts += ["--results-dir", str(options.results_dir)]
    if options.storage_path:
        parts += ["--storage-path", redact_text(options.storage_path)]
    return " ".join(parts)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    configure_process()
    try:
        options, fingerprint = start(args)
    except (DataError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except FileExistsError as err:
        print(f"error: {err.args[0]} already exists; pick another --name, or add --resume to "
              "continue it, so no finished result is overwritten", file=sys.stderr)
        return 2
    try:
        with STOP.installed():
            payload = run_pipeline(options, resume=args.resume, fingerprint=fingerprint)
    except (DataError, ConfigError) as err:
        if not args.resume and not (options.results_path() / "splits.csv").exists():
            release(options)
        print(f"error: {redact_text(str(err))}", file=sys.stderr)
        return 2
    except (RunInterrupted, KeyboardInterrupt):
        print(f"interrupted; continue with {resume_command(options)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except RetrainsFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(format_summary(payload, options.results_path()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
