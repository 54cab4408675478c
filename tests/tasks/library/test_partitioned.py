"""A large table held in memory (`PartitionedTable`): the same hits as LanceDB when every
partition is read, posting-list BM25 equal to the row-by-row one, filters that widen the probe,
and a memory-mapped snapshot that answers like the table it was written from."""

from __future__ import annotations

import json
import mmap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from story.tasks.library import postings as postings_module
from story.tasks.library import searcher as searcher_module
from story.tasks.library import snapshot
from story.tasks.library.bm25 import Bm25
from story.tasks.library.filters import SearchFilters
from story.tasks.library.index import ClipIndex
from story.tasks.library.ivf import SCREEN_FACTOR, Ivf, half_precision, kmeans
from story.tasks.library.partitioned import PartitionedTable
from story.tasks.library.postings import BLOCK, Postings, _at_least, _bit_sum, _set_rows
from story.tasks.library.searcher import RESIDENT_COLUMNS, LibrarySearcher, QueryEncoders
from tests.tasks.library.test_resident import FILTERS, QUERIES, HashEncoder, _hits, _rows
from tests.tasks.library.test_resident import index as index  # noqa: F401 (the fixture)
from tests.tasks.library.test_search_ranking import DIM


@pytest.mark.parametrize("half", [False, True])
@pytest.mark.parametrize("query", QUERIES)
def test_reading_every_partition_gives_the_same_hits_as_lancedb(
    index: ClipIndex,  # noqa: F811
    query: str,
    half: bool,
) -> None:
    table = PartitionedTable.from_index(index, RESIDENT_COLUMNS, partitions=5, half=half)
    assert table.ivfs["text_vector"].partitions == 5
    assert table.ivfs["text_vector"].vectors.dtype == (np.float16 if half else np.float32)
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
            # Half precision: the stored vectors' rounding (2^-11 of an element) moves a score.
            tolerance = {"rel": 1e-3, "abs": 1e-3} if half else {"rel": 1e-5, "abs": 1e-6}
            assert scores == pytest.approx(expected_scores, **tolerance), (query, options)


@pytest.mark.parametrize("block", [BLOCK, 16, 7])
def test_posting_list_bm25_scores_as_the_row_by_row_index(block: int) -> None:
    captions = [
        "a red ball slides left on the grass",
        None,
        "the the the",  # stop words only: not a document
        "a blue cube bounces on the sand sand sand",
        "a red ball slides left on the grass",  # a repeated caption: ties in table order
        "a green cone circles on the snow while the camera zooms in",
    ] * 40
    postings = Postings.from_captions(pa.array(captions, pa.string()))
    postings.block = block  # several blocks: the floor found in one prunes the next
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


@pytest.mark.parametrize("chunk_words", [postings_module.CHUNK_WORDS, 7])
def test_bm25_of_many_common_words_reads_the_bitmaps_and_scores_the_same(
    chunk_words: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A generated library's captions: a small vocabulary, every word in many rows, long queries.
    # The bounds summed in one slice of the bitmaps, or in 14 (the last one short).
    monkeypatch.setattr(postings_module, "CHUNK_WORDS", chunk_words)
    rng = np.random.default_rng(5)
    words = [f"w{i}" for i in range(30)]
    captions = [
        " ".join(rng.choice(words, size=rng.integers(4, 12), replace=i % 7 == 0))
        if i % 50
        else None
        for i in range(6000)
    ]
    postings = Postings.from_captions(pa.array(captions, pa.string()))
    postings.block = 512
    reference = Bm25.from_captions(captions)
    assert len(postings.dense) == 30  # every word is in more than 1/32 of the rows
    keep = np.arange(len(captions)) % 4 != 1
    everything = np.ones(len(captions), bool)
    pruned = 0
    for _ in range(40):
        query = " ".join(rng.choice(words, size=rng.integers(2, 12), replace=False))
        for limit in (1, 10, 60):
            terms = postings._terms(query)
            pruned += postings._pruned(terms, None, limit) is not None
            for found, expected in (
                (postings.top(query, None, limit), reference.top(query, everything, limit)),
                (
                    postings.top(query, lambda rows: keep[rows], limit),
                    reference.top(query, keep, limit),
                ),
            ):
                assert found == expected, (query, limit)  # rows and float32 scores, exactly
    assert pruned >= 20, pruned  # the bitmaps answered these, not the full scan


def test_bit_sliced_weighted_counts_equal_integer_sums() -> None:
    rng = np.random.default_rng(9)
    rows = 64 * 40
    for _ in range(20):
        weights = rng.integers(1, 20, size=rng.integers(1, 9))
        present = rng.random((len(weights), rows)) < 0.4
        bitmaps = [np.packbits(p, bitorder="little").view(np.uint64) for p in present]
        columns: list[list[np.ndarray]] = [[] for _ in range(5)]
        for weight, bitmap in zip(weights, bitmaps, strict=True):
            for bit in range(5):
                if weight >> bit & 1:
                    columns[bit].append(bitmap)
        total = weights @ present
        for need in (1, 5, int(total.max()), int(total.max()) + 1, int(weights.sum()) + 3):
            found = np.unpackbits(
                _at_least(_bit_sum(columns), need).view(np.uint8), bitorder="little"
            )
            assert list(np.flatnonzero(found)) == list(np.flatnonzero(total >= need)), need


def test_set_bits_come_back_as_ascending_rows() -> None:
    rng = np.random.default_rng(4)
    for density in (0.001, 0.3, 0.97):
        present = rng.random(64 * 50) < density
        present[63] = present[64 * 50 - 1] = True  # the top bit of a word
        bitmap = np.packbits(present, bitorder="little").view(np.uint64)
        assert list(_set_rows(bitmap, len(present))) == list(np.flatnonzero(present))
        assert list(_set_rows(bitmap, 100)) == list(np.flatnonzero(present[:100]))


def _mapped(array: object) -> bool:
    """Whether `array` views a memory map (pages load as read), not memory of its own."""
    while array is not None:
        if isinstance(array, (np.memmap, mmap.mmap)):
            return True
        array = getattr(array, "base", None)
    return False


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
        probe = ivf.probe(query, 8)
        slots, sims = probe.slots, probe.sims
        found = set(ivf.positions[slots[np.argsort(-sims)[:10]]])
        recalls.append(len(found & exact) / 10)
        assert len(ivf.probe(query, 64).slots) == len(vectors)
    # 8 of 64 partitions (an eighth of the rows) find nearly all of the 10 nearest.
    assert np.mean(recalls) >= 0.9, np.mean(recalls)
    centroids = kmeans(vectors[:500], 600, np.random.default_rng(0))
    assert len(centroids) == 500  # never more centroids than rows


def test_half_precision_is_for_tables_whose_vectors_would_crowd_memory() -> None:
    gib = 2**30
    assert half_precision(10_000_000, 384, memory=24 * gib)  # 15 GB of float32 vectors
    assert not half_precision(1_000_000, 384, memory=24 * gib)  # 1.5 GB
    assert half_precision(1_000_000, 384, memory=4 * gib)


def test_a_screened_probe_reads_a_quarter_of_the_bytes_and_its_lists_keep_the_nearest() -> None:
    # 64-d vectors screened on 16 dims: the screen's similarities are rough, the rescored
    # lists are the stored vectors' own top 10 (the probed rows ranked in float32). Sentence
    # vectors spread their energy unevenly over directions; so do these (scales 0.9^i, rotated).
    rng = np.random.default_rng(8)
    rotation = np.linalg.qr(rng.normal(size=(64, 64)))[0]
    spread = rng.normal(size=(4040, 64)) * 0.9 ** np.arange(64) @ rotation
    spread = (spread / np.linalg.norm(spread, axis=1, keepdims=True)).astype(np.float32)
    vectors, queries = spread[:4000], spread[4000:]
    ivf = Ivf.build(vectors, np.ones(len(vectors), bool), 16, dtype=np.float16, screen_dims=16)
    assert ivf.screened and ivf.screen is not None and ivf.basis is not None
    assert ivf.screen.nbytes * 4 == ivf.vectors.nbytes
    assert np.allclose(ivf.basis.T @ ivf.basis, np.eye(16), atol=1e-5)
    found, rough = [], []
    for query in queries:
        probe = ivf.probe(query, 4)
        assert probe.screened and len(probe.slots) < len(vectors)
        assert list(probe.gather(ivf.positions)) == list(ivf.positions[probe.slots])
        stored = ivf.vectors[probe.slots].astype(np.float32) @ query
        expected = probe.slots[np.argsort(-stored, kind="stable")[:10]]
        which, sims = ivf.refine(probe.slots, probe.sims, query, 10, probe.screened)
        assert which is not None and 10 * SCREEN_FACTOR <= len(which) < len(probe.slots)
        kept = probe.slots[which][np.argsort(-sims, kind="stable")[:10]]
        found.append(len(set(kept) & set(expected)) / 10)
        alone = probe.slots[np.argsort(-probe.sims, kind="stable")[:10]]
        rough.append(len(set(alone) & set(expected)) / 10)
        exact = ivf.probe(query, 16)  # every partition: the vectors, not the screen
        assert not exact.screened and len(exact.slots) == len(vectors)
        assert np.abs(exact.sims - ivf.vectors.astype(np.float32) @ query).max() < 1e-3
    assert np.mean(found) >= 0.98, np.mean(found)
    # The screen alone misses some of them: the rescoring is what finds them.
    assert np.mean(rough) < 0.9, np.mean(rough)


def test_half_precision_lists_rank_as_float32_does_on_the_stored_vectors() -> None:
    # Near-duplicates (copies 3e-4 apart): their half-precision products tie or swap, so only
    # the float32 rescoring near the cut puts them in float32's order.
    rng = np.random.default_rng(3)
    base = np.repeat(_clustered(100, 64, 5), 20, axis=0)
    vectors = base + 3e-4 * rng.normal(size=base.shape)
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    full = Ivf.build(vectors, np.ones(len(vectors), bool), partitions=8)
    half = Ivf.build(vectors, np.ones(len(vectors), bool), partitions=8, dtype=np.float16)
    assert half.half and not full.half and half.vectors.nbytes * 2 == full.vectors.nbytes
    swapped = 0
    for query in vectors[rng.choice(len(vectors), 20, replace=False)]:
        probe = half.probe(query, 8)  # every partition
        slots, sims = probe.slots, probe.sims
        stored = half.vectors[slots].astype(np.float32) @ query
        expected = slots[np.argsort(-stored, kind="stable")[:10]]
        which, refined = half.refine(slots, sims, query, 10)
        assert which is not None and 10 <= len(which) < len(slots)
        kept = slots[which]
        assert list(kept[np.argsort(-refined, kind="stable")[:10]]) == list(expected)
        swapped += list(slots[np.argsort(-sims, kind="stable")[:10]]) != list(expected)
        assert np.abs(sims - stored).max() < 1e-3
    assert swapped  # the rescoring is what keeps the order


def test_a_half_precision_table_answers_the_same_from_its_memory_mapped_snapshot(
    index: ClipIndex,  # noqa: F811
    tmp_path: Path,
) -> None:
    table = PartitionedTable.from_index(index, RESIDENT_COLUMNS, partitions=5, half=True)
    table.write(tmp_path, {"stamp": {"version": table.version}, "has_fts": table.has_fts})
    meta = json.loads((tmp_path / "meta.json").read_text())
    read = PartitionedTable.read(tmp_path, meta, index.media_uri)
    vectors = read.ivfs["text_vector"].vectors
    assert _mapped(vectors) and vectors.dtype == np.float16
    screen = read.ivfs["text_vector"].screen  # the probe's screen comes back mapped too
    assert table.ivfs["text_vector"].screened and screen is not None and _mapped(screen)
    for query in QUERIES:
        for options in ({"k": 12, "nprobes": 2}, {"k": 12, "exact": True}):
            assert _hits(index, read, query, **options) == _hits(index, table, query, **options)


def test_rows_are_taken_from_a_table_of_many_record_batches(
    index: ClipIndex,  # noqa: F811
) -> None:
    # A table read back from a file comes in record batches; hits come from the right ones.
    table = PartitionedTable.from_index(index, RESIDENT_COLUMNS, partitions=5)
    whole = {query: _hits(index, table, query, k=12) for query in QUERIES}
    table.table = pa.Table.from_batches(table.table.to_batches(max_chunksize=7))
    assert table.table.column(0).num_chunks > 3
    for query in QUERIES:
        assert _hits(index, table, query, k=12) == whole[query]


def test_only_the_search_service_runs_torch_on_one_thread_for_a_half_precision_table(
    index: ClipIndex,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch

    calls: list[int] = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    half = PartitionedTable.from_index(index, RESIDENT_COLUMNS, partitions=5, half=True)
    full = PartitionedTable.from_index(index, RESIDENT_COLUMNS, partitions=5)
    encoder = HashEncoder()
    worker = LibrarySearcher(index, QueryEncoders(encoder, encoder), resident=True)
    worker.hold(half)  # a render worker mapping the snapshot keeps torch's threads
    service = LibrarySearcher(index, QueryEncoders(encoder, encoder), resident=True)
    service.builds_large = True
    service.hold(full)  # float32: numpy's products, torch untouched
    assert calls == []
    service.hold(half)
    assert calls == [1]


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
    assert _mapped(read.ivfs["text_vector"].vectors)
    for query in QUERIES:
        expected = [h.to_dict() for h in searcher.search(query, k=8)]
        # Another process (a render worker, no snapshots of its own) maps the snapshot the
        # service wrote beside the library.
        fresh = LibrarySearcher(index, QueryEncoders(encoder, encoder), resident=True)
        assert _mapped(fresh.resident_table().ivfs["text_vector"].vectors)  # type: ignore[union-attr]
        assert [h.to_dict() for h in fresh.search(query, k=8)] == expected
    # A snapshot in an older layout of the large table is stale and is written again.
    folder = snapshot.write(searcher.snapshots, index, held)
    assert folder is not None
    meta = json.loads((folder / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps({**meta, "partitioned_format": 1}))
    assert snapshot.read(searcher.snapshots, index.uri, "clips") is None
    assert snapshot.write(searcher.snapshots, index, held) == folder
    assert snapshot.read(searcher.snapshots, index.uri, "clips") is not None
    index.add(rows[60:])
    assert snapshot.read(searcher.snapshots, index.uri, "clips") is None
