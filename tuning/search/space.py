"""A declarative ``SearchSpace`` turned into Ray Tune's param space, and checked before a sweep."""
from __future__ import annotations

import itertools
from typing import Any

from ray import tune

from core.config import TrialConfig
from core.models import build_model
from search_spaces.types import Choice, Distribution, IntUniform, LogUniform, SearchSpace, Uniform


def to_tune(dist: Distribution) -> Any:
    """One declarative distribution as a Ray Tune sampler (Optuna reads these too)."""
    if isinstance(dist, LogUniform):
        return tune.loguniform(dist.low, dist.high)
    if isinstance(dist, Uniform):
        return tune.uniform(dist.low, dist.high)
    if isinstance(dist, IntUniform):
        return tune.randint(dist.low, dist.high + 1)  # Ray's upper bound is exclusive
    if isinstance(dist, Choice):
        return tune.choice(list(dist.values))
    raise TypeError(f"Unsupported distribution {dist!r}")


def nest(flat: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{"optim/lr": x}`` -> ``{"optim": {"lr": x}}``: Ray flattens keys on ``/`` itself."""
    nested: dict[str, dict[str, Any]] = {}
    for key, value in flat.items():
        group, _, name = key.partition("/")
        nested.setdefault(group, {})[name] = value
    return nested


def flatten(nested: dict[str, Any]) -> dict[str, Any]:
    """The inverse of ``nest``: a trial's config back to flat ``group/key`` names."""
    return {f"{group}/{name}": value
            for group, values in nested.items() for name, value in values.items()}


def param_space(space: SearchSpace, overrides: dict[str, Any]) -> dict[str, Any]:
    """Fixed defaults, then searched distributions, then fixed ``overrides`` (CLI flags)."""
    flat: dict[str, Any] = dict(space.fixed)
    flat.update({key: to_tune(dist) for key, dist in space.search.items()})
    flat.update(overrides)
    return nest(flat)


def check_space(space: SearchSpace, overrides: dict[str, Any], *,
                sample_shape: tuple[int, ...]) -> None:
    """Build the model for every combination of searched discrete model choices.

    Raises ``ConfigError`` (from the model) for a combination that cannot work with the data
    shape, before any trial starts; unknown keys raise too.
    """
    choices = {k: d.values for k, d in space.search.items()
               if isinstance(d, Choice) and k.startswith("model/") and k not in overrides}
    base = {**space.fixed, **overrides}
    TrialConfig.from_dict({**base, **{k: _example(d) for k, d in space.search.items()}})
    for combo in itertools.product(*choices.values()):
        cfg = TrialConfig.from_dict({**base, **dict(zip(choices, combo))})
        build_model(cfg.model, spatial_shape=tuple(sample_shape[1:]),
                    in_channels=int(sample_shape[0]), out_channels=2)


def _example(dist: Distribution) -> Any:
    """A value inside the distribution, to check the key is known to the config."""
    if isinstance(dist, Choice):
        return dist.values[0]
    return dist.low
