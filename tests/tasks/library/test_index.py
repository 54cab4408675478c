"""The clip table: idempotent inserts, versions, schema checks, and its indices."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from story.tasks.library.index import CLIP_COLUMNS, ClipIndex, ClipIndexError

DIM = 32


def make_rows(vectors: np.ndarray, prefix: str = "clip", source: str = "miniworld") -> list[dict]:
    """Rows shaped like the ingest step's output, one per vector."""
    now = datetime.now(UTC)
    return [
        {
            "clip_id": f"{prefix}-{i:05d}",
            "uri": f"/media/{prefix}-{i}.mp4",
            "source_hash": f"h{i}",
            "start": 0.0,
            "end": 2.0,
            "duration": 2.0,
            "fps": 8.0,
            "width": 64,
            "height": 64,
            "aspect": 1.0,
            "frames": 16,
            "frame_indices": list(range(0, 16, 2)),
            "source": source,
            "license": "CC0",
            "caption": f"caption number {i}",
            "text_vector": v.astype(np.float32).tolist(),
            "shard": "s0",
            "ingested_at": now,
        }
        for i, v in enumerate(vectors)
    ]


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    v = rng.normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def clustered(rng: np.random.Generator, n: int, clusters: int = 12, sigma: float = 0.15):
    centres = unit(rng, clusters)
    v = centres[rng.integers(0, clusters, n)] + sigma * rng.normal(size=(n, DIM)) / np.sqrt(DIM)
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def test_adding_the_same_rows_twice_adds_nothing(tmp_path: Path) -> None:
    index = ClipIndex(str(tmp_path / "db"), text_dim=DIM)
    rows = make_rows(unit(np.random.default_rng(0), 10))
    assert index.version() == 0 and index.count() == 0
    assert index.add(rows[:6] + rows[:3]) == 6
    first_version = index.version()
    assert index.add(rows) == 4
    assert index.version() > first_version
    settled = index.version()
    assert index.add(rows) == 0
    assert index.version() == settled
    assert index.count() == 10
    assert set(index.rows()["clip_id"]) == {r["clip_id"] for r in rows}
    assert list(index.rows().columns) == [c for c in CLIP_COLUMNS if c != "visual_vector"]


def test_rows_survive_reopening_and_can_be_fetched(tmp_path: Path) -> None:
    uri = str(tmp_path / "db")
    rows = make_rows(unit(np.random.default_rng(1), 5))
    ClipIndex(uri, text_dim=DIM).add(rows)
    reopened = ClipIndex(uri, text_dim=DIM)
    assert reopened.text_dim == DIM and reopened.count() == 5
    assert reopened.existing_ids(["clip-00001", "nope", "clip-00004"]) == {
        "clip-00001",
        "clip-00004",
    }
    row = reopened.get("clip-00003")
    assert row is not None and row["uri"] == "/media/clip-3.mp4"
    assert row["frame_indices"] == list(range(0, 16, 2))
    assert reopened.get("it's-not-there") is None


def test_mismatched_vectors_are_rejected_with_the_reason(tmp_path: Path) -> None:
    uri = str(tmp_path / "db")
    index = ClipIndex(uri, text_dim=DIM)
    index.add(make_rows(unit(np.random.default_rng(2), 2)))
    bad = make_rows(unit(np.random.default_rng(3), 1, dim=DIM + 1), prefix="bad")
    with pytest.raises(ClipIndexError, match="bad-00000.*33 dims"):
        index.add(bad)
    with pytest.raises(ClipIndexError, match="text_vector has 32 dims"):
        ClipIndex(uri, text_dim=384)
    with pytest.raises(ClipIndexError, match="visual_vector has no column"):
        ClipIndex(uri, text_dim=DIM, visual_dim=16)


def test_visual_vectors_are_stored_when_configured(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    index = ClipIndex(str(tmp_path / "db"), text_dim=DIM, visual_dim=8)
    rows = make_rows(unit(rng, 3))
    for row, visual in zip(rows, unit(rng, 3, dim=8), strict=True):
        row["visual_vector"] = visual.tolist()
    assert index.add(rows) == 3
    np.testing.assert_allclose(
        index.get("clip-00002")["visual_vector"], rows[2]["visual_vector"], rtol=1e-6
    )


def test_ivf_pq_is_built_past_the_threshold_and_kept_fresh(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    vectors = clustered(rng, 700)
    index = ClipIndex(str(tmp_path / "db"), text_dim=DIM)
    index.add(make_rows(vectors[:200]))
    built = index.ensure_indices(ivf_pq_min_rows=256)
    assert built["caption"].startswith("fts") and built["text_vector"].startswith("flat")

    index.add(make_rows(vectors[200:600], prefix="more"))
    built = index.ensure_indices(ivf_pq_min_rows=256)
    assert built["text_vector"].startswith("ivf_pq created")
    kinds = {ix.columns[0]: ix.index_type for ix in index.table.list_indices()}
    assert kinds["text_vector"] == "IvfPq"

    assert index.ensure_indices(ivf_pq_min_rows=256)["text_vector"] == "ivf_pq up to date"

    index.add(make_rows(vectors[600:], prefix="late"))
    built = index.ensure_indices(ivf_pq_min_rows=256)
    assert "text_vector" in built["optimized"] and built["text_vector"].startswith("ivf_pq rebuilt")
    assert all(ix.num_unindexed_rows == 0 for ix in index.table.list_indices())

    for probe in range(0, 700, 7):
        hit = (
            index.table.search(vectors[probe], vector_column_name="text_vector")
            .distance_type("cosine")
            .nprobes(20)
            .refine_factor(5)
            .limit(1)
            .to_list()[0]
        )
        assert hit["_distance"] < 1e-4
        np.testing.assert_allclose(hit["text_vector"], vectors[probe], atol=1e-6)
