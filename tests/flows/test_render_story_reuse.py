"""Re-rendering as a TD sees it: an unchanged story is recognised at once, any change renders
again, and renders on Ray keep their synthesis workers warm without changing a frame."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from story.flows.build_index import build_index
from story.flows.executors.warm_workers import warm_pool
from story.flows.render_story import render_story
from story.tasks.provenance import hash_cache as hash_cache_module
from story.tasks.provenance.manifest import LineageError, read_manifest
from story.tasks.render import planning as planning_module
from story.tasks.settings import Settings
from tests.flows.library_fixture import build_library, write_manifest
from tests.flows.studio_fixture import FAST, TWO_SHOTS, story_file, story_studio

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Four indexed clips (a fifth kept back), a tiny random checkpoint, the bundled depth net."""
    root = tmp_path_factory.mktemp("reuse")
    library = build_library(root / "library", n_good=5, with_bad=False)
    write_manifest(root / "library" / "first4.jsonl", library.good[:4], [])
    write_manifest(root / "library" / "fifth.jsonl", library.good[4:], [])
    return story_studio(root, root / "library" / "first4.jsonl", ray_workers=2)


def _render(settings: Settings, story: Path, **kwargs) -> dict:
    kwargs.setdefault("use_ray", False)
    kwargs.setdefault("params", FAST)
    return render_story(str(story), settings.resolved(), **kwargs)


def _files(folder: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def _settle(folder: Path) -> None:
    """Wait until every file is older than the window in which stat changes can be missed."""
    newest = max(max(p.stat().st_mtime, p.stat().st_ctime) for p in folder.rglob("*"))
    time.sleep(max(0.0, newest + hash_cache_module.RACY_S + 0.1 - time.time()))


def _fresh(settings: Settings, folder: Path) -> Settings:
    """The same studio in another workspace (its own copy of the clip table)."""
    fresh = Settings(**{**settings.resolved(), "workspace": str(folder), "lancedb_uri": None})
    shutil.copytree(Path(settings.lancedb), Path(fresh.workspace) / "lancedb")
    return fresh


def test_an_unchanged_story_is_reused_without_retrieval_or_rehashing(
    studio: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "renders"
    _settle(Path(studio.checkpoints))
    first = _render(studio, story_file(studio), out=str(out))
    assert first["reused"] is False
    before = _files(Path(studio.workspace)) | _files(out)

    def refuse(*args, **kwargs):
        raise AssertionError("an unchanged story must not need this")

    monkeypatch.setattr(planning_module, "retrieve", refuse)
    monkeypatch.setattr(hash_cache_module, "sha256_file", refuse)
    again = _render(studio, story_file(studio), out=str(out))

    assert again["reused"] is True
    assert again["render_id"] == first["render_id"]
    assert again["video"] == first["video"]
    assert _files(Path(studio.workspace)) | _files(out) == before


def test_a_deleted_render_is_rendered_again_and_a_broken_one_named(
    studio: Settings, tmp_path: Path
) -> None:
    out = tmp_path / "renders"
    first = _render(studio, story_file(studio), out=str(out), seed=2)
    shutil.rmtree(first["folder"])
    again = _render(studio, story_file(studio), out=str(out), seed=2)
    assert again["reused"] is False and again["render_id"] == first["render_id"]
    assert Path(again["video"]).is_file()

    Path(again["manifest"]).write_text("{not json")
    with pytest.raises(LineageError, match="manifest.json: not a JSON manifest"):
        _render(studio, story_file(studio), out=str(out), seed=2)


def test_each_kind_of_change_renders_again(studio: Settings, tmp_path: Path) -> None:
    out = tmp_path / "renders"
    base = _render(studio, story_file(studio), out=str(out))
    assert _render(studio, story_file(studio), out=str(out))["render_id"] == base["render_id"]

    edited = tmp_path / "edited.yaml"
    edited.write_text(TWO_SHOTS.replace("in the snow", "on the ice"))
    story_changed = _render(studio, edited, out=str(out))
    param_changed = _render(studio, story_file(studio), out=str(out), params={**FAST, "steps": 3})
    seed_changed = _render(studio, story_file(studio), out=str(out), seed=1)

    weights = next((Path(studio.checkpoints) / "t2v-tiny" / "unet").glob("*.safetensors"))
    original = weights.read_bytes()
    try:
        tampered = bytearray(original)
        tampered[-5] ^= 0xFF
        weights.write_bytes(bytes(tampered))
        checkpoint_changed = _render(studio, story_file(studio), out=str(out))
    finally:
        weights.write_bytes(original)
    restored = _render(studio, story_file(studio), out=str(out))

    ids = [
        base["render_id"],
        story_changed["render_id"],
        param_changed["render_id"],
        seed_changed["render_id"],
        checkpoint_changed["render_id"],
    ]
    assert len(set(ids)) == len(ids)
    assert not any(
        r["reused"] for r in (story_changed, param_changed, seed_changed, checkpoint_changed)
    )
    assert restored["render_id"] == base["render_id"] and restored["reused"]
    pinned = read_manifest(checkpoint_changed["manifest"])["inputs"]["checkpoint"]["sha256"]
    assert pinned != read_manifest(base["manifest"])["inputs"]["checkpoint"]["sha256"]


def test_a_changed_library_is_searched_again(studio: Settings, tmp_path: Path) -> None:
    settings = _fresh(studio, tmp_path / "ws")
    story = tmp_path / "purple.yaml"
    story.write_text("title: Purple\nplots:\n  - A purple sphere moves away in the snow\n")
    before = _render(settings, story)
    assert _render(settings, story)["reused"] is True

    fifth = Path(studio.workspace).parent / "library" / "fifth.jsonl"
    build_index(str(fifth), settings.resolved(), use_ray=False)
    after = _render(settings, story)

    old, new = read_manifest(before["manifest"]), read_manifest(after["manifest"])
    assert new["library"]["version"] > old["library"]["version"]
    assert after["render_id"] != before["render_id"]
    added = json.loads(fifth.read_text())["caption"]
    assert new["plots"][0]["clip_caption"] == added
    assert old["plots"][0]["clip_caption"] != added


@pytest.mark.usefixtures("ray_local")
def test_renders_on_ray_keep_their_workers_warm_and_frames_unchanged(
    studio: Settings, tmp_path: Path
) -> None:
    def renderers() -> set[tuple[str, int]]:
        return {
            (w["key"], w["pid"])
            for w in warm_pool(studio).describe()
            if w["worker"].endswith(".PlotRenderer")
        }

    first = _render(studio, story_file(studio), seed=31, out=str(tmp_path / "r"), use_ray=True)
    warm = renderers()
    second = _render(studio, story_file(studio), seed=32, out=str(tmp_path / "r"), use_ray=True)
    assert first["render_id"] != second["render_id"]
    assert len(warm) == studio.ray_workers
    assert renderers() == warm

    cold = _render(
        _fresh(studio, tmp_path / "cold"), story_file(studio), seed=32, out=str(tmp_path / "c")
    )
    assert cold["render_id"] == second["render_id"]
    frames = [
        [p["frames_sha256"] for p in read_manifest(r["manifest"])["plots"]] for r in (second, cold)
    ]
    assert frames[0] == frames[1]
    assert os.path.exists(second["video"])
