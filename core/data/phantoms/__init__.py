"""Synthetic datasets written in the real on-disk formats, so the real readers always run."""
from __future__ import annotations

from core.data.phantoms.egfr import egfr_phantom
from core.data.phantoms.luna16 import luna16_phantom
from core.data.phantoms.segmentation import segmentation_phantom
from core.data.phantoms.xray import xray_phantom

__all__ = ["egfr_phantom", "luna16_phantom", "segmentation_phantom", "xray_phantom"]
