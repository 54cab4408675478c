"""The characters `story eval concepts` measures, and how each is recognised in frames.

bob (a red striped sphere) is inside the world's vocabulary, so the judge reads his identity:
shape, colour and texture. zib (a sphere, pink above and teal below) is outside it: no caption
names its colours or its pattern, so the judge's colour and texture heads cannot say "zib".
Its identity is its colour signature, measured on the object wherever it is (placement-free):
both of its colours, at any shading, cover at least `SIGNATURE_SHARE` of the frame inside the
region where the judge sees the main object (a generated dusk sky can come within reach of
pink, so the whole frame is not searched).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

ZIB_TOP_RGB = (240, 120, 180)
"""Pink: 126 RGB units from the nearest palette colour (purple)."""
ZIB_BOTTOM_RGB = (20, 150, 150)
"""Teal: 99 RGB units from the nearest palette colour (green)."""
SIGNATURE_DISTANCE = 40.0
"""RGB distance from the nearest shade of a signature colour within which a pixel counts."""
SHADES = (0.5, 1.1)
"""Shades (multiples of the colour) a lit or shadowed surface may show."""
SIGNATURE_SHARE = 0.004
"""Share of the frame each signature colour must cover. The sheet's images: 1.7-2.5% pink,
1.0-1.8% teal; 300 miniature-world scenes: 0% of either."""


@dataclass(frozen=True)
class Character:
    """A character to train and judge: its images, class word, words for it and what it is."""

    name: str
    class_word: str
    words: str
    judged: dict[str, str]
    signature: tuple[tuple[int, int, int], ...] = field(default_factory=tuple)

    @property
    def identity(self) -> str:
        """The identity column's label."""
        parts = list(self.judged.values()) + (["colour signature"] if self.signature else [])
        return f"{self.name} ({' + '.join(parts)})"


CHARACTERS: dict[str, Character] = {
    "bob": Character(
        "bob",
        "sphere",
        "a red striped sphere",
        {"shape": "sphere", "colour": "red", "texture": "striped"},
    ),
    "zib": Character(
        "zib",
        "sphere",
        "a pink and teal sphere",
        {"shape": "sphere"},
        (ZIB_TOP_RGB, ZIB_BOTTOM_RGB),
    ),
}


def colour_shares(
    frames: np.ndarray,
    colours: tuple[tuple[int, int, int], ...],
    region: np.ndarray | None = None,
) -> np.ndarray:
    """Per colour, the share of pixels (over all frames) within SIGNATURE_DISTANCE of a shade
    of it (the pixel's projection on the colour, clipped to SHADES); with `region` (T, H, W)
    bool, only pixels inside it count (still as a share of all pixels)."""
    pixels = np.asarray(frames, dtype=np.float32).reshape(-1, 3)
    target = np.asarray(colours, dtype=np.float32)
    shade = np.clip(pixels @ target.T / (target * target).sum(axis=1), *SHADES)
    distance = np.linalg.norm(pixels[:, None, :] - shade[:, :, None] * target[None], axis=2)
    near = distance < SIGNATURE_DISTANCE
    if region is not None:
        near &= np.asarray(region, dtype=bool).reshape(-1, 1)
    return near.mean(axis=0)


def shows_signature(
    frames: np.ndarray,
    colours: tuple[tuple[int, int, int], ...],
    region: np.ndarray | None = None,
) -> float:
    """1.0 when every signature colour covers at least SIGNATURE_SHARE of the frames (inside
    `region`, when given), else 0.0."""
    return float((colour_shares(frames, colours, region) >= SIGNATURE_SHARE).all())


def object_region(probability: np.ndarray, threshold: float, grow: int = 2) -> np.ndarray:
    """(T, H, W) bool: where a judge sees the main object, grown by `grow` pixels, so a signature
    is looked for on the object wherever it is (placement-free) and not in, say, a dusk sky."""
    import torch
    import torch.nn.functional as F

    found = torch.from_numpy(np.asarray(probability) > threshold).float()[:, None]
    if grow:
        found = F.max_pool2d(found, 2 * grow + 1, stride=1, padding=grow)
    return found[:, 0].numpy() > 0
