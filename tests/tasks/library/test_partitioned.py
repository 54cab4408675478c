"""A large table held in memory (`PartitionedTable`): the same hits as LanceDB when every
partition is read, posting-list BM25 equal to the row-by-row one, filters that widen the probe,
and a memory-mapped snapshot that answers like the table it was written from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from story.tasks.library import searcher as searcher_module
from story.tasks.library import snapshot
from story.tasks.library.bm25 import Bm25
from story.tasks.library.filters import SearchFilters
from story.tasks.library.index import ClipIndex
from story.tasks.library.ivf import Ivf, kmeans
from story.tasks.library.partitioned import PartitionedTable
from story.tasks.library.postings import Postings
from story.tasks.library.searcher import RESIDENT_COLUMNS, LibrarySearcher, QueryEncoders
from tests.tasks.library.test_resident import FILTERS, QUERIES, HashEncoder, _hits, _rows
from tests.tasks.library.test_resident import index as index  # noqa: F401 (the fixture)
from tests.tasks.library.test_search_ranking import DIM


@pytest.mark.parametrize("query", QUERIES)
def test_reading_every_partition_gives_the_same_hits_as_lancedb(
    index: ClipIndex, query: str
) -> None:  # noqa: F811
    table = PartitionedTable.from_index(index, RESIDENT_COLUMNS, partitions=5)
    assert table.ivfs["text_vector"].partitions == 5
    for filters in FILTERS:
        for options in (
            {"k": 12, "nprobes": 5},
            {"k": 12, "diversity": "off", "nprobes": 5},
            {"k": 2, "diversity": "off", "pool": 2, "nprobes": 5},
            {"k": 12, "rerank": False, "diversity": "off", "nprobes": 5},
            {"k": 4, "mode": "vector", "rerank": False, "diversity": "off", "pool": 4},
            {"k": 12, "mode": "fts", "diversity": "off"},
            {"k": 12, "exact": True},
        ):
            expected = _hits(index, None, query, filters=filters, **options)
            found = _hits(index, table, query, filters=filters, **options)  # type: ignore[arg-type]
            scores = [hit.pop("score") for hit in found]
            expected_scores = [hit.pop("score") for hit in expected]
            assert found == expected, (query, filters, options)
            assert scores == pytest.approx(expected_scores, rel=1e-5, abs=1e-6), (query, options)


def test_posting_list_bm25_scores_as_the_row_by_row_index() -> None:
    captions = [
        "a red ball slides left on the grass",
        None,
        "the the the",  # stop words only: not a document
        "a blue cube bounces on the sand sand sand",
        "a red ball slides left on the grass",  # a repeated caption: ties in table order
        "a green cone circles on the snow while the camera zooms in",
    ] * 40
    postings = Postings.from_captions(pa.array(captions, pa.string()))
    reference = Bm25.from_captions(captions)
    assert postings.documents == reference.documents
    keep = np.arange(len(captions)) % 3 != 0
    everything = np.ones(len(captions), bool)
    for query in ("red ball on grass", "sand sand cube", "camera", "nothing matches", "the"):
        for limit in (1, 7, 500):
            for found, expected in (
                (postings.top(query, None, limit), reference.top(query, everything, limit)),
                (
                    postings.top(query, lambda rows: keep[rows], limit),
                    reference.top(query, keep, limit),
                ),
            ):
                assert [r for r, _ in found] == [r for r, _ in expected], (query, limit)
                assert [s for _, s in found] == pytest.approx([s for _, s in expected], rel=1e-6)
    assert postings.top("nothing matches", None, 5) == []


def _clustered(rows: int, dim: int, clusters: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    points = centres[rng.integers(clusters, size=rows)] + 0.3 * rng.normal(size=(rows, dim))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


def test_the_inverted_file_finds_the_nearest_vectors_reading_a_few_partitions() -> None:
    vectors = _clustered(4000, 16, 40)
    ivf = Ivf.build(vectors, np.ones(len(vectors), bool), partitions=64)
    assert ivf.offsets[-1] == len(vectors) and sorted(ivf.positions) == list(range(len(vectors)))
    assert np.allclose(ivf.vectors[ivf.slot], vectors)
    recalls = []
    for query in _clustered(50, 16, 40, seed=1):
        exact = set(np.argsort(-(vectors @ query))[:10])
        slots, sims = ivf.probe(query, 8)
        found = set(ivf.positions[slots[np.argsort(-sims)[:10]]])
        recalls.append(len(found & exact) / 10)
        all_slots, _ = ivf.probe(query, 64)
        assert len(all_slots) == len(vectors)
    # 8 of 64 partitions (an eighth of the rows) find nearly all of the 10 nearest.
    assert np.mean(recalls) >= 0.9, np.mean(recalls)
    centroids = kmeans(vectors[:500], 600, np.random.default_rng(0))
    assert len(centroids) == 500  # never more centroids than rows


def test_a_selective_filter_widens_the_probe_until_it_has_its_rows(
    index: ClipIndex,  # noqa: F811
) -> None:
    table = PartitionedTable.from_index(index, RESIDENT_COLUMNS, partitions=12)
    query = HashEncoder().vector("a studio clip")
    studio = SearchFilters(source="studio")
    wanted = sum(r["source"] == "studio" for r in _rows())
    found = table.vector_rows("text_vector", query, studio, [], 50, ["clip_id"], nprobes=1)
    assert len(found) == wanted  # every studio clip, though one partition holds few of them
    lone = table.vector_rows("text_vector", query, None, [], 3, ["clip_id"], nprobes=1)
    assert len(lone) == 3


def test_a_snapshot_of_a_large_table_answers_like_the_table_and_goes_stale_on_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = ClipIndex(str(tmp_path / "db"), text_dim=DIM, visual_dim=DIM)
    rows = _rows(61)
    index.add(rows[:60])
    index.ensure_indices(ivf_pq_min_rows=10_000)
    # Above the row-by-row limit, a resident searcher holds the table partitioned.
    monkeypatch.setattr(searcher_module, "MAX_ROWS", 20)
    monkeypatch.setattr(snapshot, "MAX_ROWS", 20)
    encoder = HashEncoder()
    # A render worker's searcher, or a one-off `story search`, does not build the table: with
    # no snapshot yet it searches through LanceDB. The search service builds it.
    worker = LibrarySearcher(index, QueryEncoders(encoder, encoder), resident=True)
    assert worker.resident_table() is None
    searcher = LibrarySearcher(index, QueryEncoders(encoder, encoder), resident=True)
    searcher.snapshots = tmp_path / "workspace"
    assert searcher.resident_table() is None  # writes snapshots, but is not the service
    searcher = LibrarySearcher(index, QueryEncoders(encoder, encoder), resident=True)
    searcher.snapshots, searcher.builds_large = tmp_path / "workspace", True
    held = searcher.resident_table()
    assert isinstance(held, PartitionedTable)
    written = snapshot.read(searcher.snapshots, index.uri, "clips")
    assert written is not None and isinstance(written[1], PartitionedTable)
    read = written[1]
    assert isinstance(read.ivfs["text_vector"].vectors, np.memmap)
    for query in QUERIES:
        expected = [h.to_dict() for h in searcher.search(query, k=8)]
        # Another process (a render worker, no snapshots of its own) maps the snapshot the
        # service wrote beside the library.
        fresh = LibrarySearcher(index, QueryEncoders(encoder, encoder), resident=True)
        assert isinstance(fresh.resident_table().ivfs["text_vector"].vectors, np.memmap)  # type: ignore[union-attr]
        assert [h.to_dict() for h in fresh.search(query, k=8)] == expected
    index.add(rows[60:])
    assert snapshot.read(searcher.snapshots, index.uri, "clips") is None
