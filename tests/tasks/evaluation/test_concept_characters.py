"""zib, the character no caption names: its sheet, and its colour signature read from frames."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image

from story.tasks.evaluation.concept_characters import (
    CHARACTERS,
    ZIB_BOTTOM_RGB,
    ZIB_TOP_RGB,
    colour_shares,
    shows_signature,
)
from story.tasks.settings import REPO_ROOT
from story.tasks.world import miniworld
from story.tasks.world.captions import BACKGROUND_WORDS

ZIB = CHARACTERS["zib"].signature


def _sheet_maker():
    path = REPO_ROOT / "datasets" / "make_character_sheet.py"
    spec = importlib.util.spec_from_file_location("make_character_sheet", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
