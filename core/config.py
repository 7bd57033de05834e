"""Trial configuration: one dataclass per concern, built from a flat ``"group/key"`` dict.

A search space hands out flat dicts such as ``{"optim/lr": 3e-4, "model/kernel_size": 3}``;
``TrialConfig.from_dict`` turns one into typed dataclasses and rejects unknown keys loudly,
so a typo in a space fails before the first trial, not forty trials in.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from core.errors import ConfigError


@dataclass(frozen=True)
class DataConfig:
    """How raw scans become arrays: target shape, intensity window, split fractions."""

    task: str = "egfr"
    shape: tuple[int, ...] = (32, 32, 32)  # (D, H, W) for 3D, (H, W) for 2D
    hu_window: tuple[float, float] = (-1000.0, 400.0)  # HU clipped to this range, then scaled to [0, 1]
    crop_margin_mm: float = 10.0  # margin around a tumour mask's bounding box (when spacing is None)
    spacing: tuple[float, float, float] | None = None  # (z, y, x) mm to resample to; None: resize
    split: tuple[float, float, float] = (0.70, 0.15, 0.15)  # train / val / test
    negative_ratio: float = 0.0  # negatives sampled per positive each epoch (0: keep all)
    negative_pool_ratio: float = 20.0  # luna16: negatives cached per positive, per split (seeded)
    augment: bool = False  # random flips, offsets, scaling, rotation and noise on train only


@dataclass(frozen=True)
class ModelConfig:
    """Network choice and its shape parameters (MONAI argument names where they exist)."""

    name: str = "cnn3d"
    channels: tuple[int, ...] = (16, 32, 64)
    kernel_size: int = 2
    pool_size: int = 3
    dropout: float = 0.3
    hidden: int = 64  # width of the first fully connected layer
    num_res_units: int = 2  # UNet only
    weights: str | None = None  # optional local pretrained weights file


@dataclass(frozen=True)
class LossConfig:
    """Loss by registry name; class weights come from the training split, not from here."""

    name: str = "weighted_bce"


@dataclass(frozen=True)
class OptimConfig:
    """Adam and ReduceLROnPlateau on val loss, with the seed projects' settings."""

    lr: float = 3e-4
    weight_decay: float = 0.0
    plateau_factor: float = 0.5
    plateau_patience: int = 5
    plateau_threshold: float = 1e-3


@dataclass(frozen=True)
class TrainConfig:
    """Loop settings: batch size, epoch budget, early-stopping patience, seed, precision."""

    batch_size: int = 32
    max_epochs: int = 50
    patience: int = 20
    seed: int = 42
    precision: str = "auto"  # "auto": bf16-mixed on a GPU that supports it, else 32-true
    num_workers: int = 0
    # On a GPU, train+val arrays are copied there once when they fit this fraction of its free
    # memory times device_share; 0: never (host path: pinned memory, loader workers).
    device_data_fraction: float = 0.25
    device_share: float = 1.0  # the part of the GPU this run holds (a trial: its --gpus-per-trial)


_GROUPS = {
    "data": DataConfig,
    "model": ModelConfig,
    "loss": LossConfig,
    "optim": OptimConfig,
    "train": TrainConfig,
}


@dataclass(frozen=True)
class TrialConfig:
    """Everything one training run needs; plain data, passed down, never global."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @classmethod
    def from_dict(cls, flat: dict[str, Any]) -> TrialConfig:
        """Build from ``{"group/key": value}``; unknown groups or keys raise ``ConfigError``."""
        grouped: dict[str, dict[str, Any]] = {name: {} for name in _GROUPS}
        for key, value in flat.items():
            group, _, name = key.partition("/")
            if group not in _GROUPS or not name:
                raise ConfigError(f"Unknown config key: {key!r}; keys look like 'group/name' "
                                  f"with group one of {sorted(_GROUPS)}")
            known = {f.name: f for f in dataclasses.fields(_GROUPS[group])}
            if name not in known:
                raise ConfigError(f"Unknown config key: {key!r}; {group}/ accepts {sorted(known)}")
            grouped[group][name] = _coerce(value, known[name].default)
        return cls(**{g: _GROUPS[g](**kw) for g, kw in grouped.items()})

    def to_dict(self) -> dict[str, Any]:
        """The flat ``{"group/key": value}`` form, JSON-friendly (tuples become lists)."""
        flat: dict[str, Any] = {}
        for group in _GROUPS:
            for key, value in dataclasses.asdict(getattr(self, group)).items():
                flat[f"{group}/{key}"] = list(value) if isinstance(value, tuple) else value
        return flat


def _coerce(value: Any, default: Any) -> Any:
    """Lists from JSON or Ray become tuples where the field holds a tuple."""
    if isinstance(default, tuple) and isinstance(value, list):
        return tuple(value)
    if hasattr(value, "item") and not isinstance(value, (list, tuple)):  # numpy scalars from Ray
        return value.item()
    return value
