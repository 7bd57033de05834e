"""A self-contained model folder: weights, config, preprocessing, threshold, class names, versions.

``save_model_folder`` writes it (the sweep's ``best/`` is one); ``load_model_folder`` rebuilds the
network from it alone, reading the weights with ``torch.load(weights_only=True)`` (no pickled code).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import platform
import shutil
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

import torch

from core.config import TrialConfig
from core.errors import DataError
from core.module import TaskModule
from core.tasks import get_task
from core.train import build_module

logger = logging.getLogger(__name__)

FORMAT = "medtune-model/1"
WEIGHTS_FILE, CONFIG_FILE, THRESHOLD_FILE = "model.pt", "config.json", "threshold.json"
MODEL_FILE, METRICS_FILE = "model.json", "metrics.json"
_PACKAGES = {"medtune": "medtune", "torch": "torch", "monai": "monai", "numpy": "numpy",
             "SimpleITK": "SimpleITK", "pytorch_lightning": "pytorch-lightning"}


def versions() -> dict[str, str]:
    """Versions of Python and the packages a model was trained with ("unknown" if not installed)."""
    found = {"python": platform.python_version()}
    for key, dist in _PACKAGES.items():
        try:
            found[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[key] = "unknown"
    return found


@dataclass(frozen=True)
class LoadedModel:
    """A model folder in memory: the network (eval mode, CPU), its config and decision rule."""

    module: TaskModule
    config: TrialConfig
    threshold: float
    class_names: tuple[str, str]
    name: str
    folder: Path
    info: dict[str, Any] = field(default_factory=dict)  # model.json

    @property
    def task(self) -> str:
        return self.config.data.task

    @property
    def segmentation(self) -> bool:
        return get_task(self.task).kind == "segmentation"

    def metrics(self) -> dict[str, Any] | None:
        """The folder's ``metrics.json`` (val score and test metrics), if it has one."""
        path = self.folder / METRICS_FILE
        return json.loads(path.read_text()) if path.is_file() else None


def _write_json(path: Path, payload: Any) -> None:
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")


def save_model_folder(folder: Path, *, weights: Path | Mapping[str, torch.Tensor],
                      config: Mapping[str, Any] | TrialConfig, threshold: float, name: str,
                      metric: str | None = None, in_channels: int = 1,
                      training_data: Mapping[str, Any] | None = None) -> Path:
    """Write weights (a ``model.pt`` file or a state dict), config.json, threshold.json, model.json.

    ``config`` is the flat ``"group/key"`` TrialConfig; ``training_data`` is the reader's summary
    (case counts, masks...), kept as provenance.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = config if isinstance(config, TrialConfig) else TrialConfig.from_dict(dict(config))
    if isinstance(weights, (str, Path)):
        shutil.copy2(weights, folder / WEIGHTS_FILE)
    else:
        torch.save({k: v.detach().cpu() for k, v in weights.items()}, folder / WEIGHTS_FILE)
    _write_json(folder / CONFIG_FILE, cfg.to_dict())
    _write_json(folder / THRESHOLD_FILE, {"threshold": float(threshold), "chosen_on": "val",
                                          "metric": metric})
    preprocessing = cfg.to_dict()
    _write_json(folder / MODEL_FILE, {
        "format": FORMAT, "name": name, "task": cfg.data.task,
        "class_names": list(get_task(cfg.data.task).class_names), "threshold": float(threshold),
        "selection_metric": metric,
        "input": {"channels": int(in_channels), "shape": list(cfg.data.shape)},
        "preprocessing": {k.split("/", 1)[1]: v for k, v in preprocessing.items() if k.startswith("data/")},
        "versions": versions(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "training_data": dict(training_data or {}),
    })
    return folder


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise DataError(f"{path.parent} is not a model folder: {path.name} is missing. A model folder "
                        f"holds {WEIGHTS_FILE}, {CONFIG_FILE}, {THRESHOLD_FILE} and {MODEL_FILE} "
                        "(results/<name>/best/ after a run).")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"Cannot read {path}: {err}; it should be JSON written by medtune.") from err


def model_folder_of(path: Path) -> Path:
    """``path`` itself when it holds model.json, else its ``best/`` (a results folder was given)."""
    path = Path(path)
    if not (path / MODEL_FILE).is_file() and (path / "best" / MODEL_FILE).is_file():
        return path / "best"
    return path


def _load_weights(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise DataError(f"{path.parent} has no {WEIGHTS_FILE}; it is not a complete model folder.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling refusals come in many types
        raise DataError(f"Cannot load {path} as weights only: {err}. It must hold a plain state dict "
                        "(torch.save(net.state_dict(), path)).") from err
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(f"{path} holds a {type(state).__name__}, not a state dict of tensors.")
    return state


def _check_versions(saved: Mapping[str, str], folder: Path) -> None:
    current = versions()
    for key in ("torch", "monai"):
        then, now = saved.get(key, "unknown"), current[key]
        if then.split(".")[:2] != now.split(".")[:2]:
            logger.warning("%s was trained with %s %s; this is %s %s", folder, key, then, key, now)


def load_model_folder(path: Path) -> LoadedModel:
    """Rebuild the network of a model folder (or of a results folder's ``best/``) on the CPU, eval mode."""
    folder = model_folder_of(path)
    info = _read_json(folder / MODEL_FILE)
    if info.get("format") != FORMAT:
        raise DataError(f"{folder / MODEL_FILE} has format {info.get('format')!r}; this medtune reads "
                        f"{FORMAT!r}.")
    cfg = TrialConfig.from_dict(_read_json(folder / CONFIG_FILE))
    # the weights come from model.pt; a pretrained-weights path of the training machine is not needed
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, weights=None))
    threshold = float(_read_json(folder / THRESHOLD_FILE)["threshold"])
    channels = int(info.get("input", {}).get("channels", 1))
    module = build_module(cfg, sample_shape=(channels, *cfg.data.shape))
    try:
        module.net.load_state_dict(_load_weights(folder / WEIGHTS_FILE))
    except RuntimeError as err:
        raise DataError(f"{folder / WEIGHTS_FILE} does not fit the network of {folder / CONFIG_FILE}: "
                        f"{str(err).splitlines()[0]}") from err
    _check_versions(info.get("versions", {}), folder)
    module.cpu().eval()
    names = tuple(info.get("class_names") or get_task(cfg.data.task).class_names)
    return LoadedModel(module=module, config=cfg, threshold=threshold, class_names=names,
                       name=str(info.get("name") or folder.parent.name), folder=folder, info=info)
