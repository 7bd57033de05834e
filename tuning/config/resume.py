"""``--resume``: the run's saved options, from its results folder or its shared storage, with
only the flags that may change between heads taken from the command line.

Changeable on resume: where the cluster and files are (``--address``, ``--storage-path``,
``--results-dir``, and ``--data``, whose content must still match the run's fingerprint) and a
tracking/storage URL whose password was masked when saved (``--optuna-storage``, ``--mlflow``:
the same URL, password included). Any other flag given must equal the run's value, else the
resume stops naming the flag.
"""
from __future__ import annotations

import argparse
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from core.errors import ConfigError
from tuning.config.options import (
    FINGERPRINT_KEY,
    LOCAL_MLFLOW,
    OPTIONS_FILE,
    STORAGE_ENV,
    RunOptions,
    load_options,
    read_saved,
    run_flags,
)
from tuning.config.secrets import MASK, redact

CHANGEABLE = ("address", "storage_path", "results_dir", "data")  # data: fingerprint-checked
SECRET_URLS = ("optuna_storage", "mlflow")  # saved masked: give them again to reconnect
IGNORED = ("resume", "name", "config")


def saved_folders(args: argparse.Namespace) -> list[Path]:
    """Where ``--name`` NAME's options may be: ``RESULTS_DIR/NAME``, then ``STORAGE/NAME``."""
    results_dir = Path(args.results_dir)
    base = args.storage_path or os.environ.get(STORAGE_ENV) or str(results_dir.resolve())
    folders = [(results_dir / args.name).resolve()]
    if "://" not in base or base.startswith("file://"):
        folders.append((Path(base.removeprefix("file://")) / args.name).resolve())
    return folders


def _flag_value(key: str, value: Any) -> Any:
    if key == "mlflow" and value == LOCAL_MLFLOW:
        return True
    return str(value) if isinstance(value, Path) else value


def resume_options(args: argparse.Namespace, given: set[str]) -> tuple[RunOptions, str | None]:
    """The saved options of ``args.name`` (with the changeable flags given applied) and the data
    fingerprint they were saved with. ``ConfigError`` when nothing was started under that name,
    or a given flag differs from the run's value."""
    if args.name is None:
        raise ConfigError("--resume needs --name of a started run")
    folders = saved_folders(args)
    found = next((f for f in folders if (f / OPTIONS_FILE).is_file()), None)
    if found is None:
        raise ConfigError(f"--resume needs --name of a started run; nothing to resume in "
                          f"{' or '.join(map(str, dict.fromkeys(folders)))}")
    options = load_options(found)
    saved_flags, _ = run_flags(options)
    changes: dict[str, Any] = {}
    for key in sorted(given - set(IGNORED)):
        value = getattr(args, key)
        if key in CHANGEABLE:
            changes[key] = Path(value) if key in ("results_dir", "data") else value
        elif key in SECRET_URLS and redact(value) == saved_flags.get(key):
            changes[key] = value
        elif _flag_value(key, value) != saved_flags.get(key):
            raise ConfigError(f"--{key.replace('_', '-')} differs from the run's "
                              f"{saved_flags.get(key)!r}; leave it out or start a new --name")
    for key in SECRET_URLS:
        if MASK in str(saved_flags.get(key) or "") and key not in changes:
            raise ConfigError(f"--{key.replace('_', '-')}: the run's URL {saved_flags[key]} held a "
                              "password, which is never saved; give the same URL again")
    return _apply(options, changes), read_saved(found).get(FINGERPRINT_KEY)


def _apply(options: RunOptions, changes: dict[str, Any]) -> RunOptions:
    sweep = {k: v for k, v in changes.items() if k == "optuna_storage"}
    data = {"root": changes["data"]} if "data" in changes else {}
    rest = {k: v for k, v in changes.items() if k not in ("optuna_storage", "data")}
    return replace(options, sweep=replace(options.sweep, **sweep),
                   data=replace(options.data, **data), **rest)
