"""What a render run shows in the Prefect UI: plot table with thumbnails, timings, outputs and
lineage, tags naming its inputs, progress, and why a failed render failed."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import pytest
from PIL import Image
from prefect.client.orchestration import get_client

from story.flows.render_story import render_story
from story.tasks.settings import Settings
from tests.flows.library_fixture import build_library
from tests.flows.prefect_api import latest_artifact
from tests.flows.studio_fixture import FAST, story_file, story_studio

pytestmark = pytest.mark.usefixtures("prefect_harness")

DATA_PNG = re.compile(r"data:image/png;base64,([A-Za-z0-9+/=]+)\)")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, dict]:
    root = tmp_path_factory.mktemp("artifacts")
    library = build_library(root / "library", n_good=4, with_bad=False)
    settings = story_studio(root, library.manifest)
    summary = render_story(
        str(story_file(settings)), settings.resolved(), params=FAST, use_ray=False
    )
    return settings, summary


def _latest(key: str) -> dict:
    return latest_artifact(key)


def test_plot_table_shows_retrieved_depth_and_generated_thumbnails(rendered) -> None:
    _, summary = rendered
    plots = _latest("render-story-plots")
    text = str(plots["data"])
    assert summary["render_id"] in text
    rows = [
        line for line in text.splitlines() if line.startswith("| 0 ") or line.startswith("| 1 ")
    ]
    assert len(rows) == 2
    for row in rows:
        images = DATA_PNG.findall(row)
        assert len(images) == 3, row[:200]  # retrieved clip, depth, generated
        for data in images:
            with Image.open(io.BytesIO(base64.b64decode(data))) as image:
                assert image.height == 40 and image.width > 0
    assert "a ball bounces on the grass" in rows[0]


def test_outputs_timings_and_tags_name_the_render_and_its_inputs(rendered) -> None:
    _, summary = rendered
    outputs = str(_latest("render-story-outputs")["data"])
    assert summary["manifest"] in outputs
    assert f"story lineage {summary['render_id']}" in outputs
    assert "story lineage --asset tiny" in outputs
    timings = _latest("render-story-timings")
    assert "synthesis_s" in str(timings["data"])
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(timings["flow_run_id"])
    assert "story:story" in run.tags
    assert any(tag.startswith("checkpoint:tiny@") and len(tag) == 24 for tag in run.tags)
    progress = _latest("render-progress")
    assert progress["type"] == "progress" and float(progress["data"]) == 100.0


def test_a_failed_render_says_which_file_and_why(rendered, tmp_path: Path) -> None:
    settings, _ = rendered
    broken = tmp_path / "broken.yaml"
    broken.write_text("title: Broken\nplots: [\n")
    with pytest.raises(Exception, match="broken.yaml"):
        render_story(str(broken), settings.resolved(), params=FAST, use_ray=False)
    failure = str(_latest("render-story-failure")["data"])
    assert "broken.yaml" in failure
