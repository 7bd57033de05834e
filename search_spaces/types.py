"""Declarative search-space types: distributions as plain data, readable by any searcher."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union


@dataclass(frozen=True)
class LogUniform:
    """A float drawn log-uniformly from [low, high] (learning rates, weight decay)."""

    low: float
    high: float


@dataclass(frozen=True)
class Uniform:
    """A float drawn uniformly from [low, high] (dropout)."""

    low: float
    high: float


@dataclass(frozen=True)
class IntUniform:
    """An integer drawn uniformly from [low, high], both included (patience)."""

    low: int
    high: int


@dataclass(frozen=True)
class Choice:
    """One of a few discrete values (batch size, kernel size)."""

    values: tuple[Any, ...]


Distribution = Union[LogUniform, Uniform, IntUniform, Choice]


def loguniform(low: float, high: float) -> LogUniform:
    return LogUniform(low, high)


def uniform(low: float, high: float) -> Uniform:
    return Uniform(low, high)


def randint(low: int, high: int) -> IntUniform:
    return IntUniform(low, high)


def choice(*values: Any) -> Choice:
    return Choice(tuple(values))


@dataclass(frozen=True)
class SearchSpace:
    """A task's search: fixed defaults, searched distributions, and the metric to optimise.

    ``fixed`` and ``search`` use the flat ``"group/key"`` names of ``core.config.TrialConfig``;
    a searched key overrides its fixed default.
    """

    name: str
    fixed: dict[str, Any]
    search: dict[str, Distribution]
    metric: str
    mode: str  # "max" or "min"
    quick: dict[str, Any] = field(default_factory=dict)  # overrides for --quick runs
    threshold_rule: str = "youden"  # how val picks the decision threshold: "youden" or "f1"

    def defaults(self) -> dict[str, Any]:
        """The seed project's config: fixed values only, nothing drawn."""
        return dict(self.fixed)
