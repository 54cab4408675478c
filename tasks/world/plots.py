"""Plots for evaluation in the world's grammar: a query (what to retrieve) and a prompt (the look).

A TD writes a plot's query as the motion and layout to retrieve (shape, motion, camera: what
changes the depth guide) and its prompt as the full look. `restyled` draws a look that differs
from a retrieved clip's in colour, texture and ground, so a render that copies the clip scores
nothing on them.
"""

from __future__ import annotations

import math
import random
from dataclasses import replace

import numpy as np

from story.tasks.world import captions as grammar
from story.tasks.world import miniworld

LOOK = ("colour", "texture", "background")


def query_text(shape: str, motion: str, camera: str, seed: int) -> str:
    """'a ball bounces, while the camera pans left.' in words drawn by `seed`."""
    rng = random.Random(seed * 7_919 + 3)
    noun = rng.choice(grammar.SHAPE_WORDS[shape])
    verb = rng.choice(grammar.MOTION_WORDS[motion])
    move = rng.choice(grammar.CAMERA_WORDS[camera])
    return f"a {noun} {verb}, while {move}."


def prompt_text(attributes: dict[str, str], seed: int) -> str:
    """A one-object caption stating all six attributes (the grammar's own templates)."""
    described = grammar.Described(
        shape=attributes["shape"],
        colour=attributes["colour"],
        texture=attributes["texture"],
        motion=attributes["motion"],
        background=attributes["background"],
        camera=attributes["camera"],
    )
    return grammar.caption(described, seed)


def restyled(clip: dict[str, str], seed: int) -> dict[str, str]:
    """A look (colour, texture, ground) unlike `clip`'s in all three, never a colour that
    vanishes on its ground; shape, motion and camera are `clip`'s."""
    rng = random.Random(seed * 104_729 + 11)
    ground = rng.choice([b for b in miniworld.BACKGROUNDS if b != clip["background"]])
    colours = [
        c for c in miniworld.COLOURS if c != clip["colour"] and c not in miniworld.CLASHES[ground]
    ]
    texture = rng.choice([t for t in miniworld.TEXTURES if t != clip["texture"]])
    return {**clip, "colour": rng.choice(colours), "texture": texture, "background": ground}


def with_look(spec: miniworld.SceneSpec, look: dict[str, str]) -> miniworld.SceneSpec:
    """`spec` with its main object's shape, colour and texture and its ground set from `look`."""
    main = replace(
        spec.objects[0],
        shape=look["shape"],
        colour=look["colour"],
        texture=look["texture"],
        secondary=None,
    )
    banned = {main.colour} | miniworld.CLASHES[look["background"]]
    free = next(c for c in miniworld.COLOURS if c not in banned)
    others = tuple(replace(o, colour=free) if o.colour in banned else o for o in spec.objects[1:])
    return replace(spec, objects=(main, *others), background=look["background"])


def without_objects(spec: miniworld.SceneSpec) -> miniworld.SceneSpec:
    """The same ground, sky and camera with every object moved far out of view."""
    return replace(spec, objects=tuple(replace(o, x=1.0e4, z=1.0e4) for o in spec.objects))


def another_take(spec: miniworld.SceneSpec, seed: int) -> miniworld.SceneSpec:
    """The same attributes and camera with the main object's size, start and phase redrawn (in
    `sample_scene`'s ranges): another real clip of the same plot, the real-vs-real floor of a
    Frechet distance."""
    rng = np.random.default_rng([seed, 31_337])
    main = replace(
        spec.objects[0],
        size=float(rng.uniform(0.45, 0.65)),
        x=float(rng.uniform(-0.5, 0.5)),
        z=float(rng.uniform(4.0, 5.5)),
        phase=float(rng.uniform(0.0, 2.0 * math.pi)),
    )
    return replace(spec, objects=(main, *spec.objects[1:]))
