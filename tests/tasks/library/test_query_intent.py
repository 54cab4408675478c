"""Reading what a query asks: the grammar's own captions and everyday wording alike."""

from __future__ import annotations

import json

import pytest

from story.tasks.library.query_intent import (
    QueryIntent,
    canonical_text,
    motion_matches,
    parse_query,
)
from story.tasks.settings import REPO_ROOT
from story.tasks.world import miniworld, splits


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("a ball slides to the left on the grass", ("sphere", "sideways_left", None, "grass")),
        ("The ball bounces up and down on the sand", ("sphere", "bouncing", None, "sand")),
        ("a box heading away from us, camera pans left", ("cube", "away", "pan_left", None)),
        (
            "the camera pans left while the cone slides right",
            ("cone", "sideways_right", "pan_left", None),
        ),
        ("a drum moving from right to left at sunset", ("cylinder", "sideways_left", None, "dusk")),
        ("orb getting closer, slow push in", ("sphere", "towards", "zoom_in", None)),
        ("crate parked in the snow and the shot widens", ("cube", "static", "zoom_out", "snow")),
        ("people walking outdoors", (None, None, None, None)),
    ],
)
def test_free_wording(query: str, expected: tuple) -> None:
    intent = parse_query(query)
    assert (intent.shape, intent.motion, intent.camera, intent.background) == expected


def test_every_grammar_caption_of_validation_scenes_reads_back_its_truth() -> None:
    from story.tasks.evaluation.retrieval_library import world_truth

    for seed in splits.seeds(splits.VALIDATION, "queries", 200):
        spec = miniworld.sample_scene(seed)
        truth = world_truth(spec)
        for variant in range(3):
            intent = parse_query(miniworld.make_caption(spec, variant))
            got = (intent.shape, intent.motion, intent.camera, intent.background)
            assert got == tuple(truth[k] for k in ("shape", "motion", "camera", "background"))


def test_validation_paraphrases_parse_to_their_truth() -> None:
    path = REPO_ROOT / "datasets" / "retrieval" / "paraphrases_validation.jsonl"
    for line in path.read_text().splitlines():
        row = json.loads(line)
        intent = parse_query(row["query"])
        for slot in ("shape", "motion", "camera", "background"):
            assert getattr(intent, slot) == row[slot], (row["query"], slot)


def test_canonical_text_is_grammar_wording_that_parses_back() -> None:
    intent = QueryIntent(
        shape="cone", motion="sideways_right", camera="zoom_out", background="sand"
    )
    text = canonical_text(intent)
    assert "slides to the right" in text and "zooms out" in text
    assert parse_query(text) == intent
    assert canonical_text(QueryIntent()) == "an object"


def test_sideways_without_a_direction_accepts_either() -> None:
    assert motion_matches("sideways", "sideways_left")
    assert motion_matches("sideways", "sideways_right")
    assert not motion_matches("sideways_left", "sideways_right")
    assert motion_matches(None, "circling")
    assert not motion_matches("towards", "away")
