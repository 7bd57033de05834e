"""Search spaces, one module of plain data per task, named after the task; ``get_space(name)``
looks one up."""
from __future__ import annotations

import importlib

from core.tasks import REGISTRY
from search_spaces.types import SearchSpace

SPACE_NAMES = tuple(REGISTRY)  # every built-in task has a page here


def get_space(name: str) -> SearchSpace:
    """The space called ``name``; raises ``KeyError`` listing the known spaces."""
    if name not in SPACE_NAMES:
        raise KeyError(f"Unknown search space {name!r}; choose one of {', '.join(SPACE_NAMES)}")
    return importlib.import_module(f"search_spaces.{name}").SPACE
