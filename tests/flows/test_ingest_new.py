"""ingest_new: a scheduled pick-up adds exactly the new clips and never re-embeds old ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from story.flows.build_index import build_index
from story.flows.cli import app
from story.flows.ingest_new import ingest_new
from story.tasks.errors import StoryError
from story.tasks.library.index import ClipIndex
from story.tasks.settings import Settings
from tests.flows.library_fixture import SCENES, build_library, write_clip

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _rows(settings: Settings):
    return ClipIndex(settings.lancedb).rows().set_index("uri")


def test_a_drop_folder_is_picked_up_incrementally(settings: Settings, tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    write_clip(drop / "red_ball.mp4", 1, **SCENES[0])
    caption, _ = write_clip(drop / "b.mp4", 2, **SCENES[1])
    (drop / "b.txt").write_text(caption + "\n")
    (drop / "notes.md").write_text("not a video")
    (drop / "broken.mp4").write_bytes(b"")

    first = ingest_new(settings.resolved(), drop_folder=str(drop), use_ray=False)
    assert (first["seen"], first["new"], first["added"], first["rows"]) == (3, 3, 2, 2)
    assert [Path(q["uri"]).name for q in first["quarantined"]] == ["broken.mp4"]
    rows = _rows(settings)
    assert rows.loc[str(drop / "b.mp4"), "caption"] == caption
    assert rows.loc[str(drop / "red_ball.mp4"), "caption"] == "red ball"
    stamps = rows["ingested_at"].to_dict()

    again = ingest_new(settings.resolved(), drop_folder=str(drop), use_ray=False)
    assert (again["new"], again["added"], again["rows"]) == (0, 0, 2)
    assert again["generated_manifest"] is None

    write_clip(drop / "later" / "c.mp4", 3, **SCENES[2])
    third = ingest_new(settings.resolved(), drop_folder=str(drop), use_ray=False)
    assert (third["new"], third["added"], third["rows"]) == (1, 1, 3)
    generated = Path(third["generated_manifest"]).read_text().splitlines()
    assert [json.loads(line)["uri"] for line in generated] == [str(drop / "later" / "c.mp4")]
    rows = _rows(settings)
    assert {uri: rows.loc[uri, "ingested_at"] for uri in stamps} == stamps


def test_rows_appended_to_a_manifest_are_the_only_ones_ingested(tmp_path: Path) -> None:
    settings = Settings(workspace=tmp_path / "ws", shard_size=2)
    library = build_library(tmp_path / "lib", n_good=3, with_bad=False)
    built = build_index(str(library.manifest), settings.resolved(), use_ray=False)
    assert built["rows"] == 3

    caption, _ = write_clip(library.root / "media" / "new.mp4", 9, **SCENES[3])
    with library.manifest.open("a") as handle:
        handle.write(json.dumps({"uri": "media/new.mp4", "caption": caption}) + "\n")
    summary = ingest_new(settings.resolved(), manifest=str(library.manifest), use_ray=False)
    assert (summary["seen"], summary["new"], summary["added"], summary["rows"]) == (4, 1, 1, 4)
    assert summary["shards"]["run"] == 1
    assert _rows(settings).loc[str(library.root / "media" / "new.mp4"), "caption"] == caption


def test_bad_requests_name_the_problem(settings: Settings, tmp_path: Path, capfd) -> None:
    with pytest.raises(StoryError, match="drop folder or a manifest"):
        ingest_new(settings.resolved(), use_ray=False)

    missing = tmp_path / "nowhere"
    result = CliRunner().invoke(
        app,
        ["ingest-new", "--drop-folder", str(missing), "--workspace", str(tmp_path), "--json"],
    )
    assert result.exit_code == 2
    assert str(missing) in json.loads(capfd.readouterr().out)["error"]
