"""The shipped default: a render that names no checkpoint is drawn by t2v-64 (64x64, 16 frames);
t2v-tiny stays loadable by name. The rest of the suite renders on tiny (tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from story.flows.build_index import build_index
from story.flows.precompute_depth import synthesis_size
from story.flows.render_story import render_story
from story.tasks.outputs.video_io import read_mp4
from story.tasks.provenance.manifest import read_manifest
from story.tasks.settings import Settings
from tests.flows.library_fixture import build_library

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture
def default_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    monkeypatch.delenv("STORY_CHECKPOINT", raising=False)
    return Settings(workspace=tmp_path / "ws")


def test_the_default_checkpoint_is_t2v_64_and_tiny_stays_loadable(
    default_settings: Settings,
) -> None:
    assert default_settings.checkpoint == "t2v-64"
    assert synthesis_size(default_settings) == (64, 64)
    assert synthesis_size(default_settings, "tiny") == (32, 32)


def test_a_render_that_names_no_checkpoint_is_drawn_by_t2v_64(
    default_settings: Settings, tmp_path: Path
) -> None:
    library = build_library(tmp_path / "library", n_good=2, with_bad=False)
    build_index(str(library.manifest), default_settings.resolved(), use_ray=False)
    story = tmp_path / "ball.yaml"
    story.write_text("title: Ball\nplots:\n  - A red ball bounces on the grass\n")
    summary = render_story(
        str(story), default_settings.resolved(), params={"steps": 2, "guidance": 2.0}, use_ray=False
    )
    manifest = read_manifest(summary["folder"])
    assert manifest["inputs"]["checkpoint"]["name"] == "t2v-64"
    assert manifest["checkpoints"][0]["path"] == "checkpoints/t2v-64"
    frames = read_mp4(Path(summary["folder"]) / "plots" / "plot_000.mp4")
    assert frames.shape[0] == 16 and frames.shape[1:3] == (64, 64)
