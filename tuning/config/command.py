"""The ``tuning.run`` command line, made from the options' dataclasses (``RUN_FLAGS``).

A value comes from, first to last: a flag given, the ``--config`` YAML file, the ``--quick``
preset, the dataclass field's default. argparse only parses; the defaults are the fields'.
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any, NoReturn

import yaml

from core.data.prepared import DataOptions
from core.errors import DataError
from search_spaces import get_space
from tuning.config.flags import Flag
from tuning.config.options import (
    GROUPS,
    LOCAL_MLFLOW,
    QUICK,
    RUN_FLAGS,
    RunOptions,
    config_keys,
    quick_overrides,
)
from tuning.search.searchers import check_search, scheduler_name
from tuning.search.settings import SweepSettings
from tuning.tracking.callbacks import local_mlflow_uri

DESCRIPTION = ("Sweep a search space with Ray Tune (Optuna TPE + ASHA), retrain the best configs with "
               "several seeds, evaluate them once on the held-out test split, and write "
               "results/<name>/.")


def _add(group: Any, flag: Flag) -> None:
    """``flag`` as an argparse argument that is absent from the namespace unless given."""
    common = {"dest": flag.key, "help": flag.help_text(), "default": argparse.SUPPRESS}
    if flag.switch:
        group.add_argument(f"--{flag.name}", action="store_true", **common)
        return
    if flag.spec.const is not None:
        common.update(nargs="?", const=flag.spec.const)
    group.add_argument(f"--{flag.name}", type=flag.kind, choices=flag.spec.choices,
                       metavar=flag.spec.metavar, **common)


def parser() -> argparse.ArgumentParser:
    """The argparse parser of ``tuning.run``; its namespace holds only the flags given."""
    p = argparse.ArgumentParser(prog="python -m tuning.run", description=DESCRIPTION)
    groups = {name: p.add_argument_group(name) if name else p for name in GROUPS}
    for flag in RUN_FLAGS:
        _add(groups[flag.spec.group], flag)
    return p


def read_config(path: Path, error: Any) -> dict[str, Any]:
    """A YAML run file's values by flag key; ``error(message)`` (exit 2) for an unreadable file,
    an unknown or doubled key, or a value of the wrong kind (naming the key)."""
    try:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        error(f"--config {path}: {err.strerror}")
    except yaml.YAMLError as err:
        error(f"--config {path} is not valid YAML: {err}")
    if not isinstance(loaded, (dict, type(None))):
        error(f"--config {path} must map flag names to values, not hold a {type(loaded).__name__}")
    flags = {f.key: f for f in RUN_FLAGS if f.key in config_keys()}
    values: dict[str, Any] = {}
    unknown = []
    for raw, value in (loaded or {}).items():
        key = str(raw).lstrip("-").replace("-", "_")
        if key not in flags:
            unknown.append(str(raw))
        elif key in values:
            error(f"--config {path} gives {key!r} twice (with dashes and with underscores)")
        else:
            try:
                values[key] = flags[key].from_config(value)
            except ValueError as err:
                error(f"--config key {str(raw)!r}: {err}")
    if unknown:
        error(f"--config {path}: unknown keys {', '.join(unknown)}; valid keys: "
              f"{', '.join(sorted(k.replace('_', '-') for k in flags))}")
    return values


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """Every flag's value: given, else from ``--config``, else the quick preset, else its default;
    ``given`` holds the keys set by a flag or ``--config``. ``--resume`` needs no ``--space``."""
    p = parser()

    def error(message: str) -> NoReturn:
        p.error(message)

    given = vars(p.parse_args(argv))
    config = given.get("config")
    values = {**(read_config(config, error) if config is not None else {}), **given}
    if "space" not in values and not values.get("resume"):
        error("--space is required (as a flag or a --config key)")
    preset = QUICK if values.get("quick") else {}
    args = argparse.Namespace(**{f.key: values.get(f.key, preset.get(f.key, f.default))
                                 for f in RUN_FLAGS})
    args.given = set(values)  # the keys given as flags or --config keys (--resume checks them)
    return args


def _fields_of(owner: type, args: argparse.Namespace) -> dict[str, Any]:
    """The fields of ``owner`` that flags set, from the parsed ``args``."""
    return {f.field: f.field_value(getattr(args, f.key)) for f in RUN_FLAGS if f.owner is owner}


def options_from_args(args: argparse.Namespace) -> RunOptions:
    """The run's options from parsed flags; ``--quick`` adds the space's quick overrides and epoch
    budget. Raises ``ConfigError``/``DataError`` for a search it cannot run or a missing file."""
    space = get_space(args.space)
    settings = SweepSettings(**_fields_of(SweepSettings, args))
    if args.quick and settings.max_epochs is None:
        settings = dataclasses.replace(settings, max_epochs=space.quick.get("train/max_epochs"))
    check_search(settings)
    settings = dataclasses.replace(settings, scheduler=scheduler_name(settings))  # auto, resolved
    overrides = quick_overrides(space) if args.quick else {}
    if args.weights is not None:
        if not args.weights.is_file():
            raise DataError(f"--weights {args.weights} is not a file; give a local .pt/.pth state dict")
        overrides["model/weights"] = str(args.weights.resolve())
    options = RunOptions(data=DataOptions(**_fields_of(DataOptions, args)), sweep=settings,
                         overrides=overrides, **_fields_of(RunOptions, args))
    if options.mlflow == LOCAL_MLFLOW:
        options.mlflow = local_mlflow_uri(options.results_path())
    return options

