"""The canonical export of the clip table: the same rows give the same bytes whatever order and
LanceDB folder they were written in, a reader opens an export through a restored cache that
searches like the original, and writers refuse an export."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from story.tasks.hashing import sha256_file
from story.tasks.library.canonical import (
    LibraryExportError,
    export_table,
    materialize,
    restore_table,
)
from story.tasks.library.index import ClipIndex
from story.tasks.library.search import search
from story.tasks.outputs.video_io import write_mp4
from story.tasks.settings import Settings
from tests.tasks.library.test_index import make_rows, unit

DIM = 384
STAMP = datetime(2025, 12, 2, tzinfo=UTC)


class _Encoder:
    dim = DIM

    def __init__(self, vector: np.ndarray) -> None:
        self.vector = vector

    def embed_sentences(self, sentences: list[str]) -> np.ndarray:
        return np.repeat(self.vector[None], len(sentences), axis=0)


def _rows(root: Path) -> list[dict]:
    media = root / "datasets" / "media"
    media.mkdir(parents=True, exist_ok=True)
    rows = make_rows(unit(np.random.default_rng(3), 12, DIM))
    for i, row in enumerate(rows):
        path = media / f"clip-{i}.mp4"
        if not path.exists():
            write_mp4(path, np.full((4, 8, 8, 3), 20 * i, np.uint8), 8)
        row["uri"] = str(path)
        row["ingested_at"] = STAMP
    return rows


def _project(root: Path, lancedb: str, order: list[int], batches: int) -> tuple[Path, list[dict]]:
    (root / ".dvc").mkdir(parents=True, exist_ok=True)
    rows = _rows(root)
    index = ClipIndex(str(root / lancedb), text_dim=DIM)
    shuffled = [rows[i] for i in order]
    for chunk in np.array_split(np.arange(len(shuffled)), batches):
        index.add([shuffled[i] for i in chunk])
    return root, rows


def test_the_same_rows_export_to_the_same_bytes(tmp_path: Path) -> None:
    # Two "machines": different project paths, LanceDB folder names, insert order and batching.
    first, _ = _project(tmp_path / "a", "datasets/index", list(range(12)), 1)
    second, _ = _project(tmp_path / "elsewhere" / "b", "datasets/lib", list(range(11, -1, -1)), 4)
    one = export_table(str(first / "datasets/index"), first / "datasets/clips.parquet")
    two = export_table(str(second / "datasets/lib"), second / "datasets/clips.parquet")
    assert one["rows"] == two["rows"] == 12
    assert one["sha256"] == two["sha256"] == sha256_file(second / "datasets/clips.parquet")
    # Lance's own folders differ (random file names), which is why the export is what DVC keeps.
    names = {p.name for p in (first / "datasets/index").rglob("*") if p.is_file()}
    assert names != {p.name for p in (second / "datasets/lib").rglob("*") if p.is_file()}


def test_a_changed_row_changes_the_export(tmp_path: Path) -> None:
    root, rows = _project(tmp_path / "a", "datasets/index", list(range(12)), 1)
    before = export_table(str(root / "datasets/index"), root / "datasets/clips.parquet")
    other = tmp_path / "b"
    (other / ".dvc").mkdir(parents=True)
    changed = _rows(other)
    changed[5]["caption"] = "a different caption"
    ClipIndex(str(other / "datasets/index"), text_dim=DIM).add(changed)
    after = export_table(str(other / "datasets/index"), other / "datasets/clips.parquet")
    assert after["sha256"] != before["sha256"]


def test_a_restored_export_searches_like_the_original_in_a_moved_project(tmp_path: Path) -> None:
    root, rows = _project(tmp_path / "a", "datasets/index", list(range(12)), 2)
    original = ClipIndex(str(root / "datasets/index"), text_dim=DIM)
    export_table(original.uri, root / "datasets/clips.parquet")
    moved = tmp_path / "moved"
    shutil.copytree(root / "datasets" / "media", moved / "datasets" / "media")
    shutil.copy(root / "datasets/clips.parquet", moved / "datasets/clips.parquet")
    (moved / ".dvc").mkdir()
    restored = ClipIndex(
        materialize(moved / "datasets/clips.parquet", moved / "workspace/cache/library"),
        text_dim=DIM,
    )
    assert restored.count() == 12
    got = restored.rows().sort_values("clip_id").reset_index(drop=True)
    want = original.rows().sort_values("clip_id").reset_index(drop=True)
    assert list(got["caption"]) == list(want["caption"])
    assert np.array_equal(np.stack(got["text_vector"]), np.stack(want["text_vector"]))
    assert list(got["uri"]) == [str(moved / "datasets/media" / f"clip-{i}.mp4") for i in range(12)]
    assert all(Path(u).is_file() for u in got["uri"])
    query = _Encoder(np.asarray(rows[7]["text_vector"], np.float32))
    ids = [h.clip_id for h in search(restored, query, "anything", k=3, mode="vector")]
    assert ids == [h.clip_id for h in search(original, query, "anything", k=3, mode="vector")]
    assert ids[0] == "clip-00007"


def test_settings_open_an_export_through_one_cache(tmp_path: Path) -> None:
    root, _ = _project(tmp_path / "a", "datasets/index", list(range(12)), 1)
    export = root / "datasets/clips.parquet"
    export_table(str(root / "datasets/index"), export)
    settings = Settings(workspace=tmp_path / "ws", lancedb_uri=str(export))
    folder = settings.lancedb
    assert Path(folder).is_relative_to(tmp_path / "ws" / "cache" / "library")
    assert settings.lancedb == folder  # restored once, then reused
    assert ClipIndex(folder, text_dim=DIM).count() == 12
    assert settings.resolved()["lancedb_uri"] == str(export)  # what workers rebuild from
    recorded = settings.recorded()  # what manifests and render requests record
    assert recorded["lancedb_uri"] == str(export)
    assert recorded["lancedb_export_sha256"] == sha256_file(export)


def test_writers_refuse_an_export(tmp_path: Path, settings: Settings) -> None:
    from story.flows.build_index import build_index
    from story.flows.ingest_new import ingest_new

    export = tmp_path / "clips.parquet"
    bad = settings.model_copy(update={"lancedb_uri": str(export)})
    with pytest.raises(LibraryExportError, match=r"clips\.parquet: is a canonical export"):
        build_index.fn("manifest.jsonl", bad, use_ray=False)
    with pytest.raises(LibraryExportError, match="read-only"):
        ingest_new.fn(bad, manifest="m.jsonl", use_ray=False)


def test_bad_exports_are_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.parquet"
    with pytest.raises(LibraryExportError, match=r"nope\.parquet: library export not found"):
        materialize(missing, tmp_path / "cache")
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"not parquet")
    with pytest.raises(LibraryExportError, match=r"junk\.parquet: not a readable parquet"):
        restore_table(junk, str(tmp_path / "db"))
    other = tmp_path / "other.parquet"
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"clip_id": ["x"]}), other)
    with pytest.raises(LibraryExportError, match=r"other\.parquet: not a clip-library export"):
        restore_table(other, str(tmp_path / "db"))
    root, _ = _project(tmp_path / "a", "datasets/index", list(range(12)), 1)
    with pytest.raises(LibraryExportError, match="a .parquet file"):
        export_table(str(root / "datasets/index"), tmp_path / "clips.csv")
