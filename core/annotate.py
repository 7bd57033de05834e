"""A 2D image labelled with a model's prediction, as PNG bytes (for the HTTP API's answer)."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFont

MASK_TINT = np.array([255, 40, 40], dtype=np.float32)  # predicted foreground, blended at 45 %
MIN_WIDTH = 256  # pixels


def _font(height: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=height)
    except TypeError:  # Pillow < 10.1: one small bitmap font
        return ImageFont.load_default()


def labelled_png(image: np.ndarray, text: str, *, mask: np.ndarray | None = None) -> bytes:
    """PNG of a grey (H, W) image (min-max scaled) with ``text`` in a bar on top; a (H, W) bool
    ``mask`` is tinted red."""
    image = np.asarray(image, dtype=np.float32)
    lo, hi = float(image.min()), float(image.max())
    grey = (image - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(image)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    if mask is not None:
        chosen = np.asarray(mask, dtype=bool)
        rgb[chosen] = 0.55 * rgb[chosen] + 0.45 * MASK_TINT
    picture = Image.fromarray(rgb.clip(0, 255).astype(np.uint8), mode="RGB")
    if picture.width < MIN_WIDTH:  # small model-sized images: enlarge so the label stays legible
        factor = -(-MIN_WIDTH // picture.width)
        picture = picture.resize((picture.width * factor, picture.height * factor),
                                 Image.Resampling.NEAREST)
    bar = max(16, picture.height // 12)
    canvas = Image.new("RGB", (picture.width, picture.height + bar), (0, 0, 0))
    canvas.paste(picture, (0, bar))
    draw = ImageDraw.Draw(canvas)
    size = bar - 4
    while size > 8 and draw.textlength(text, font=_font(size)) > picture.width - 8:
        size -= 1
    draw.text((4, 1), text, fill=(255, 255, 0), font=_font(size))
    out = io.BytesIO()
    canvas.save(out, format="PNG")
    return out.getvalue()
