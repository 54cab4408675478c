"""Retrieval query sets: sizes, truth, relevance rules, and that they stay off the train split."""

from __future__ import annotations

import pytest

from story.tasks.evaluation.retrieval_queries import (
    QueryCase,
    grammar_queries,
    paraphrase_queries,
    query_sets,
    real_queries,
)
from story.tasks.world import splits


def test_hand_written_paraphrases_are_enough_and_outside_the_grammar() -> None:
    from story.tasks.world import miniworld

    test, validation = paraphrase_queries("test"), paraphrase_queries("validation")
    assert len(test) >= 50 and len(test) + len(validation) >= 100
    assert not {c.query for c in test} & {c.query for c in validation}
    grammar = {
        miniworld.make_caption(miniworld.sample_scene(s), v).lower()
        for s in splits.seeds(splits.TEST, "queries", 200)
        for v in range(6)
    }
    assert not {c.query.lower() for c in test} & grammar
    for case in test + validation:
        assert case.shape in miniworld.SHAPES and case.motion is not None


def test_grammar_queries_come_from_the_split_and_drop_appearance() -> None:
    cases = grammar_queries("validation", 30)
    assert len(cases) == 30 and all(c.kind == "grammar" for c in cases)
    colours = ("red", "crimson", "scarlet", "cobalt", "azure", "emerald", "violet", "ivory")
    assert not any(word in c.query.split() for c in cases for word in colours)
    with pytest.raises(ValueError, match="validation or test"):
        query_sets("train", 10)


def test_relevance_is_shape_motion_and_camera_and_ground_is_apart() -> None:
    case = QueryCase("q", "paraphrase", "cube", "sideways", None, "sand")
    clip = {"shape": "cube", "motion": "sideways_left", "camera": "zoom_in", "background": "snow"}
    assert case.relevant(clip) and case.ground_matches(clip) is False
    assert not case.relevant({**clip, "shape": "cone"})
    assert not case.relevant({**clip, "motion": "towards"})
    strict = QueryCase("q", "grammar", "cube", "sideways_right", "pan_left", None)
    assert not strict.relevant(clip) and strict.ground_matches(clip) is None
    assert not case.relevant({"real": "bikes.mp4"})


def test_real_clip_queries_name_real_clips() -> None:
    cases = real_queries("test")
    assert cases and all(c.kind == "real" and c.clips for c in cases)
    assert cases[0].relevant({"real": cases[0].clips[0]})
    assert not cases[0].relevant({"shape": "cube", "motion": "static", "camera": "static"})
