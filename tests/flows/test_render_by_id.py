"""A render written outside the workspace (`story render --out`, shared storage) is found by id.

reproduce, rerender, lineage and rerender-affected resolve the id through the lineage registry
to the folder the render was recorded in, not the workspace's default renders folder.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from story.flows.cli import app
from story.flows.reproduce import reproduce_render
from story.flows.rerender import rerender
from story.flows.rerender_affected import rerender_affected
from story.tasks.provenance.lineage import LineageRegistry
from story.tasks.render.jobs import RenderError
from story.tasks.settings import Settings
from tests.flows.studio_fixture import build_studio, render

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.slow]


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return build_studio(tmp_path_factory.mktemp("studio"), checkpoints=("alt",))


@pytest.fixture(scope="module")
def shared_render(studio: Settings, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The ball story rendered to a folder outside the workspace, as on shared storage."""
    shared = tmp_path_factory.mktemp("shared_storage") / "shows" / "ep01"
    summary = render(studio, "ball", out=str(shared))
    assert Path(summary["folder"]).parent == shared
    assert not (Path(studio.workspace) / "renders" / summary["render_id"]).exists()
    return summary


def test_reproduce_by_id_finds_a_render_written_elsewhere(
    studio: Settings, shared_render: dict
) -> None:
    result = reproduce_render(shared_render["render_id"][:12], studio.resolved())
    assert result["identical"] is True
    assert result["render_id"] == shared_render["render_id"]


def test_reproduce_by_folder_path(studio: Settings, shared_render: dict) -> None:
    result = reproduce_render(shared_render["folder"], studio.resolved())
    assert result["identical"] is True


def test_lineage_by_id_reads_the_manifest_where_it_was_written(
    studio: Settings, shared_render: dict
) -> None:
    cli = CliRunner().invoke(
        app, ["lineage", shared_render["render_id"], "--workspace", str(studio.workspace)]
    )
    assert cli.exit_code == 0, cli.output
    assert "manifest_missing" not in cli.output
    assert str(Path(shared_render["folder"]) / "manifest.json") in cli.output
    tree = LineageRegistry(studio.workspace).tree(shared_render["render_id"])
    assert tree["status"] == "complete" and len(tree["plots"]) == 1


def test_rerender_by_id_reads_the_original_from_where_it_was_written(
    studio: Settings, shared_render: dict
) -> None:
    other = rerender(shared_render["render_id"], "alt", studio.resolved(), use_ray=False)
    assert other["original"] == shared_render["render_id"]
    assert shared_render["render_id"] in Path(other["comparison"]).read_text()


def test_rerender_affected_reaches_renders_written_elsewhere(
    studio: Settings, tmp_path: Path
) -> None:
    summary = render(studio, "cube", out=str(tmp_path / "elsewhere"))
    result = rerender_affected("tiny", "alt", studio.resolved(), use_ray=False)
    entry = next(r for r in result["renders"] if r["render_id"] == summary["render_id"])
    assert entry["status"] == "rerendered", entry
    assert entry.get("new_render")


def test_a_moved_render_fails_naming_where_it_was_recorded(
    studio: Settings, tmp_path: Path
) -> None:
    summary = render(studio, "cone", out=str(tmp_path / "gone"))
    shutil.rmtree(summary["folder"])
    with pytest.raises(RenderError, match=f"{summary['render_id']}.*{tmp_path / 'gone'}"):
        reproduce_render(summary["render_id"], studio.resolved())
