"""A run's options as plain data, saved beside its results so it can be resumed or rerun exactly.

Each option's default and its ``tuning.run`` flag's help live once, on its dataclass field;
``RUN_FLAGS`` lists every flag of ``tuning.run`` made from them (``tuning.config.command``).
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from core.data.phantoms import DIFFICULTIES
from core.data.prepared import DataOptions
from search_spaces import SPACE_NAMES, get_space
from search_spaces.types import SearchSpace
from tuning.config.flags import Flag, FlagSpec, flag, flags_of
from tuning.config.secrets import redact
from tuning.search.settings import SweepSettings, epoch_budget
from tuning.tracking.callbacks import local_mlflow_uri

log = logging.getLogger(__name__)

OPTIONS_FILE = "run_options.json"
OPTIONS_YAML = "run_options.yaml"  # the same options as ``tuning.run --config`` keys
LOCAL_MLFLOW = "local"  # --mlflow without a URI: mlruns/ in the run's results folder
STORAGE_ENV = "MEDTUNE_STORAGE_PATH"
GROUPS = ("", "data", "sweep", "retrain and test", "where", "tracking")  # --help's order
# --quick: 8 trials, then the best config retrained with 2 seeds (a few minutes on 2 CPU cores)
QUICK = {"num_samples": 8, "top_k": 1, "retrain_seeds": 2, "cpus_per_trial": 1.0}


@dataclass
class RunOptions:
    """Everything a run needs beyond the space: data location, sweep size, where results go.

    ``name`` None becomes ``SPACE-YYYYmmdd-HHMMSS`` and ``sweep.max_epochs`` None the space's
    budget, here, so saved options are complete; ``storage_path`` None means
    ``$MEDTUNE_STORAGE_PATH``, else the results folder (see ``storage``). The cluster-dependent
    choices (GPUs per trial, trials at once) stay None until the run resolves them on its cluster.
    """

    space: str | SearchSpace = field(metadata=flag(
        "search space (task) to run; required, as a flag or a --config key", type=str,
        choices=SPACE_NAMES))
    data: DataOptions = field(default_factory=DataOptions)
    sweep: SweepSettings = field(default_factory=SweepSettings)
    overrides: dict[str, Any] = field(default_factory=dict)  # fixed config values, e.g. quick
    name: str | None = field(default=None, metadata=flag(
        "experiment name", group="where", default_text="SPACE-YYYYmmdd-HHMMSS"))
    results_dir: Path = field(default=Path("results"), metadata=flag(
        "results root", group="where", metavar="DIR"))
    storage_path: str | None = field(default=None, metadata=flag(
        "Ray storage (folder, NFS or s3://) for checkpoints, shared by every node", group="where",
        default_text=f"${STORAGE_ENV}, else the results folder"))
    address: str | None = field(default=None, metadata=flag(
        "Ray cluster to join ('auto' for a running one)", group="where",
        default_text="a local cluster on this machine"))
    folds: int = field(default=0, metadata=flag(
        "choose configs by grouped, stratified K-fold cross-validation over train + val (each trial "
        "reports its K fold models' mean val metric per epoch) instead of the one val split; for "
        "small data (under ~20 val positives); 0: the val split", group="sweep", metavar="K",
        default_text="0, the val split"))
    top_k: int = field(default=3, metadata=flag("best configs to retrain", group="retrain and test"))
    retrain_seeds: int = field(default=3, metadata=flag(
        "seeds per retrained config", group="retrain and test"))
    wandb: bool = field(default=True, metadata=flag(
        "do not track in W&B (tracked online with a key, else offline)", group="tracking",
        name="no-wandb", negate=True))
    wandb_project: str = field(default="medtune", metadata=flag(
        "W&B project for all runs", group="tracking"))
    mlflow: str | None = field(default=None, metadata=flag(
        "also track every trial and retrain in MLflow; without a URI, in mlruns/ of the results "
        "folder (a file: store)", group="tracking", metavar="URI", const=LOCAL_MLFLOW, default_text="off"))

    def __post_init__(self) -> None:
        space = get_space(self.space) if isinstance(self.space, str) else self.space
        if self.name is None:
            self.name = f"{space.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        if self.sweep.max_epochs is None:
            self.sweep = replace(self.sweep, max_epochs=epoch_budget(space.fixed))

    def results_path(self) -> Path:
        return (Path(self.results_dir) / self.name).resolve()

    def storage(self) -> str:
        """Ray's storage for this run: every node must reach it for a trial to move nodes."""
        base = self.storage_path or os.environ.get(STORAGE_ENV) or str(Path(self.results_dir).resolve())
        return f"{base.rstrip('/')}/{self.name}"

    def to_json(self) -> dict[str, Any]:
        """JSON-friendly form (paths as strings); a space object is saved by name."""
        payload = {f.name: getattr(self, f.name) for f in fields(self)}
        payload["space"] = self.space if isinstance(self.space, str) else self.space.name
        payload["data"], payload["sweep"] = asdict(self.data), asdict(self.sweep)
        return json.loads(json.dumps(payload, default=str))

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> RunOptions:
        data = {f.name: payload["data"].get(f.name) for f in fields(DataOptions)
                if f.name in payload["data"]}
        for key in ("root", "labels_csv", "cache_dir", "groups_csv"):
            if data.get(key) is not None:
                data[key] = Path(data[key])
        sweep = dict(payload["sweep"])
        if (sweep.get("gpus_per_trial") or 0) < 0:  # runs saved before automatic choices were None
            sweep["gpus_per_trial"] = None
        if sweep.get("max_concurrent") == 0:
            sweep["max_concurrent"] = None
        rest = {k: v for k, v in payload.items() if k not in ("data", "sweep")}
        rest["results_dir"] = Path(rest["results_dir"])
        rest["overrides"] = {k: tuple(v) if isinstance(v, list) else v
                             for k, v in rest.get("overrides", {}).items()}
        return cls(data=DataOptions(**data), sweep=SweepSettings(**sweep), **rest)


FINGERPRINT_KEY = "data_fingerprint"  # in run_options.json: the prepared data's cache key


def shown(options: RunOptions) -> RunOptions:
    """``options`` with URL passwords masked, for anything written or shown (not for connecting)."""
    return replace(options, mlflow=redact(options.mlflow),
                   sweep=replace(options.sweep, optuna_storage=redact(options.sweep.optuna_storage)))


def options_folders(options: RunOptions) -> list[Path]:
    """Where a run's options are saved: its results folder and, when that is another local
    folder, its Ray storage (so a new head resumes from shared storage alone)."""
    folders = [options.results_path()]
    storage = options.storage()
    if "://" not in storage or storage.startswith("file://"):
        shared = Path(storage.removeprefix("file://")).resolve()
        if shared != folders[0]:
            folders.append(shared)
    return folders


def save_options(options: RunOptions, folder: Path, *, fingerprint: str | None = None) -> Path:
    """Write ``run_options.json`` and ``run_options.yaml`` (a ``--config`` file) into ``folder``,
    each atomically, URL passwords masked; ``fingerprint`` (the data's cache key) is kept for
    ``--resume`` to compare."""
    from tuning.config.atomic import write_text_atomic

    folder.mkdir(parents=True, exist_ok=True)
    payload = redact(options.to_json())
    if fingerprint is not None:
        payload[FINGERPRINT_KEY] = fingerprint
    path = write_text_atomic(folder / OPTIONS_FILE, json.dumps(payload, indent=2) + "\n")
    flags, unexpressed = run_flags(options)
    flags, unexpressed = redact(flags), redact(unexpressed)
    text = (f"# python -m tuning.run --config {folder / OPTIONS_YAML} --name NEW_NAME  reruns this run\n"
            + yaml.safe_dump(flags, sort_keys=False))
    if unexpressed:
        log.warning("run_options.yaml cannot express %s as flags; a rerun from it uses the defaults",
                    unexpressed)
        text += "".join(f"# not a flag, not rerun: {k} = {v!r}\n" for k, v in unexpressed.items())
    write_text_atomic(folder / OPTIONS_YAML, text)
    return path


def save_run_options(options: RunOptions, *, fingerprint: str | None = None) -> None:
    """``save_options`` into every folder of ``options_folders``."""
    for folder in options_folders(options):
        save_options(options, folder, fingerprint=fingerprint)


def read_saved(folder: Path) -> dict[str, Any]:
    """The saved ``run_options.json`` of ``folder`` as a dict."""
    return json.loads((folder / OPTIONS_FILE).read_text(encoding="utf-8"))


def load_options(folder: Path) -> RunOptions:
    """The options a run was started with, for ``--resume`` (passwords in URLs come back masked)."""
    payload = read_saved(folder)
    payload.pop(FINGERPRINT_KEY, None)
    return RunOptions.from_json(payload)


def find_saved(options: RunOptions) -> Path | None:
    """The first folder of ``options_folders`` holding ``run_options.json``, else None."""
    return next((f for f in options_folders(options) if (f / OPTIONS_FILE).is_file()), None)


@dataclass
class CommandFlags:
    """Flags of ``tuning.run`` that are not run options: they choose or shape the options."""

    config: Path | None = field(default=None, metadata=flag(
        "read options from a YAML file (keys: these flags' names); flags override it",
        metavar="YAML", default_text="none"))
    weights: Path | None = field(default=None, metadata=flag(
        "local pretrained weights for the 2D classifier (nothing is downloaded)", group="data",
        metavar="FILE", default_text="random initialisation"))
    quick: bool = field(default=False, metadata=flag(
        f"a few-minute preset: {QUICK}, the space's short epoch budget", group="sweep"))
    resume: bool = field(default=False, metadata=flag(
        "continue the run --name (its saved options, from its results folder or --storage-path) "
        "after its driver stopped; other flags may only change --address, --storage-path, "
        "--results-dir, --data (same content: its fingerprint is checked), and give again a "
        "--optuna-storage/--mlflow URL's password",
        group="where"))


DATA_FLAGS = {  # DataOptions (core) holds no CLI text: its flags' help lives here
    "root": FlagSpec("dataset folder", group="data", name="data", metavar="DIR",
                     default_text="the built-in phantom"),
    "labels_csv": FlagSpec("labels CSV", group="data", metavar="CSV",
                           default_text="the one CSV in --data"),
    "id_column": FlagSpec("CSV column holding the case id", group="data"),
    "label_column": FlagSpec("CSV label column", group="data"),
    "positive_value": FlagSpec("label value of the positive class", group="data"),
    "negative_value": FlagSpec("label value of the negative class (any other value, beside unknown "
                               "markers, stops the run)", group="data"),
    "group_regex": FlagSpec("the first capture group of a file name (without suffix) is the patient "
                            "id, e.g. '^(patient\\d+)_'", group="data", metavar="REGEX",
                            default_text="each task's own rule"),
    "phantom_difficulty": FlagSpec("without --data: how hard the built-in phantom is (hard leaves room "
                                   "for the search; easy is clearly separable)", group="data",
                                   choices=DIFFICULTIES),
    "groups_csv": FlagSpec("CSV with columns name (file stem or case id) and group (patient id)",
                           group="data", metavar="CSV", default_text="each task's own rule"),
}


def _run_flags() -> tuple[Flag, ...]:
    made = [*flags_of(RunOptions), *flags_of(DataOptions, DATA_FLAGS), *flags_of(CommandFlags),
            *flags_of(SweepSettings)]
    return tuple(sorted(made, key=lambda f: GROUPS.index(f.spec.group)))


RUN_FLAGS = _run_flags()


def config_keys() -> list[str]:
    """The keys of a ``--config`` file (and of ``run_options.yaml``), underscored."""
    return sorted(f.key for f in RUN_FLAGS if f.key != "config")


def quick_overrides(space: SearchSpace) -> dict[str, Any]:
    """What ``--quick`` adds to the overrides (its epoch budget goes to max_epochs instead)."""
    return {k: v for k, v in space.quick.items() if k != "train/max_epochs"}


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def run_flags(options: RunOptions) -> tuple[dict[str, Any], dict[str, Any]]:
    """The options as ``tuning.run`` flags (``--config`` keys), and the settings no flag expresses."""
    space = get_space(options.space) if isinstance(options.space, str) else options.space
    rest = dict(options.overrides)
    weights = rest.pop("model/weights", None)
    quick = quick_overrides(space)
    is_quick = bool(quick) and all(k in rest and _plain(rest[k]) == _plain(v) for k, v in quick.items())
    rest = {k: v for k, v in rest.items() if not (is_quick and k in quick)}
    owners = {RunOptions: options, DataOptions: options.data, SweepSettings: options.sweep}
    values = {f.key: f.flag_value(getattr(owners[f.owner], f.field))
              for f in RUN_FLAGS if f.owner in owners}
    values.update(space=space.name, weights=weights, quick=is_quick)
    if options.mlflow is not None and options.mlflow == local_mlflow_uri(options.results_path()):
        values["mlflow"] = True  # a rerun under another name logs to its own folder
    unexpressed = {f"overrides.{k}": v for k, v in rest.items()}
    flagged = {f.field for f in RUN_FLAGS if f.owner is SweepSettings}
    for f in fields(options.sweep):
        value = getattr(options.sweep, f.name)
        if f.name not in flagged and value != f.default:
            unexpressed[f"sweep.{f.name}"] = value
    flags = {f.key: values[f.key] for f in RUN_FLAGS if f.key in values}
    return {k: str(v) if isinstance(v, Path) else v for k, v in flags.items()}, unexpressed
