"""Search spaces, one module of plain data per task; ``get_space(name)`` looks one up."""
from __future__ import annotations

import importlib

from search_spaces.types import SearchSpace

SPACE_NAMES = ("egfr", "luna16", "segmentation", "xray")


def get_space(name: str) -> SearchSpace:
    """The space called ``name``; raises ``KeyError`` listing the known spaces."""
    if name not in SPACE_NAMES:
        raise KeyError(f"Unknown search space {name!r}; choose one of {', '.join(SPACE_NAMES)}")
    return importlib.import_module(f"search_spaces.{name}").SPACE
