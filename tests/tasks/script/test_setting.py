"""The setting holds: a plot that names no new place keeps the story's place and the look."""

from __future__ import annotations

from pathlib import Path

import pytest

from story.tasks.script.listing import plots_listing
from story.tasks.script.parse import load_story
from story.tasks.script.setting import Setting, find_place

KITCHEN = (
    "A red cube slides sideways on the kitchen floor. The cube stops and turns around. "
    "Then it slides back towards the door.\n"
)


def test_the_kitchen_story_keeps_its_floor_and_its_red_cube_in_every_plot(tmp_path: Path):
    story_file = tmp_path / "kitchen.md"
    story_file.write_text(KITCHEN)
    story = load_story(story_file)
    assert [p.prompt for p in story.plots] == [
        "A red cube slides sideways on the kitchen floor",
        "The red cube stops on the kitchen floor",
        "The red cube turns around on the kitchen floor",
        "The red cube slides back towards the door on the kitchen floor",
    ]
    # The text and the retrieval query stay as the TD wrote them: motion and layout only.
    assert [p.text for p in story.plots][1] == "The cube stops"
    assert [p.query for p in story.plots][1] == "the cube stops"
    # What `story plots` shows a TD is what renders, and the edited YAML reloads unchanged.
    listing = plots_listing(story_file)
    assert [p["prompt"] for p in listing["plots"]] == [p.prompt for p in story.plots]
    edited = tmp_path / "edited.yaml"
    edited.write_text(listing["yaml"])
    assert [p.prompt for p in load_story(edited).plots] == [p.prompt for p in story.plots]


def test_a_new_place_replaces_the_old_one_and_written_prompts_stay_as_written(tmp_path: Path):
    story_file = tmp_path / "walk.yaml"
    story_file.write_text(
        "plots:\n"
        "  - A blue ball rolls across the grass\n"
        "  - The ball bounces\n"
        "  - text: The ball rolls onto the snow\n"
        "    prompt: a ball in a snowy field, close up\n"
        "  - The ball waits\n"
    )
    prompts = [p.prompt for p in load_story(story_file).plots]
    assert prompts == [
        "A blue ball rolls across the grass",
        "The blue ball bounces on the grass",
        "a ball in a snowy field, close up",
        "The blue ball waits in the snowy field",
    ]


@pytest.mark.parametrize(
    ("text", "place"),
    [
        ("A ball rolls across the grass", "on the grass"),
        ("It waits at dusk", "at dusk"),
        ("A cube sits in the snow near the tree", "in the snow"),
        ("The ball bounces on a sandy beach", "on the sandy beach"),
        ("The cube slides on the kitchen floor towards the door", "on the kitchen floor"),
        ("The cube slides towards the door", None),
        ("A <bob> ball rolls to the left", None),
    ],
)
def test_find_place(text: str, place: str | None):
    assert find_place(text) == place


def test_a_character_token_is_its_own_look():
    setting = Setting()
    assert setting.prompt("A <bob> rolls on the grass") == "A <bob> rolls on the grass"
    assert setting.prompt("The <bob> stops") == "The <bob> stops on the grass"


def test_prose_without_a_characters_block_may_name_concepts(tmp_path: Path):
    story_file = tmp_path / "bob.md"
    story_file.write_text("A <bob> rolls across a wooden floor. Then it stops.\n")
    story = load_story(story_file)
    assert story.characters == {}
    assert [p.characters for p in story.plots] == [("bob",), ("bob",)]
    assert story.plots[1].prompt == "The <bob> stops on the wooden floor"
