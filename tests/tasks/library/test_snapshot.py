"""A library's search snapshot answers as the table in memory does, is never read once the table
has moved on, and lets a cold `story search` answer without importing LanceDB."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from story.tasks.library import snapshot
from story.tasks.library.index import ClipIndex
from story.tasks.library.resident import ResidentTable
from story.tasks.library.search import search
from story.tasks.library.searcher import RESIDENT_COLUMNS, LibrarySearcher
from story.tasks.settings import Settings
from tests.tasks.library.test_resident import FILTERS, QUERIES, HashEncoder, _rows
from tests.tasks.library.test_search_ranking import row

OPTIONS = (
    {"k": 12},
    {"k": 3, "diversity": "off", "pool": 3},
    {"k": 12, "rerank": False, "diversity": "off"},
    {"k": 12, "mode": "fts", "diversity": "off"},
)


@pytest.fixture()
def index(tmp_path: Path) -> ClipIndex:
    from tests.tasks.library.test_search_ranking import DIM

    index = ClipIndex(str(tmp_path / "db"), text_dim=DIM, visual_dim=DIM)
    index.add(_rows(30))
    index.ensure_indices(ivf_pq_min_rows=10_000)
    return index


def _hits(index: object, resident: ResidentTable, query: str, **options: object) -> list:
    encoder = HashEncoder()
    found = search(index, encoder, query, visual_encoder=encoder, resident=resident, **options)  # type: ignore[arg-type]
    return [h.to_dict() for h in found]


def test_a_snapshot_answers_as_the_table_in_memory(index: ClipIndex, tmp_path: Path) -> None:
    resident = ResidentTable.from_index(index, RESIDENT_COLUMNS)
    folder = snapshot.write(tmp_path / "ws", index, resident)
    assert folder is not None and folder.name == f"v{index.version()}"
    found = snapshot.read(tmp_path / "ws", index.uri, "clips")
    assert found is not None
    saved, table = found
    # The same library named by another path to it.
    assert snapshot.read(tmp_path / "ws", os.path.relpath(index.uri), "clips") is not None
    assert (saved.count(), saved.version(), saved.text_dim) == (30, index.version(), index.text_dim)
    for query in QUERIES:
        for filters in FILTERS:
            for options in OPTIONS:
                expected = _hits(index, resident, query, filters=filters, **options)
                assert _hits(saved, table, query, filters=filters, **options) == expected


def test_a_snapshot_is_not_read_once_the_table_moves_on(index: ClipIndex, tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    first = snapshot.write(workspace, index, ResidentTable.from_index(index, RESIDENT_COLUMNS))
    assert first is not None and snapshot.read(workspace, index.uri, "clips") is not None
    index.add([row("newest", "sideways_left", caption="A red sphere slides to the left.")])
    assert snapshot.read(workspace, index.uri, "clips") is None  # stale: LanceDB answers
    second = snapshot.write(workspace, index, ResidentTable.from_index(index, RESIDENT_COLUMNS))
    assert second is not None and second != first and not first.exists()  # one version kept
    found = snapshot.read(workspace, index.uri, "clips")
    assert found is not None and found[1].count == 31
    # Nothing is written for a table whose vectors have an index (approximate search).
    fake = ResidentTable.from_index(index, RESIDENT_COLUMNS)
    fake.indexed = {"text_vector"}
    assert not snapshot.writable(fake)
    # A damaged snapshot is not read (the caller searches LanceDB).
    (second / "rows.json").write_text("{not json")
    assert snapshot.read(workspace, index.uri, "clips") is None
    assert snapshot.table_stamp("s3://bucket/db", "clips") is None


def test_the_snapshot_lives_beside_the_library_for_every_workspace(
    index: ClipIndex, tmp_path: Path
) -> None:
    resident = ResidentTable.from_index(index, RESIDENT_COLUMNS)
    folder = snapshot.write(tmp_path / "mine", index, resident)
    assert folder is not None and folder.parent == snapshot.shared_folder(index.uri, "clips")
    assert folder.is_relative_to(Path(index.uri).resolve())
    assert not (tmp_path / "mine").exists()  # nothing of it in the writer's workspace
    found = snapshot.read(tmp_path / "a-colleague", index.uri, "clips")  # a workspace never used
    assert found is not None and found[1].count == 30
    assert snapshot.read(tmp_path / "a-colleague", index.uri, "other") is None


def test_a_library_folder_not_ours_to_write_keeps_its_snapshot_in_the_workspace(
    index: ClipIndex, tmp_path: Path
) -> None:
    blocked = Path(index.uri) / snapshot.SHARED
    blocked.write_text("not a folder")  # what a read-only share does to mkdir: an OSError
    resident = ResidentTable.from_index(index, RESIDENT_COLUMNS)
    folder = snapshot.write(tmp_path / "ws", index, resident)
    assert folder is not None
    assert folder.parent == snapshot.library_folder(tmp_path / "ws", index.uri, "clips")
    assert blocked.read_text() == "not a folder"
    found = snapshot.read(tmp_path / "ws", index.uri, "clips")
    assert found is not None and found[1].count == 30
    assert snapshot.read(tmp_path / "elsewhere", index.uri, "clips") is None


def _library(tmp_path: Path) -> Settings:
    """A 384-d table (the product's MiniLM) without video-text vectors, and its settings."""
    rng = np.random.default_rng(3)
    rows = []
    for i, clip in enumerate(_rows(12)):
        clip = dict(clip, text_vector=rng.normal(size=384).astype(np.float32).tolist())
        clip.pop("visual_vector")
        clip["clip_id"] = f"c{i:02d}"
        rows.append(clip)
    index = ClipIndex(str(tmp_path / "db"), text_dim=384)
    index.add(rows)
    index.ensure_indices(ivf_pq_min_rows=10_000)
    return Settings(workspace=tmp_path / "ws", lancedb_uri=index.uri, worker_idle_s=0)


COLD = """
import json, sys
from story.tasks.library.search_service import run_search
from story.tasks.settings import Settings
settings = Settings(workspace=sys.argv[1], lancedb_uri=sys.argv[2], worker_idle_s=0)
answer = run_search(settings, sys.argv[3], k=4, use_service=False)
loaded = [m for m in ("lancedb", "pyarrow", "pandas", "torch") if m in sys.modules]
print(json.dumps({"by": answer["served_by"], "hits": answer["hits"], "loaded": loaded}))
"""


def _cold(settings: Settings, query: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", COLD, str(settings.workspace), settings.lancedb, query],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_cold_search_answers_from_the_snapshot_without_lancedb(tmp_path: Path) -> None:
    settings = _library(tmp_path)
    query = "a cube bouncing on the sand"
    before = _cold(settings, query)  # no snapshot yet: through LanceDB, which then writes one
    assert before["by"] == "in-process" and "lancedb" in before["loaded"]
    assert _cold(settings, query)["by"] == "snapshot"
    library = snapshot.shared_folder(settings.lancedb, "clips")
    assert library is not None
    shutil.rmtree(library)
    service = LibrarySearcher.from_settings(settings, resident=True, snapshots=True)
    assert library.is_dir()  # the service writes it too
    expected = [h.to_dict() for h in service.search(query, k=4)]
    cold = _cold(settings, query)
    assert cold["by"] == "snapshot" and cold["loaded"] == []
    assert cold["hits"] == expected == before["hits"]
    ClipIndex(settings.lancedb, text_dim=384).add(
        [dict(row("late", "static", caption="late"), text_vector=[0.1] * 384, visual_vector=None)]
    )
    assert _cold(settings, query)["by"] == "in-process"  # the table moved on


def test_a_snapshot_that_fails_half_way_leaves_nothing_behind(
    index: ClipIndex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fill, calls = snapshot._fill, []

    def full_disk_once(scratch: Path, *args: object) -> None:
        calls.append(scratch)
        if len(calls) == 1:
            (scratch / "rows.json").write_text("[")
            raise OSError(28, "No space left on device")
        real_fill(scratch, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(snapshot, "_fill", full_disk_once)
    resident = ResidentTable.from_index(index, RESIDENT_COLUMNS)
    folder = snapshot.write(tmp_path / "ws", index, resident)
    shared = snapshot.shared_folder(index.uri, "clips")
    assert shared is not None and list(shared.iterdir()) == []  # no half-written snapshot
    assert folder is not None and folder.is_relative_to(tmp_path / "ws")
    assert snapshot.read(tmp_path / "ws", index.uri, "clips") is not None
