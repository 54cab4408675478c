"""The small search columns of a large table, held in memory between searches.

Above `resident.MAX_ROWS` rows a search asks LanceDB's indices for its candidates (the vector
lists, full text) and then reads the union of their rows by row id (`search._filled`). That
read costs about as much as one of the lists: each of ~18 columns is a random access per row.
All but the vector columns are small (ids, uri, caption, labels, the ranking probabilities: a
few hundred bytes a row), so a process that searches the same table more than once (the search
service, an evaluation, a story's plots) reads them once per table version with their row ids
and takes its candidates from memory; only the vector columns are still read by row id.

A cache holds one table version; a write to the table makes a new version and the next search
reads it afresh. Tables above MAX_ROWS rows are read as before (at 2M rows the columns take
about 1 GB here).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

MAX_ROWS = 2_000_000

_lock = threading.Lock()
_cached: dict[tuple[str, str], RowCache] = {}


class RowCache:
    """`columns` of every row of one table version, and where each row id sits among them."""

    def __init__(self, version: int, columns: tuple[str, ...], data: pa.Table) -> None:
        self.version = version
        self.columns = columns
        ids = data.column("_rowid").to_numpy()
        self._order = np.argsort(ids, kind="stable")
        self._sorted = ids[self._order]
        self.data = data.drop_columns(["_rowid"]).combine_chunks()  # take() on one chunk

    @classmethod
    def load(cls, table: Any, version: int, columns: Sequence[str]) -> RowCache:
        data = table.search().select(list(columns)).with_row_id(True).limit(None).to_arrow()
        return cls(version, tuple(columns), data)

    def take(self, row_ids: Sequence[int]) -> pa.Table | None:
        """The rows in the order asked, or None when one of them is not in this version."""
        wanted = np.asarray(row_ids, dtype=self._sorted.dtype)
        where = np.searchsorted(self._sorted, wanted)
        inside = where < len(self._sorted)
        if not inside.all() or not (self._sorted[where] == wanted).all():
            return None
        return self.data.take(pa.array(self._order[where]))


def cached_rows(index: Any, columns: Sequence[str], row_ids: Sequence[int]) -> pa.Table | None:
    """`columns` of the rows with these row ids from the table's cache (read on first use
    at the table's current version), or None for a table outside the cache's range (then the
    caller reads LanceDB)."""
    from story.tasks.library.resident import MAX_ROWS as RESIDENT_ROWS

    if not getattr(index, "exists", False):
        return None
    version = index.version()
    key = (str(index.uri), str(index.table_name))
    wanted = tuple(columns)
    with _lock:
        cache = _cached.get(key)
        if cache is None or cache.version != version or cache.columns != wanted:
            rows = index.count()
            if not RESIDENT_ROWS < rows <= MAX_ROWS:
                return None
            _cached.pop(key, None)  # one version of a table at a time
            cache = RowCache.load(index.table, version, wanted)
            _cached[key] = cache
    return cache.take(row_ids)


def clear() -> None:
    """Forget every cached table (tests; a process that is done searching)."""
    with _lock:
        _cached.clear()
