"""build_index: what a TD checks after indexing a library (rows, quarantine, resume, append)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from story.flows.build_index import build_index
from story.models.text_encoder import load_text_encoder
from story.tasks.library.index import ClipIndex
from story.tasks.library.ingest_ledger import ShardLedger
from story.tasks.library.search import search
from story.tasks.settings import Settings
from tests.flows.library_fixture import SCENES, build_library, write_clip, write_manifest

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory):
    return build_library(tmp_path_factory.mktemp("library"))


@pytest.fixture(scope="module")
def encoder():
    return load_text_encoder("minilm", device="cpu")


def _ids(settings: Settings) -> list[str]:
    return ClipIndex(settings.lancedb, settings.clips_table).rows()["clip_id"].tolist()


def test_bad_media_is_quarantined_and_the_rest_indexed(library, settings, encoder) -> None:
    summary = build_index(str(library.manifest), settings.resolved(), use_ray=False)

    assert summary["rows"] == len(library.good)
    assert summary["added"] == len(library.good)
    reasons = {Path(q["uri"]).name: q["reason"] for q in summary["quarantined"]}
    assert reasons == {Path(uri).name: reason for uri, reason in library.bad.items()}
    assert summary["table_version"] >= 1

    for item in library.good:
        hits = search(ClipIndex(settings.lancedb), encoder, item["paraphrase"], k=3)
        assert hits, item["paraphrase"]
        assert Path(hits[0].uri).name == Path(item["uri"]).name, (item["paraphrase"], hits)


def test_rerun_adds_nothing_and_appended_clips_are_added(library, settings, tmp_path) -> None:
    first = build_index(str(library.manifest), settings.resolved(), use_ray=False)
    again = build_index(str(library.manifest), settings.resolved(), use_ray=False)
    assert again["added"] == 0
    assert again["rows"] == first["rows"]
    assert again["shards"]["run"] == 0
    assert {q["uri"] for q in again["quarantined"]} == {q["uri"] for q in first["quarantined"]}

    extra = dict(SCENES[0], colour="white", background="dusk")
    caption, _ = write_clip(library.root / "media" / "appended.mp4", 999, **extra)
    grown = library.root / "grown.jsonl"
    grown.write_text(
        library.manifest.read_text()
        + json.dumps({"uri": "media/appended.mp4", "caption": caption, "source": "miniworld"})
        + "\n"
    )
    appended = build_index(str(grown), settings.resolved(), use_ray=False)
    assert appended["added"] == 1
    assert appended["rows"] == first["rows"] + 1
    assert appended["table_version"] > first["table_version"]
    ids = _ids(settings)
    assert len(ids) == len(set(ids)) == first["rows"] + 1


def test_a_crash_after_writing_resumes_with_no_duplicate_and_no_missing_row(
    library, tmp_path, monkeypatch
) -> None:
    # Three shards of two; the job dies after writing shard 2 but before recording it.
    settings = Settings(workspace=tmp_path / "ws", shard_size=2)
    manifest = library.root / "good_only.jsonl"
    write_manifest(manifest, library.good, [])
    real_record = ShardLedger.record
    calls = {"n": 0}

    def record_then_die(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("killed between writing a shard and recording it")
        return real_record(self, *args, **kwargs)

    monkeypatch.setattr(ShardLedger, "record", record_then_die)
    with pytest.raises(BaseException, match="killed"):
        build_index(str(manifest), settings.resolved(), use_ray=False)
    monkeypatch.setattr(ShardLedger, "record", real_record)

    assert ClipIndex(settings.lancedb).count() == 4
    resumed = build_index(str(manifest), settings.resolved(), use_ray=False)
    ids = _ids(settings)
    assert resumed["rows"] == len(library.good)
    assert len(ids) == len(set(ids)) == len(library.good)
    assert resumed["shards"]["skipped"] == 1


@pytest.mark.usefixtures("ray_local")
def test_ray_actors_index_the_same_clips_as_in_process(library, tmp_path) -> None:
    local = Settings(workspace=tmp_path / "local", shard_size=3)
    remote = Settings(workspace=tmp_path / "ray", shard_size=3, ray_workers=2)
    a = build_index(str(library.manifest), local.resolved(), use_ray=False)
    b = build_index(str(library.manifest), remote.resolved(), use_ray=True)
    assert a["rows"] == b["rows"] == len(library.good)
    assert sorted(_ids(local)) == sorted(_ids(remote))
    assert len(b["quarantined"]) == len(library.bad)


def test_a_multi_shot_file_becomes_one_clip_per_shot(tmp_path, settings) -> None:
    import numpy as np

    from story.tasks.outputs.video_io import write_mp4
    from story.tasks.world.miniworld import render, sample_scene

    parts = [
        render(sample_scene(s, frames=16, n_objects=1, **fixed)).rgb
        for s, fixed in zip((1, 2, 3), SCENES[:3], strict=True)
    ]
    write_mp4(tmp_path / "cuts.mp4", np.concatenate(parts), 8.0)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"uri": "cuts.mp4", "caption": "three scenes"}) + "\n")
    summary = build_index(str(manifest), settings.resolved(), use_ray=False)
    rows = ClipIndex(settings.lancedb).rows().sort_values("start")
    assert summary["rows"] == 3
    assert [round(s * 8) for s in rows["start"]] == [0, 16, 32]
    assert [round(e * 8) for e in rows["end"]] == [16, 32, 48]


def test_two_checkouts_of_one_library_export_the_same_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The DVC `index` stage on two clones: same manifest and media at different paths, ingest
    # time pinned by SOURCE_DATE_EPOCH; the canonical export (what DVC locks) must not differ.
    import shutil

    from story.tasks.library.canonical import export_table

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1764633600")
    first = build_library(tmp_path / "one" / "datasets" / "library", n_good=2, with_bad=False)
    second = tmp_path / "elsewhere" / "two" / "datasets" / "library"
    shutil.copytree(first.root, second)
    digests = []
    for root, manifest in ((tmp_path / "one", first.manifest), (second.parents[1], None)):
        (root / ".git").mkdir()
        settings = Settings(workspace=root / "ws", lancedb_uri=str(root / "datasets" / "index"))
        path = manifest or root / "datasets" / "library" / "manifest.jsonl"
        assert build_index(str(path), settings.resolved(), use_ray=False)["rows"] == 2
        export = export_table(settings.lancedb, root / "datasets" / "clips.parquet")
        digests.append(export["sha256"])
    assert digests[0] == digests[1]
