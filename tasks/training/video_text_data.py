"""Training data for the video-text encoder: miniature-world clips as frames, attributes, texts.

Clips are rendered once into a frame cache (uint8 memmap, `frames` evenly spaced frames each, the
frames an encoder reads at ingest), with their canonical attributes and scene description. Texts
are made per step from the description, in the caption grammar's words only: a full caption, the
query a plot would derive from it (appearance words dropped), or a partial description that
states a random subset of attributes. Each text carries the attributes it states, so a batch
knows every clip that a partial text truly matches. Free wording outside the grammar is left to
the query parser (`story.tasks.library.query_intent`), so hand-written test paraphrases measure
generalisation rather than a vocabulary tuned to them.

Flipping a clip left-right or playing it backwards is a new clip with known attributes (left and
right swap; towards and away, zoom in and out swap), so both serve as augmentation.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from story.tasks.script.query_prompt import derive_query_prompt
from story.tasks.world import captions as grammar
from story.tasks.world import miniworld as mw
from story.tasks.world import splits

ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "shape": mw.SHAPES,
    "colour": tuple(mw.COLOURS),
    "texture": mw.TEXTURES,
    "motion": (
        "static",
        "sideways_left",
        "sideways_right",
        "towards",
        "away",
        "bouncing",
        "circling",
    ),
    "camera": mw.CAMERAS,
    "background": tuple(mw.BACKGROUNDS),
}
RENDER_FRAMES = 16
SIZE = 64


def fine_motion(d: grammar.Described) -> str:
    """The motion label with the direction of a sideways move."""
    if d.motion == "sideways":
        return "sideways_left" if d.side < 0 else "sideways_right"
    return d.motion


def labels_of(d: grammar.Described) -> dict[str, str]:
    """Canonical attributes of a description, motion with its direction."""
    return {
        "shape": d.shape,
        "colour": d.colour,
        "texture": d.texture,
        "motion": fine_motion(d),
        "camera": d.camera,
        "background": d.background,
    }


_MIRROR_CAMERA = {"pan_left": "pan_right", "pan_right": "pan_left"}
_REVERSE_MOTION = {"towards": "away", "away": "towards"}
_REVERSE_CAMERA = {
    "pan_left": "pan_right",
    "pan_right": "pan_left",
    "zoom_in": "zoom_out",
    "zoom_out": "zoom_in",
}


def mirrored(d: grammar.Described) -> grammar.Described:
    """What a left-right flipped clip shows."""
    return replace(d, side=-d.side, camera=_MIRROR_CAMERA.get(d.camera, d.camera))


def reversed_in_time(d: grammar.Described) -> grammar.Described:
    """What a clip played backwards shows."""
    return replace(
        d,
        side=-d.side,
        motion=_REVERSE_MOTION.get(d.motion, d.motion),
        camera=_REVERSE_CAMERA.get(d.camera, d.camera),
    )


def frame_picks(total: int, frames: int) -> np.ndarray:
    """The evenly spaced frames an encoder reads (the same rule as at ingest)."""
    return np.linspace(0, total - 1, frames).round().astype(int)


@dataclass
class FrameCache:
    """Rendered clips on disk: frames (N, T, H, W, 3) uint8 memmap and one description each."""

    frames: np.ndarray
    described: list[grammar.Described]
    seeds: list[int]

    def __len__(self) -> int:
        return len(self.seeds)


def _describe_json(d: grammar.Described) -> dict:
    return {**d.__dict__, "others": [list(o) for o in d.others]}


def _describe_load(data: dict) -> grammar.Described:
    return grammar.Described(**{**data, "others": tuple(tuple(o) for o in data["others"])})


def build_cache(
    folder: Path, split: str, count: int, frames: int, start: int = 0, log_every: int = 500
) -> FrameCache:
    """Render `count` clips of the split's "library" seeds into `folder` (resumable)."""
    seeds = splits.seeds(split, "library", count, start)
    if split == splits.TRAIN:
        splits.require_all(seeds, splits.TRAIN)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{split}_{start}_{count}_{frames}.u8"
    meta = folder / f"{split}_{start}_{count}_{frames}.json"
    shape = (count, frames, SIZE, SIZE, 3)
    done = json.loads(meta.read_text()) if meta.exists() else {"filled": 0, "described": []}
    mode = "r+" if path.exists() else "w+"
    array = np.memmap(path, dtype=np.uint8, mode=mode, shape=shape)
    picks = frame_picks(RENDER_FRAMES, frames)
    described = [_describe_load(d) for d in done["described"]]
    for i in range(done["filled"], count):
        clip = mw.render(mw.sample_scene(seeds[i], frames=RENDER_FRAMES, height=SIZE, width=SIZE))
        array[i] = clip.rgb[picks]
        described.append(mw.describe(clip.spec))
        if (i + 1) % log_every == 0 or i + 1 == count:
            array.flush()
            meta.write_text(
                json.dumps({"filled": i + 1, "described": [_describe_json(d) for d in described]})
            )
            print(f"cache {split}: {i + 1}/{count} clips", flush=True)
    return FrameCache(np.memmap(path, dtype=np.uint8, mode="r", shape=shape), described, seeds)


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def partial_text(d: grammar.Described, rng: random.Random) -> tuple[str, dict[str, str]]:
    """A description stating a random subset of the attributes, in the grammar's words."""
    stated = {"shape": d.shape}
    words = []
    if rng.random() < 0.3:
        stated["colour"] = d.colour
        words.append(rng.choice(grammar.COLOUR_WORDS[d.colour]))
    if rng.random() < 0.2:
        stated["texture"] = d.texture
        words.append(rng.choice(grammar.TEXTURE_WORDS[d.texture]))
    words.append(rng.choice(grammar.SHAPE_WORDS[d.shape]))
    noun = " ".join(words)
    parts = [f"{_article(noun)} {noun}"]
    if rng.random() < 0.85:
        stated["motion"] = fine_motion(d)
        phrase = rng.choice(grammar.MOTION_WORDS[d.motion])
        if d.motion == "sideways":
            verb = phrase.split()[0]
            side = grammar._SIDE_WORDS.get(d.side, ("sideways",))
            phrase = f"{verb} {rng.choice(side)}"
        parts.append(phrase)
    if rng.random() < 0.5:
        stated["background"] = d.background
        parts.append(rng.choice(grammar.BACKGROUND_WORDS[d.background]))
    text = " ".join(parts)
    if rng.random() < 0.5:
        stated["camera"] = d.camera
        camera = rng.choice(grammar.CAMERA_WORDS[d.camera])
        text = f"{text}, while {camera}" if rng.random() < 0.6 else f"as {camera}, {text}"
    return text, stated


def make_text(d: grammar.Described, seed: int, rng: random.Random) -> tuple[str, dict[str, str]]:
    """A training text for a clip and the attributes it states."""
    kind = rng.random()
    full = grammar.caption(d, seed, variant=rng.randrange(12))
    if kind < 0.4:
        return full, labels_of(d)
    if kind < 0.7:
        query, _ = derive_query_prompt(full, {})
        stated = {k: v for k, v in labels_of(d).items() if k not in ("colour", "texture")}
        return query, stated
    return partial_text(d, rng)


def vocabulary_texts(count: int = 4000, seed: int = 0) -> list[str]:
    """Texts covering every grammar word the generator can emit (for the compact vocabulary)."""
    rng = random.Random(seed)
    texts = []
    for table in (
        grammar.SHAPE_WORDS,
        grammar.COLOUR_WORDS,
        grammar.TEXTURE_WORDS,
        grammar.MOTION_WORDS,
        grammar.BACKGROUND_WORDS,
        grammar.CAMERA_WORDS,
    ):
        for phrases in table.values():
            texts.extend(phrases)
    texts += ["to the left", "to the right", "leftwards", "rightwards", "small", "large"]
    for n in range(count):
        spec = mw.sample_scene(splits.seeds(splits.TRAIN, "library", 1, 5_000_000 + n)[0])
        d = mw.describe(spec)
        texts.append(make_text(d, spec.seed, rng)[0])
        texts.append(grammar.caption(d, spec.seed, variant=n % 12))
    return texts


def matches(stated: dict[str, str], clip: dict[str, str]) -> bool:
    """Whether a clip shows everything a text states."""
    return all(clip.get(k) == v for k, v in stated.items())
