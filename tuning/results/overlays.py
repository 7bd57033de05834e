"""Segmentation overlays for the report: test images with the true and predicted outlines."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from core.metrics import segmentation_scores

TRUE_COLOUR, PRED_COLOUR = "lime", "red"


def _outline(ax, mask: np.ndarray, colour: str) -> None:
    """Draw the 0.5 contour of a 0/1 (H, W) mask; nothing for an empty or full mask."""
    if mask.any() and not mask.all():
        ax.contour(mask.astype(float), levels=[0.5], colors=colour, linewidths=1.2)


def save_overlays(folder: Path, images: np.ndarray, masks: np.ndarray, probs: np.ndarray, *,
                  n: int = 6, threshold: float = 0.5) -> list[Path]:
    """PNGs of ``n`` test images spread over the set: true outline green, predicted red, Dice in the title.

    images: (N, 1, H, W) in [0, 1]; masks: (N, H, W) 0/1; probs: (N, H, W) foreground probabilities.
    """
    images, masks, probs = np.asarray(images), np.asarray(masks), np.asarray(probs)
    if not (len(images) == len(masks) == len(probs)) or images.shape[2:] != masks.shape[1:] \
            or masks.shape != probs.shape:
        raise ValueError(f"save_overlays needs images (N, 1, H, W), masks and probs (N, H, W); got "
                         f"{images.shape}, {masks.shape}, {probs.shape}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    dice = segmentation_scores(masks, probs, threshold=threshold)["dice"]
    chosen = np.unique(np.linspace(0, len(images) - 1, min(n, len(images))).round().astype(int))
    paths = []
    for i in chosen:
        fig = Figure(figsize=(3.2, 3.4), dpi=100)  # no pyplot: no global figure or backend state
        FigureCanvasAgg(fig)
        ax = fig.subplots()
        ax.imshow(images[i, 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        _outline(ax, masks[i] > 0, TRUE_COLOUR)
        _outline(ax, probs[i] >= threshold, PRED_COLOUR)
        ax.set_title(f"test image {i}: Dice {dice[i]:.3f}\ngreen: truth, red: prediction", fontsize=8)
        ax.set_axis_off()
        paths.append(folder / f"overlay_{i:04d}.png")
        fig.savefig(paths[-1], bbox_inches="tight")
    return paths
