"""Synthetic datasets written in the real on-disk formats, so the real readers always run."""
from __future__ import annotations

from core.data.phantoms.egfr import egfr_phantom

__all__ = ["egfr_phantom"]
