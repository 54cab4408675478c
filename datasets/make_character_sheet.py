"""A character sheet for a look no caption names: "zib", a sphere half pink, half teal.

The miniature world's captions know eight palette colours and four textures; zib's colours
(pink, teal) are off the palette and its pattern (two halves, split across the middle) is none of
the textures, so no prompt in words describes it. Each image is a miniature-world render of a
white sphere, recoloured inside its mask with the sphere's own shading kept: the upper half pink,
the lower half teal. Writes datasets/concepts/zib/zib_<i>.png and zib_<i>.mask.png (64x64).
Run: python datasets/make_character_sheet.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from story.tasks.evaluation.concept_characters import CHARACTERS, ZIB_BOTTOM_RGB, ZIB_TOP_RGB
from story.tasks.world import miniworld
from story.tasks.world.portraits import portrait_scene

NAME = "zib"
CLASS_WORD = CHARACTERS[NAME].class_word
SHEET_BACKGROUNDS = ("grass", "sand", "snow", "dusk", "grass")
WHITE = np.asarray(miniworld.COLOURS["white"], dtype=np.float32)


def sheet_scene(seed: int, background: str, size: int = 64) -> miniworld.SceneSpec:
    """A white plain sphere in front of a still camera, near the centre (recoloured later)."""
    return portrait_scene(seed, background, size, shape=CLASS_WORD, colour="white", texture="plain")


def recolour(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The white object inside `mask` repainted: pink above its middle row, teal below."""
    rows = np.nonzero(mask.any(axis=1))[0]
    if rows.size == 0:
        return rgb.copy()
    middle = (rows[0] + rows[-1]) / 2.0
    shade = rgb.astype(np.float32) / WHITE
    upper = (np.arange(rgb.shape[0]) < middle)[:, None, None]
    paint = np.where(upper, np.float32(ZIB_TOP_RGB), np.float32(ZIB_BOTTOM_RGB))
    painted = np.clip(paint * shade, 0, 255).astype(np.uint8)
    return np.where(mask[..., None], painted, rgb)


def make_sheet(out: Path, size: int = 64) -> list[Path]:
    """Write the sheet's images and masks into `out`; returns the image paths."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for i, background in enumerate(SHEET_BACKGROUNDS):
        clip = miniworld.render(sheet_scene(300 + i, background, size))
        mask = clip.masks[0] == 1
        path = out / f"{NAME}_{i}.png"
        Image.fromarray(recolour(clip.rgb[0], mask)).save(path)
        Image.fromarray(mask.astype(np.uint8) * 255).save(out / f"{NAME}_{i}.mask.png")
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).parent / "concepts" / NAME))
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    written = make_sheet(Path(args.out), args.size)
    print(f"wrote {len(written)} images to {args.out}")


if __name__ == "__main__":
    main()
