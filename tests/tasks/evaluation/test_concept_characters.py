"""zib, the character no caption names: its sheet, and its colour signature read from frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from story.tasks.evaluation.concept_characters import (
    CHARACTERS,
    ZIB_BOTTOM_RGB,
    ZIB_TOP_RGB,
    colour_shares,
    object_region,
    shows_signature,
)
from story.tasks.settings import REPO_ROOT
from story.tasks.world import miniworld
from story.tasks.world.captions import BACKGROUND_WORDS
from tests.scripts import load_script

ZIB = CHARACTERS["zib"].signature


def _sheet_maker():
    return load_script(REPO_ROOT / "datasets" / "make_character_sheet.py")


def test_the_sheet_shows_zib_and_no_world_scene_does(tmp_path: Path) -> None:
    written = _sheet_maker().make_sheet(tmp_path / "zib")
    assert len(written) == 5
    for path in written:
        image = np.asarray(Image.open(path))
        mask = np.asarray(Image.open(path.with_suffix(".mask.png"))) > 0
        assert image.shape == (64, 64, 3) and mask.any()
        assert shows_signature(image[None], ZIB) == 1.0, path
        # The colours are on the object only: pink over teal.
        rows = np.nonzero(mask.any(axis=1))[0]
        upper, lower = (int(np.quantile(rows, q)) for q in (0.25, 0.75))
        top, bottom = image[upper][mask[upper]], image[lower][mask[lower]]
        assert colour_shares(top[None, None], (ZIB_TOP_RGB,))[0] > 0.5
        assert colour_shares(bottom[None, None], (ZIB_BOTTOM_RGB,))[0] > 0.5
    scenes = [
        miniworld.render(miniworld.sample_scene(seed, frames=2, height=64, width=64)).rgb
        for seed in range(40)
    ]
    assert sum(shows_signature(clip, ZIB) for clip in scenes) == 0


def test_no_caption_word_names_zibs_look() -> None:
    assert "pink" not in miniworld.COLOURS and "teal" not in miniworld.COLOURS
    grounds = {w for words in BACKGROUND_WORDS.values() for phrase in words for w in phrase.split()}
    assert not {"pink", "teal", "half"} & grounds
    palette = np.asarray(list(miniworld.COLOURS.values()), np.float32)
    for colour in ZIB:
        assert np.linalg.norm(palette - np.asarray(colour, np.float32), axis=1).min() > 90


def test_the_signature_is_looked_for_on_the_object_not_in_a_pink_sky() -> None:
    frame = np.full((1, 32, 32, 3), (70, 120, 60), np.uint8)  # grass
    frame[:, :8] = ZIB_TOP_RGB  # a sky within reach of zib's pink
    frame[:, 20:26, 12:18] = ZIB_BOTTOM_RGB  # a teal object, nothing pink on it
    probability = np.zeros((1, 32, 32), np.float32)
    probability[:, 20:26, 12:18] = 0.9
    region = object_region(probability, 0.5, grow=2)
    assert region[0, 18, 10] and not region[0, 17, 10] and not region[0, 5, 5]
    assert shows_signature(frame, ZIB) == 1.0, "anywhere in the frame, the sky passes for pink"
    assert shows_signature(frame, ZIB, region) == 0.0
    frame[:, 20:23, 12:18] = ZIB_TOP_RGB  # now the object is pink over teal
    assert shows_signature(frame, ZIB, region) == 1.0
