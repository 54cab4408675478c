"""`story eval consistency`: a render's character against its images and itself, and its ground.

The render folders here are written by hand from miniature-world scenes whose truth is known:
bob (a red striped sphere) in two plots and a blue cube between them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from story.tasks.evaluation.consistency import story_consistency, world_ground
from story.tasks.evaluation.judge_reader import JudgeReader
from story.tasks.outputs.video_io import write_mp4
from story.tasks.settings import REPO_ROOT
from story.tasks.world import miniworld

BOB = {"shape": "sphere", "colour": "red", "texture": "striped", "secondary": "white"}
BOB_IMAGES = REPO_ROOT / "datasets" / "concepts" / "bob"


def _render(folder: Path, plots: list[tuple[str, dict[str, str], list[str]]]) -> Path:
    """A render folder: one mp4 per plot (a world scene) and a minimal manifest naming them."""
    (folder / "plots").mkdir(parents=True)
    entries = []
    for i, (prompt, look, concepts) in enumerate(plots):
        spec = miniworld.sample_scene(
            100 + i, n_objects=1, motion="sideways", camera="static", **look
        )
        write_mp4(folder / "plots" / f"plot_{i:03d}.mp4", miniworld.render(spec).rgb, 8)
        entries.append(
            {"index": i, "video": f"plots/plot_{i:03d}.mp4", "prompt": prompt, "concepts": concepts}
        )
    manifest = {
        "schema": 1,
        "render_id": "handmade",
        "status": "complete",
        "story": {"sha256": "0" * 64},
        "concepts": [{"name": "bob", "path": "nowhere/bob"}],
        "plots": entries,
        "outputs": {},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


@pytest.fixture(scope="module")
def reader() -> JudgeReader:
    return JudgeReader.load()


def test_a_character_that_holds_and_a_ground_that_holds(tmp_path: Path, reader) -> None:
    render = _render(
        tmp_path / "render",
        [
            ("A <bob> ball slides on the grass", {**BOB, "background": "grass"}, ["bob"]),
            (
                "A blue cube slides on the sand",
                {"shape": "cube", "colour": "blue", "texture": "plain", "background": "sand"},
                [],
            ),
            ("The <bob> ball slides", {**BOB, "background": "sand"}, ["bob"]),
        ],
    )
    result = story_consistency(render, reader, {"bob": BOB_IMAGES}, log=lambda _: None)
    bob = result["characters"]["bob"]
    assert bob["plots"] == [1, 3] and bob["sheet_read"] == {
        "shape": "sphere",
        "colour": "red",
        "texture": "striped",
    }
    assert bob["plots_read_as_sheet"] == 1.0 and bob["between_plots_same_look"] == 1.0
    assert min(bob["plot_to_sheet_similarity"]) > 0.9
    # Plot 3 names no place, so it stays on plot 2's sand; plot 2 names a new one.
    assert [c["same_place_named"] for c in result["consecutive"]] == [False, True]
    assert result["ground_held"] == 1.0 and result["ground_as_named"] == 1.0
    report = Path(result["html"])
    assert report.parent == render / "consistency" and "similarity to its images" in (
        report.read_text()
    )


def test_a_character_that_changes_and_a_ground_that_moves_are_caught(
    tmp_path: Path, reader
) -> None:
    blue_bob = {**BOB, "colour": "blue", "texture": "dotted"}
    render = _render(
        tmp_path / "render",
        [
            ("A <bob> ball slides on the grass", {**BOB, "background": "grass"}, ["bob"]),
            ("The <bob> ball slides", {**blue_bob, "background": "snow"}, ["bob"]),
        ],
    )
    result = story_consistency(render, reader, {"bob": BOB_IMAGES}, log=lambda _: None)
    bob = result["characters"]["bob"]
    assert bob["plots_read_as_sheet"] == 0.5 and bob["between_plots_same_look"] == 0.0
    first, second = bob["plot_to_sheet_similarity"]
    assert second < first
    assert result["ground_held"] == 0.0


def test_place_words_map_to_the_world_grounds_and_bad_renders_are_named(tmp_path: Path) -> None:
    assert world_ground("on the sandy beach") == "sand"
    assert world_ground("at dusk") == "dusk"
    assert world_ground("on the kitchen floor") is None
    assert (
        world_ground("in a snowy field") == "snow" and world_ground("on a grassy field") == "grass"
    )
    assert world_ground("on the ground") is None
    from story.tasks.errors import StoryError

    with pytest.raises(StoryError, match=str(tmp_path / "missing")):
        story_consistency(tmp_path / "missing", JudgeReader.load(), log=lambda _: None)
