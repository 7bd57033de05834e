"""python -m tuning.export_wandb_sweep --space egfr [--out sweep.yaml]

Write a search space as a W&B sweep config (YAML): method, metric and goal, hyperband early
termination in epochs, searched keys as W&B distributions and fixed keys as values. It is the
config that ``python -m tuning.run --search wandb-bayes`` hands to W&B's engine, checked against
W&B's own schema (the ``sweeps`` package) when that is installed.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from core.errors import ConfigError
from search_spaces import SPACE_NAMES, get_space
from tuning.search.searchers import grace_epochs
from tuning.search.settings import SweepSettings
from tuning.search.wandb_search import require_sweeps, wandb_sweep_config

HEADER = """\
# W&B sweep config of medtune's {space!r} search space
# (python -m tuning.export_wandb_sweep --space {space}).
# Parameter names are medtune's config keys with "." for "/" (optim.lr is optim/lr), as W&B shows
# a nested config. medtune runs this very config locally, without a key or network:
#   python -m tuning.run --space {space} --search wandb-bayes    # W&B's bayes + hyperband engine
# A hosted sweep (wandb sweep FILE; wandb agent ID) starts one training run per config, so it
# needs a `program` that trains one config and logs {metric} every epoch; medtune's CLI runs whole
# sweeps and is not that program. The runs medtune logs (offline: wandb sync results/NAME/wandb/
# offline-run-*) carry these same parameter names, so they line up with a hosted sweep's.
"""


def export_config(space_name: str, *, max_epochs: int | None = None, method: str = "bayes",
                  project: str = "medtune") -> dict[str, Any]:
    """The space's W&B sweep config, with its epoch budget and W&B hyperband's ``min_iter``."""
    space = get_space(space_name)
    budget = max_epochs or int(space.fixed.get("train/max_epochs", 60))
    settings = replace(SweepSettings(), max_epochs=budget)
    config = wandb_sweep_config(space, overrides={"train/max_epochs": budget},
                                min_iter=grace_epochs(settings), eta=settings.reduction_factor,
                                method=method)
    return {"name": f"medtune-{space.name}", "project": project, **config}


def violations(config: dict[str, Any]) -> list[str] | None:
    """W&B's schema violations of the config; None when the ``sweeps`` package is missing."""
    try:
        sweeps = require_sweeps()
    except ConfigError:
        return None
    return list(sweeps.schema_violations_from_proposed_config(config))


def to_yaml(config: dict[str, Any]) -> str:
    space = config["name"].removeprefix("medtune-")
    return (HEADER.format(space=space, metric=config["metric"]["name"])
            + yaml.safe_dump(config, sort_keys=False, default_flow_style=None))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tuning.export_wandb_sweep",
                                description=__doc__.split("\n\n")[1])
    p.add_argument("--space", required=True, choices=SPACE_NAMES, help="search space to export")
    p.add_argument("--out", type=Path, help="YAML file to write (default: print it)")
    p.add_argument("--max-epochs", type=int, help="epoch budget (default: the space's)")
    p.add_argument("--method", choices=("bayes", "random"), default="bayes",
                   help="W&B search method (default: bayes)")
    p.add_argument("--project", default="medtune", help="W&B project named in the config")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    config = export_config(args.space, max_epochs=args.max_epochs, method=args.method,
                           project=args.project)
    problems = violations(config)
    if problems:
        print("error: the config breaks W&B's sweep schema:\n  " + "\n  ".join(problems),
              file=sys.stderr)
        return 1
    text = to_yaml(config)
    if args.out is None:
        print(text, end="")
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
        print(f"wrote {args.out}", file=sys.stderr)
    if problems is None:
        print("note: not checked against W&B's schema (pip install sweeps to check)",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
