"""The evaluation library's media: split clips written once as H.264 with their truth, shared by
every model version's library, and the ingest models keying a library."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from story.tasks.evaluation.retrieval_library import ingest_models, write_media
from story.tasks.library.media import probe
from story.tasks.settings import Settings


def test_media_are_written_once_with_truth_and_absolute_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    rows, truth, _ = write_media(Path("libs"), "validation", 3)
    world = [r for r in rows if r["source"] == "miniworld-validation"]
    assert len(world) == 3 and all(Path(r["uri"]).is_absolute() for r in rows)
    first = Path(world[0]["uri"])
    assert probe(str(first)).frames >= 8
    assert set(truth[first.name]) == {"shape", "motion", "camera", "background"}
    stamp = first.stat().st_mtime_ns
    again, truth_again, _ = write_media(Path("libs"), "validation", 3)
    assert first.stat().st_mtime_ns == stamp
    assert json.dumps(again) == json.dumps(rows) and truth_again == truth


def test_the_library_key_names_every_ingest_model() -> None:
    none = {"motion_model": "none", "shape_model": "none", "video_text_model": "none"}
    assert set(ingest_models(Settings(**none, ingest_max_side=0))) == {"caption"}
    base = ingest_models(Settings(**none))
    assert base["decode_max_side"] == "256"
    assert ingest_models(Settings(**none, ingest_max_side=128)) != base
    full = ingest_models(Settings())
    assert {"motion", "shape", "video_text"} <= set(full)
    assert full["shape"] != full["motion"]
