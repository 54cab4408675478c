"""A large table's small columns come from memory between searches, with the same hits as
reading them from LanceDB, and a write to the table is seen by the next search."""

from __future__ import annotations

from pathlib import Path

import pytest

from story.tasks.library import resident, row_cache
from story.tasks.library.index import ClipIndex
from story.tasks.library.search import search
from tests.tasks.library.test_resident import FILTERS, QUERIES, HashEncoder, _rows
from tests.tasks.library.test_search_ranking import DIM, row


@pytest.fixture()
def index(tmp_path: Path) -> ClipIndex:
    index = ClipIndex(str(tmp_path / "db"), text_dim=DIM, visual_dim=DIM)
    index.add(_rows(30))
    index.ensure_indices(ivf_pq_min_rows=10_000)
    return index


def _hits(index: ClipIndex, query: str, **options: object) -> list[dict]:
    encoder = HashEncoder()
    found = search(index, encoder, query, visual_encoder=encoder, k=12, **options)  # type: ignore[arg-type]
    return [h.to_dict() for h in found]


def test_the_row_cache_gives_lancedbs_hits_and_follows_the_table(
    index: ClipIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    row_cache.clear()
    expected = {
        (q, i, r): _hits(index, q, filters=f, rerank=r)
        for q in QUERIES
        for i, f in enumerate(FILTERS)
        for r in (True, False)
    }
    assert row_cache._cached == {}  # 30 rows: the table in memory's business, not the cache's
    monkeypatch.setattr(resident, "MAX_ROWS", 5)  # so 30 rows count as a large table
    reads: list[list[str]] = []
    take = type(index.table).take_row_ids

    def spy(table, ids):  # type: ignore[no-untyped-def]
        query = take(table, ids)
        select = query.select
        query.select = lambda columns: reads.append(list(columns)) or select(columns)
        return query

    monkeypatch.setattr(type(index.table), "take_row_ids", spy)
    for (q, i, r), hits in expected.items():
        assert _hits(index, q, filters=FILTERS[i], rerank=r) == hits, (q, i, r)
    assert (str(index.uri), "clips") in row_cache._cached
    assert reads and all(set(c) <= {"text_vector", "visual_vector"} for c in reads)

    index.add([row("newest", "sideways_left", caption="A red sphere slides to the left.")])
    found = [h["clip_id"] for h in _hits(index, "a red sphere slides to the left", rerank=False)]
    assert "newest" in found  # the new version was read, not the cached one
    row_cache.clear()
