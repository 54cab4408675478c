"""Scene grammar of the miniature world: captions with paraphrase variety, and their parser.

Every caption names the main object's shape, colour, texture and motion, the background and
the camera, in words drawn from synonym tables keyed by the canonical attribute names, so
`attributes_from_caption` can map any wording (or a free-form prompt) back to those names.
The main object is always described before any other object, and other objects are only
named by colour and shape, so the first mention of an attribute belongs to the main object.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

SHAPE_WORDS: dict[str, tuple[str, ...]] = {
    "sphere": ("sphere", "ball", "orb"),
    "cube": ("cube", "box", "block"),
    "cylinder": ("cylinder", "drum", "pillar"),
    "cone": ("cone", "spire", "pointed cone"),
}
SHAPE_PLURAL_EXTRA: dict[str, tuple[str, ...]] = {
    "sphere": ("spheres", "balls", "orbs"),
    "cube": ("cubes", "boxes", "blocks", "cuboid"),
    "cylinder": ("cylinders", "drums", "pillars", "cylindrical"),
    "cone": ("cones", "spires", "conical"),
}
COLOUR_WORDS: dict[str, tuple[str, ...]] = {
    "red": ("red", "crimson", "scarlet"),
    "green": ("green", "emerald"),
    "blue": ("blue", "azure", "cobalt"),
    "yellow": ("yellow", "golden", "lemon"),
    "purple": ("purple", "violet"),
    "orange": ("orange", "tangerine"),
    "white": ("white", "ivory"),
    "black": ("black", "ebony", "jet-black"),
}
COLOUR_EXTRA: dict[str, tuple[str, ...]] = {"purple": ("magenta", "lilac"), "yellow": ("gold",)}
TEXTURE_WORDS: dict[str, tuple[str, ...]] = {
    "plain": ("plain", "solid-coloured", "uniformly coloured"),
    "striped": ("striped", "stripy", "banded"),
    "checkered": ("checkered", "chequered", "checked"),
    "dotted": ("dotted", "polka-dot", "spotted"),
}
TEXTURE_EXTRA: dict[str, tuple[str, ...]] = {
    "plain": ("solid", "solid colored", "untextured", "uniform"),
    "striped": ("stripes", "stripe", "with stripes"),
    "checkered": ("checkerboard", "checker", "checkers", "chequerboard"),
    "dotted": ("dots", "polka dots", "polka dot", "spots"),
}
MOTION_WORDS: dict[str, tuple[str, ...]] = {
    "static": ("sits still", "rests motionless", "stays put", "stands still"),
    "sideways": ("slides sideways", "moves sideways", "drifts sideways"),
    "towards": ("approaches the camera", "comes towards the viewer", "moves towards the camera"),
    "away": ("moves away from the camera", "recedes into the distance", "drifts away"),
    "bouncing": ("bounces", "hops up and down", "bounces up and down"),
    "circling": ("circles around", "moves in a circle", "goes round in a loop"),
}
MOTION_EXTRA: dict[str, tuple[str, ...]] = {
    "static": ("static", "still", "motionless", "stationary", "resting", "sitting", "standing"),
    "sideways": (
        "sideways",
        "slides",
        "sliding",
        "slide",
        "to the left",
        "to the right",
        "moving left",
        "moving right",
        "moves left",
        "moves right",
        "leftwards",
        "rightwards",
    ),
    "towards": ("towards", "toward", "approaching", "approaches", "coming closer", "closer"),
    "away": ("away", "receding", "recedes", "moving off"),
    "bouncing": ("bouncing", "bounce", "hopping", "hops", "jumping", "jumps"),
    "circling": ("circling", "circles", "circle", "orbiting", "orbits", "in a loop"),
}
BACKGROUND_WORDS: dict[str, tuple[str, ...]] = {
    "grass": ("on the grass", "on a grassy field", "on a lawn"),
    "sand": ("on the sand", "in the desert", "on a sandy beach"),
    "snow": ("on the snow", "in a snowy field", "on snowy ground"),
    "dusk": ("at dusk", "under an evening sky", "at sunset"),
}
BACKGROUND_EXTRA: dict[str, tuple[str, ...]] = {
    "grass": ("grass", "grassy", "lawn", "meadow", "grassland"),
    "sand": ("sand", "sandy", "desert", "beach", "dunes"),
    "snow": ("snow", "snowy", "snowfield", "winter"),
    "dusk": ("dusk", "sunset", "evening", "twilight"),
}
CAMERA_WORDS: dict[str, tuple[str, ...]] = {
    "static": ("the camera holds still", "the camera stays fixed", "the camera does not move"),
    "pan_left": ("the camera pans left", "the camera pans to the left", "the view swings left"),
    "pan_right": ("the camera pans right", "the camera pans to the right", "the view swings right"),
    "zoom_in": ("the camera zooms in", "the view zooms in", "the camera pushes in"),
    "zoom_out": ("the camera zooms out", "the view zooms out", "the camera pulls back"),
}
CAMERA_EXTRA: dict[str, tuple[str, ...]] = {
    "static": ("static camera", "fixed camera", "still camera", "locked-off camera"),
    "pan_left": ("pans left", "pan left", "pans to the left", "panning left", "swings left"),
    "pan_right": ("pans right", "pan right", "pans to the right", "panning right", "swings right"),
    "zoom_in": ("zooms in", "zoom in", "zooming in", "push in", "pushes in"),
    "zoom_out": ("zooms out", "zoom out", "zooming out", "pull back", "pulls back"),
}

_SIDE_WORDS = {-1: ("to the left", "leftwards"), 1: ("to the right", "rightwards")}


@dataclass(frozen=True)
class Described:
    """The canonical facts a caption states about a scene; objects[0] is the main object."""

    shape: str
    colour: str
    texture: str
    motion: str
    background: str
    camera: str
    side: int = 0
    others: tuple[tuple[str, str, bool], ...] = ()


def _main_noun(rng: random.Random, d: Described) -> str:
    colour = rng.choice(COLOUR_WORDS[d.colour])
    texture = rng.choice(TEXTURE_WORDS[d.texture])
    shape = rng.choice(SHAPE_WORDS[d.shape])
    if d.texture == "plain" or rng.random() < 0.5:
        return f"{texture} {colour} {shape}"
    return f"{colour} {texture} {shape}"


def _motion_phrase(rng: random.Random, d: Described) -> str:
    phrase = rng.choice(MOTION_WORDS[d.motion])
    if d.motion == "sideways" and d.side in _SIDE_WORDS:
        verb = phrase.split()[0]
        phrase = f"{verb} {rng.choice(_SIDE_WORDS[d.side])}"
    return phrase


def _others_phrase(rng: random.Random, d: Described) -> str:
    if not d.others:
        return ""
    parts = []
    for colour, shape, small in d.others:
        size = "small " if small else "large "
        parts.append(
            f"a {size if rng.random() < 0.5 else ''}{rng.choice(COLOUR_WORDS[colour])} "
            f"{rng.choice(SHAPE_WORDS[shape])}"
        )
    joined = parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"
    lead = rng.choice(("next to", "near", "beside", "alongside"))
    return f"{lead} {joined}"


def _article(noun: str) -> str:
    return "an" if noun[0] in "aeio" else "a"


def _templates(rng: random.Random, d: Described) -> list[str]:
    noun = _main_noun(rng, d)
    a = _article(noun)
    motion = _motion_phrase(rng, d)
    ground = rng.choice(BACKGROUND_WORDS[d.background])
    camera = rng.choice(CAMERA_WORDS[d.camera])
    others = _others_phrase(rng, d)
    o = f" {others}" if others else ""
    return [
        f"{a} {noun} {motion} {ground}{o}, while {camera}",
        f"{ground}, {a} {noun} {motion}{o}; {camera}",
        f"as {camera}, {a} {noun}{o} {motion} {ground}",
        f"{ground} {a} {noun} {motion}{o} and {camera}",
        f"there is {a} {noun} that {motion} {ground}{o}. {camera[0].upper()}{camera[1:]}",
        f"{a} {noun}{o} {ground} {motion} while {camera}",
    ]


def caption(d: Described, seed: int, variant: int = 0) -> str:
    """A caption of `d`; the template is picked by (seed + variant), the synonyms by both."""
    rng = random.Random(seed * 1_000_003 + variant * 7919 + 17)
    templates = _templates(rng, d)
    text = templates[(seed + variant) % len(templates)]
    text = re.sub(r"\s+", " ", text).strip()
    return text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")


def _phrase_table() -> list[tuple[re.Pattern[str], str, str]]:
    groups: Sequence[tuple[str, dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]] = (
        ("shape", SHAPE_WORDS, SHAPE_PLURAL_EXTRA),
        ("colour", COLOUR_WORDS, COLOUR_EXTRA),
        ("texture", TEXTURE_WORDS, TEXTURE_EXTRA),
        ("motion", MOTION_WORDS, MOTION_EXTRA),
        ("background", BACKGROUND_WORDS, BACKGROUND_EXTRA),
        ("camera", CAMERA_WORDS, CAMERA_EXTRA),
    )
    entries: list[tuple[str, str, str]] = []
    for category, words, extra in groups:
        for value in words:
            phrases = set(words[value]) | set(extra.get(value, ()))
            phrases |= {value, value.replace("_", " "), value.replace("_", "-")}
            for phrase in phrases:
                entries.append((phrase, category, value))
    entries.sort(key=lambda e: -len(e[0]))
    table = []
    for phrase, category, value in entries:
        body = r"[\s-]+".join(re.escape(w) for w in re.split(r"[\s-]+", phrase))
        table.append((re.compile(rf"(?<![a-z]){body}(?![a-z])"), category, value))
    return table


_TABLE = _phrase_table()
_COLOR_SPELLING = re.compile(r"\b(colo)r(s|ed)?\b")


def attributes_from_caption(text: str) -> dict[str, str]:
    """Canonical shape/colour/texture/motion/background/camera words found in `text`.

    Longer phrases win over the words inside them ("pans to the left" is a camera move, not
    a sideways motion); per category, the earliest mention wins. Missing categories are absent.
    """
    lowered = _COLOR_SPELLING.sub(r"\1ur\2", text.lower())
    taken = bytearray(len(lowered))
    found: dict[str, tuple[int, str]] = {}
    for pattern, category, value in _TABLE:
        for match in pattern.finditer(lowered):
            start, end = match.span()
            if any(taken[start:end]):
                continue
            taken[start:end] = b"\x01" * (end - start)
            if category not in found or start < found[category][0]:
                found[category] = (start, value)
    return {category: value for category, (_, value) in sorted(found.items())}
