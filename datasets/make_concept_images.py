"""Render the example character "bob" (a red sphere with white stripes) in a few different scenes.

Writes datasets/concepts/bob/bob_<i>.png (64x64, first frame of a static-camera scene, bob near
the centre, each on a different background) and bob_<i>.mask.png, bob's object mask.
Run: python datasets/make_concept_images.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from story.tasks.world import miniworld
from story.tasks.world.portraits import portrait_scene

BOB = {"shape": "sphere", "colour": "red", "texture": "striped", "secondary": "white"}
BACKGROUNDS = ("grass", "sand", "snow", "dusk", "grass")


def bob_scene(seed: int, background: str, size: int = 64) -> miniworld.SceneSpec:
    """A one-object scene with bob in front of a still camera."""
    return portrait_scene(seed, background, size, **BOB)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).parent / "concepts" / "bob"))
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for i, background in enumerate(BACKGROUNDS):
        clip = miniworld.render(bob_scene(100 + i, background, args.size))
        Image.fromarray(clip.rgb[0]).save(out / f"bob_{i}.png")
        Image.fromarray((clip.masks[0] == 1).astype(np.uint8) * 255).save(out / f"bob_{i}.mask.png")
    print(f"wrote {len(BACKGROUNDS)} images to {out}")


if __name__ == "__main__":
    main()
