"""The synthesis evaluation's cases: what is rendered, on which guide, and what it should show.

Production path (the main case), per scene seed of the split:
  plot query (shape, motion, camera of the scene) -> top hit of the split's evaluation library
  -> depth of that clip estimated by the bundled depth net (stored fp16, as the depth store does)
  -> prompt: the plot's shape, motion and camera with a look (colour, texture, ground) unlike the
     retrieved clip's in all three.
  The render should show the prompt's shape, colour, texture and ground and the clip's motion and
  camera. Its ideal is the retrieved scene re-rendered with the prompt's look (a real clip).
Controlled case: the scene's own exact depth and its own caption as the prompt.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from story.tasks.evaluation.eval_library import EvalLibrary
from story.tasks.training.t2v_data import miniworld_structure
from story.tasks.world import miniworld, plots, splits

RETRIEVED = ("shape", "motion", "camera")
LIBRARY_SIZE = 64
"""Library clips are rendered at this size before depth estimation (the sample library's)."""


@dataclass
class SynthesisCase:
    """One plot to render, its guide, and the truth to score the render against."""

    scene_seed: int
    prompt: str
    target: dict[str, str]
    guide: np.ndarray
    guide_mask: np.ndarray
    clip: np.ndarray
    ideal: np.ndarray
    another_take: np.ndarray
    background_only: np.ndarray
    query: str = ""
    clip_seed: int | None = None
    retrieval: dict[str, float] | None = None

    def frozen(self) -> np.ndarray:
        """The guide clip's first frame held for the whole clip (the stillness baseline)."""
        return np.repeat(self.clip[:1], len(self.clip), axis=0)


def _render(spec: miniworld.SceneSpec) -> miniworld.RenderedClip:
    return miniworld.render(spec)


def production_cases(
    split: str,
    count: int,
    library: EvalLibrary,
    estimate_depth: Callable[[np.ndarray, tuple[int, int]], np.ndarray],
    frames: int,
    height: int,
    width: int,
) -> list[SynthesisCase]:
    """`count` production-path cases of `split` (scene seeds of its "scenes" block)."""
    cases = []
    for seed in splits.seeds(split, "scenes", count):
        asked = miniworld.attributes(miniworld.sample_scene(splits.require(seed, split)))
        query = plots.query_text(asked["shape"], asked["motion"], asked["camera"], seed)
        found, _ = library.retrieve(query)
        native = miniworld.sample_scene(
            found, frames=frames, height=LIBRARY_SIZE, width=LIBRARY_SIZE
        )
        estimated = estimate_depth(_render(native).rgb, (height, width))
        spec = replace(native, height=height, width=width)
        clip = _render(spec)
        truth = miniworld.attributes(spec)
        look = plots.restyled(truth, seed)
        look["shape"] = asked["shape"]
        prompt_attrs = {**look, "motion": asked["motion"], "camera": asked["camera"]}
        ideal_spec = plots.with_look(spec, look)
        cases.append(
            SynthesisCase(
                scene_seed=seed,
                prompt=plots.prompt_text(prompt_attrs, seed),
                target={**look, "motion": truth["motion"], "camera": truth["camera"]},
                guide=estimated.astype(np.float16).astype(np.float32),
                guide_mask=clip.masks == 1,
                clip=clip.rgb,
                ideal=_render(ideal_spec).rgb,
                another_take=_render(plots.another_take(ideal_spec, seed)).rgb,
                background_only=_render(plots.without_objects(ideal_spec)).rgb,
                query=query,
                clip_seed=found,
                retrieval={name: float(truth[name] == asked[name]) for name in RETRIEVED},
            )
        )
    return cases


def controlled_cases(
    split: str, count: int, frames: int, height: int, width: int
) -> list[SynthesisCase]:
    """`count` controlled cases: each scene's exact depth, its own caption as the prompt."""
    cases = []
    for seed in splits.seeds(split, "scenes", count):
        spec = miniworld.sample_scene(
            splits.require(seed, split), frames=frames, height=height, width=width
        )
        clip = _render(spec)
        cases.append(
            SynthesisCase(
                scene_seed=seed,
                prompt=clip.caption,
                target=miniworld.attributes(spec),
                guide=miniworld_structure(clip.depth),
                guide_mask=clip.masks == 1,
                clip=clip.rgb,
                ideal=clip.rgb,
                another_take=_render(plots.another_take(spec, seed)).rgb,
                background_only=_render(plots.without_objects(spec)).rgb,
            )
        )
    return cases
