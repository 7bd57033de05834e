"""A run's options as plain data, saved beside its results so it can be resumed or rerun exactly."""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from core.data.prepared import DataOptions
from search_spaces import get_space
from search_spaces.types import SearchSpace
from tuning.sweep import SweepSettings
from tuning.tracking import local_mlflow_uri

log = logging.getLogger(__name__)

OPTIONS_FILE = "run_options.json"
OPTIONS_YAML = "run_options.yaml"  # the same options as ``tuning.run --config`` keys


@dataclass
class RunOptions:
    """Everything a run needs beyond the space: data location, sweep size, where results go."""

    space: str | SearchSpace
    data: DataOptions = field(default_factory=DataOptions)
    sweep: SweepSettings = field(default_factory=SweepSettings)
    overrides: dict[str, Any] = field(default_factory=dict)  # fixed config values, e.g. quick
    name: str = ""
    results_dir: Path = Path("results")
    storage_path: str | None = None  # default: the run's results folder
    address: str | None = None
    top_k: int = 3
    retrain_seeds: int = 3
    wandb: bool = True
    wandb_project: str = "medtune"
    mlflow: str | None = None  # MLflow tracking URI; None: no MLflow

    def results_path(self) -> Path:
        return (Path(self.results_dir) / self.name).resolve()

    def storage(self) -> str:
        """Ray's storage for this run: every node must reach it for a trial to move nodes."""
        base = self.storage_path or str(Path(self.results_dir).resolve())
        return f"{base.rstrip('/')}/{self.name}"

    def to_json(self) -> dict[str, Any]:
        """JSON-friendly form (paths as strings); a space object is saved by name."""
        name = self.space if isinstance(self.space, str) else self.space.name
        return json.loads(json.dumps(asdict(replace(self, space=name)), default=str))

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> RunOptions:
        data = {f.name: payload["data"].get(f.name) for f in fields(DataOptions)
                if f.name in payload["data"]}
        for key in ("root", "labels_csv", "cache_dir"):
            if data.get(key) is not None:
                data[key] = Path(data[key])
        sweep = SweepSettings(**payload["sweep"])
        rest = {k: v for k, v in payload.items() if k not in ("data", "sweep")}
        rest["results_dir"] = Path(rest["results_dir"])
        rest["overrides"] = {k: tuple(v) if isinstance(v, list) else v
                             for k, v in rest.get("overrides", {}).items()}
        return cls(data=DataOptions(**data), sweep=sweep, **rest)


def save_options(options: RunOptions, folder: Path) -> Path:
    """Write ``run_options.json`` and ``run_options.yaml`` (a ``--config`` file) into the results folder."""
    path = folder / OPTIONS_FILE
    path.write_text(json.dumps(options.to_json(), indent=2) + "\n")
    flags, unexpressed = run_flags(options)
    text = (f"# python -m tuning.run --config {folder / OPTIONS_YAML} --name NEW_NAME  reruns this run\n"
            + yaml.safe_dump(flags, sort_keys=False))
    if unexpressed:
        log.warning("run_options.yaml cannot express %s as flags; a rerun from it uses the defaults",
                    unexpressed)
        text += "".join(f"# not a flag, not rerun: {k} = {v!r}\n" for k, v in unexpressed.items())
    (folder / OPTIONS_YAML).write_text(text, encoding="utf-8")
    return path


def load_options(folder: Path) -> RunOptions:
    """The options a run was started with, for ``--resume``."""
    return RunOptions.from_json(json.loads((folder / OPTIONS_FILE).read_text(encoding="utf-8")))


def _quick_overrides(space: SearchSpace) -> dict[str, Any]:
    """What ``--quick`` adds to the overrides (its epoch budget goes to max_epochs instead)."""
    return {k: v for k, v in space.quick.items() if k != "train/max_epochs"}


_SWEEP_FLAGS = {"time_budget_s": "time_budget"}  # SweepSettings field -> tuning.run flag


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def run_flags(options: RunOptions) -> tuple[dict[str, Any], dict[str, Any]]:
    """The options as ``tuning.run`` flags (``--config`` keys), and the settings no flag expresses."""
    from tuning.run import config_keys  # here: tuning.run imports this module

    keys = config_keys()
    space = get_space(options.space) if isinstance(options.space, str) else options.space
    rest = dict(options.overrides)
    weights = rest.pop("model/weights", None)
    quick = _quick_overrides(space)
    is_quick = bool(quick) and all(k in rest and _plain(rest[k]) == _plain(v) for k, v in quick.items())
    rest = {k: v for k, v in rest.items() if not (is_quick and k in quick)}
    mlflow = options.mlflow
    if mlflow is not None and mlflow == local_mlflow_uri(options.results_path()):
        mlflow = True  # a rerun under another name logs to its own folder
    d = options.data
    flags = {"space": space.name, "data": d.root, "labels_csv": d.labels_csv, "id_column": d.id_column,
             "label_column": d.label_column, "positive_value": d.positive_value, "weights": weights,
             "quick": is_quick, "top_k": options.top_k, "retrain_seeds": options.retrain_seeds,
             "name": options.name, "results_dir": options.results_dir,
             "storage_path": options.storage_path, "address": options.address,
             "wandb_project": options.wandb_project, "no_wandb": not options.wandb, "mlflow": mlflow}
    unexpressed = {f"overrides.{k}": v for k, v in rest.items()}
    for f in fields(options.sweep):  # sweep settings share their flags' names (time_budget_s aside)
        flag, value = _SWEEP_FLAGS.get(f.name, f.name), getattr(options.sweep, f.name)
        if flag in keys:
            flags[flag] = value
        elif value != f.default:
            unexpressed[f"sweep.{f.name}"] = value
    flags = {k: str(v) if isinstance(v, Path) else v for k, v in flags.items() if k in keys}
    return flags, unexpressed
