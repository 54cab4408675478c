"""The script's own English: independent of the miniature world, yet covering its words."""

from __future__ import annotations

import subprocess
import sys

import pytest

from story.tasks.script.query_prompt import derive_query_prompt
from story.tasks.script.vocabulary import APPEARANCE, inflections, is_verb
from story.tasks.world.captions import COLOUR_EXTRA, COLOUR_WORDS, TEXTURE_EXTRA, TEXTURE_WORDS


def test_loading_a_story_does_not_import_the_miniature_world() -> None:
    code = (
        "import sys, story.tasks.script.parse, story.tasks.script.listing; "
        "print(sorted(m for m in sys.modules if m.startswith('story.tasks.world')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_every_single_word_colour_and_pattern_of_the_world_is_an_appearance_word() -> None:
    world = {
        word
        for table in (COLOUR_WORDS, COLOUR_EXTRA, TEXTURE_WORDS, TEXTURE_EXTRA)
        for words in table.values()
        for word in words
        if " " not in word
    }
    assert world - APPEARANCE == set()


@pytest.mark.parametrize(
    ("text", "query"),
    [
        ("An ivory cube slides left", "a cube slides left"),
        ("A crimson polka-dot ball bounces on the sand", "a ball bounces on the sand"),
        ("A lilac chequered cone approaches", "a cone approaches"),
    ],
)
def test_the_query_drops_the_worlds_colour_synonyms(text: str, query: str) -> None:
    assert derive_query_prompt(text)[0] == query


@pytest.mark.parametrize(
    ("base", "forms"),
    [
        ("hop", {"hop", "hops", "hopped", "hopping"}),
        ("carry", {"carry", "carries", "carried", "carrying"}),
        ("glide", {"glide", "glides", "glided", "gliding"}),
        ("push", {"push", "pushes", "pushed", "pushing"}),
    ],
)
def test_regular_verbs_inflect(base: str, forms: set[str]) -> None:
    assert inflections(base) == forms
    assert all(is_verb(form) for form in forms)


def test_appearance_and_direction_words_ending_in_ed_are_not_verbs() -> None:
    assert not is_verb("checkered") and not is_verb("striped") and not is_verb("coloured")
    assert is_verb("wandered") and is_verb("zigzagged")
