"""A run's options as plain data, saved beside its results so it can be resumed or rerun exactly."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from core.data.prepared import DataOptions
from search_spaces.types import SearchSpace
from tuning.sweep import SweepSettings

OPTIONS_FILE = "run_options.json"


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
    """Write ``run_options.json`` into the results folder."""
    path = folder / OPTIONS_FILE
    path.write_text(json.dumps(options.to_json(), indent=2) + "\n")
    return path


def load_options(folder: Path) -> RunOptions:
    """The options a run was started with, for ``--resume``."""
    return RunOptions.from_json(json.loads((folder / OPTIONS_FILE).read_text()))
