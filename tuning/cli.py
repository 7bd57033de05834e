"""medtune run|predict|serve|compare|export-wandb-sweep [ARGS...]

One console command for medtune's entry points; each subcommand runs the same ``main`` as its
``python -m tuning.<module>`` form, with the same flags (``medtune run --help``).
"""
from __future__ import annotations

import argparse
import importlib
import sys

from tuning import __version__

COMMANDS = {
    "run": ("tuning.run", "sweep a space, retrain the best configs, test once"),
    "predict": ("tuning.serve.predict", "predict with a run's best model on files or folders"),
    "serve": ("tuning.serve.app", "serve a run's best model over HTTP"),
    "compare": ("tuning.results.compare", "put finished runs side by side"),
    "export-wandb-sweep": ("tuning.tracking.export", "write a space as a W&B sweep config"),
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="medtune", description="Hyperparameter search for medical-imaging deep learning.",
        epilog="\n".join(f"  {name:20} {text}" for name, (_, text) in COMMANDS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"medtune {__version__}")
    p.add_argument("command", choices=COMMANDS, help="what to do (below)")
    p.add_argument("args", nargs=argparse.REMAINDER, help="the command's own flags")
    return p


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``argv`` (default: the process's arguments) to the subcommand's ``main``."""
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    module = importlib.import_module(COMMANDS[args.command][0])
    return module.main(args.args)


if __name__ == "__main__":
    sys.exit(main())
