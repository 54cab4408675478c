"""A character's portrait scene: one object near the centre, in front of a still camera.

Concept sheets (bob's images, zib's character sheet) are rendered from it, one per background.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from story.tasks.world import miniworld


def portrait_scene(seed: int, background: str, size: int = 64, **look: str) -> miniworld.SceneSpec:
    """A one-frame, one-object scene with the given look (shape, colour, texture, ...), the
    object enlarged and kept near the centre."""
    spec = miniworld.sample_scene(
        seed,
        frames=1,
        height=size,
        width=size,
        n_objects=1,
        background=background,
        camera="static",
        motion="static",
        **look,
    )
    main = replace(spec.objects[0], size=0.6, x=float(np.clip(spec.objects[0].x, -0.3, 0.3)))
    return replace(spec, objects=(main,))
