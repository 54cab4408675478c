"""Burn-ins: text drawn into pictures on a dark box, legible at any frame size."""

from __future__ import annotations

import cv2
import numpy as np

FONT = cv2.FONT_HERSHEY_SIMPLEX
TOP_LEFT, TOP_RIGHT, BOTTOM_LEFT, BOTTOM_RIGHT = "tl", "tr", "bl", "br"


def text_scale(width: int) -> tuple[float, int]:
    """Font scale and stroke for a picture `width` pixels wide: growing with it, never below a
    legible minimum."""
    scale = max(0.4, width / 1400)
    return scale, max(1, round(scale * 2))


def burn_text(image: np.ndarray, text: str, corner: str, scale: float | None = None) -> np.ndarray:
    """`image` with `text` in white on a translucent black box in one corner (a new array)."""
    out = image.copy()
    height, width = out.shape[:2]
    size, thickness = text_scale(width) if scale is None else (scale, max(1, round(scale * 2)))
    (w, h), base = cv2.getTextSize(text, FONT, size, thickness)
    pad = max(2, h // 3)
    x = pad if corner in (TOP_LEFT, BOTTOM_LEFT) else max(pad, width - w - pad * 2)
    y = pad + h if corner in (TOP_LEFT, TOP_RIGHT) else height - base - pad
    x0, y0 = max(0, x - pad), max(0, y - h - pad)
    x1, y1 = min(width, x + w + pad), min(height, y + base + pad)
    box = out[y0:y1, x0:x1].astype(np.float32)
    out[y0:y1, x0:x1] = (box * 0.35).astype(np.uint8)
    cv2.putText(out, text, (x, y), FONT, size, (255, 255, 255), thickness, cv2.LINE_AA)
    return out
