"""A real render handed to editorial: `otioconvert` on its timeline, `story export`, `story proxy`.

The render is made by the render core the `render_story` flow runs (`story.tasks.render`:
retrieval from an indexed library, depth, a tiny random checkpoint, in-process executor), so
these check what an editor's assistant would run on a render as it is written, without paying
for a Prefect server.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import opentimelineio as otio
import pytest
from typer.testing import CliRunner

from story.flows.cli import app
from story.tasks.library.ingest import make_shards
from story.tasks.library.manifest import read_manifest
from story.tasks.library.shard_ingest import ingest_shards
from story.tasks.render.request import RenderRequest
from story.tasks.render.run import render_request
from story.tasks.script.parse import load_story
from story.tasks.settings import Settings
from story.tasks.workers import LocalExecutor
from tests.flows.library_fixture import build_library
from tests.flows.studio_fixture import FAST, TWO_SHOTS, write_checkpoints

OTIOCONVERT = Path(sys.executable).with_name("otioconvert")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, dict]:
    """Two plots of 4 model frames at 8 fps, delivered at 24 fps by default."""
    root = tmp_path_factory.mktemp("editorial")
    library = build_library(root / "library", n_good=4, with_bad=False)
    settings = Settings(workspace=root / "ws", checkpoints=write_checkpoints(root / "checkpoints"))
    rows = read_manifest(library.manifest)
    ingest_shards(
        settings,
        str(library.manifest),
        make_shards(rows, settings.shard_size),
        LocalExecutor(),
    )
    (root / "story.yaml").write_text(TWO_SHOTS)
    request = RenderRequest.resolve(load_story(root / "story.yaml"), settings, params=FAST)
    summary = render_request(request, settings, root / "ws" / "renders", LocalExecutor())
    return settings, summary


@pytest.mark.parametrize(("suffix", "adapter"), [(".edl", "cmx_3600"), (".xml", "fcp_xml")])
def test_otioconvert_turns_the_render_timeline_into_edl_and_fcp_xml(
    rendered: tuple[Settings, dict], tmp_path: Path, suffix: str, adapter: str
) -> None:
    _studio, summary = rendered
    target = tmp_path / f"cut{suffix}"
    done = subprocess.run(
        [str(OTIOCONVERT), "-i", summary["timeline"], "-o", str(target)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    options = {"rate": 24} if adapter == "cmx_3600" else {}
    cut = otio.adapters.read_from_file(str(target), adapter_name=adapter, **options)
    clips = list(cut.find_clips())
    assert [c.source_range.duration.value for c in clips] == [12, 12]
    assert [c.source_range.duration.rate for c in clips] == [24, 24]


def test_story_export_writes_every_format_and_proxy_a_review_copy(
    rendered: tuple[Settings, dict], capfd: pytest.CaptureFixture[str]
) -> None:
    studio, summary = rendered
    workspace = str(studio.workspace)
    runner = CliRunner()
    done = runner.invoke(
        app,
        ["export", summary["render_id"][:8], "--format", "all", "--workspace", workspace, "--json"],
    )
    assert done.exit_code == 0, done.output
    result = json.loads(capfd.readouterr().out)
    assert [e["format"] for e in result["exports"]] == ["otio", "otioz", "edl", "fcp_xml", "aaf"]
    for item in result["exports"]:
        assert Path(item["path"]).is_file() and item["clips"] == 2
        assert item["duration_frames"] == 24 and item["record_start"] == "01:00:00:00"
    edl = Path(summary["folder"]) / "editorial" / "cut.edl"
    assert "01:00:00:00 01:00:00:12" in edl.read_text()

    done = runner.invoke(
        app, ["proxy", summary["folder"], "--width", "128", "--resample", "bicubic", "--json"]
    )
    assert done.exit_code == 0, done.output
    proxy = json.loads(capfd.readouterr().out)
    assert (proxy["width"], proxy["frames"], proxy["rate"]) == (128, 24, "24")

    done = runner.invoke(
        app, ["export", summary["render_id"], "-f", "mov", "--workspace", workspace, "--json"]
    )
    assert done.exit_code == 2
    assert "one of otio, otioz, edl, fcp_xml, aaf" in json.loads(capfd.readouterr().out)["error"]


def test_the_manifest_records_the_delivery_and_keeps_the_model_frames(
    rendered: tuple[Settings, dict],
) -> None:
    _studio, summary = rendered
    manifest = json.loads(Path(summary["manifest"]).read_text())
    assert manifest["inputs"]["delivery"] == {"rate": "24", "fps": "24/1", "retime": "flow"}
    for plot in manifest["plots"]:
        assert plot["frames"] == 4 and plot["video"].startswith("plots/")
        assert plot["delivered"]["frames"] == 12 and plot["delivered"]["video"].startswith(
            "delivery/"
        )
    assert manifest["outputs"]["poster"] == "poster.png"
