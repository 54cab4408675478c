"""The character shots concepts are judged on, and the clips a concept's LoRA may train on.

Shots are guide clips of a sphere moving under varied cameras, one ground each in turn, from the
split's "concepts" block; regularisation clips come from the train split only.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from story.tasks.training.t2v_data import miniworld_structure
from story.tasks.world import miniworld, splits


@dataclass
class ConceptShot:
    """A guide (T, H, W) in [-1, 1], its main-object mask, and what a render should show."""

    seed: int
    guide: np.ndarray
    mask: np.ndarray
    background: str
    motion: str
    camera: str


def shot_seeds(split: str, count: int, start: int = 0) -> list[int]:
    """Guide-clip seeds of concept shots: validation for every choice, test once per model."""
    seeds = splits.seeds(split, "concepts", count, start=start)
    splits.require_all(seeds, split)
    return seeds


def regularization_seeds(count: int) -> list[int]:
    """Clips a concept's LoRA trains on: the train split only."""
    seeds = splits.seeds(splits.TRAIN, "concepts", count)
    splits.require_all(seeds, splits.TRAIN)
    return seeds


def concept_shots(
    split: str, count: int, frames: int, size: int, class_shape: str = "sphere", start: int = 0
) -> list[ConceptShot]:
    """`count` single-object guide shots of the class shape, grounds in turn."""
    grounds = tuple(miniworld.BACKGROUNDS)
    shots = []
    for i, seed in enumerate(shot_seeds(split, count, start)):
        spec = miniworld.sample_scene(
            seed, frames=frames, height=size, width=size, n_objects=1, shape=class_shape
        )
        spec = replace(spec, background=grounds[i % len(grounds)])
        clip = miniworld.render(spec)
        shots.append(
            ConceptShot(
                seed=seed,
                guide=miniworld_structure(clip.depth),
                mask=clip.masks == 1,
                background=spec.background,
                motion=spec.objects[0].motion,
                camera=spec.camera,
            )
        )
    return shots
