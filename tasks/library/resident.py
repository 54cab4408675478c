"""The clip table's search columns held in memory: exact vector lists as one matrix product.

A library that fits in memory and has no IVF-PQ index is searched by LanceDB with an exact
(flat) scan, ~15-20 ms of CPU per list whatever the table size at a few hundred rows, and a
query runs up to four vector lists. `ResidentTable` reads the table once (one scan, at a pinned
table version) and answers the same lists from numpy: cosine distance by a matrix product over
the rows the filters keep, the `pool` nearest, ties in table order as LanceDB breaks them.
Full-text search runs in memory too (`story.tasks.library.bm25`: LanceDB's BM25 scores, tied
rows in table order). The resident search service and any searcher built with `resident=True`
hold one; it is rebuilt when the table's version changes, and `story.tasks.library.snapshot`
writes it to disk for cold processes. Above `MAX_ROWS`, or on a column with a vector index
(approximate search, which the resident path would not reproduce), search goes to LanceDB.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from story.tasks.library.bm25 import Bm25
from story.tasks.library.columns import TEXT_VECTOR, VISUAL_VECTOR
from story.tasks.library.filters import SearchFilters

if TYPE_CHECKING:
    from story.tasks.library.index import ClipIndex

MAX_ROWS = 100_000
FILTER_COLUMNS = (
    "duration",
    "aspect",
    "source",
    "motion_label",
    "camera_label",
    "caption_shape",
    "caption_motion",
    "caption_camera",
)
# (column, wanted values, column read where `column` is null); see `search.slot_terms`.
Term = tuple[str, Sequence[str], str | None]


def _matrix(column: Any, dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows x dim float32 matrix, per-row norm, which rows have a vector at all)."""
    valid = column.is_valid().to_numpy(zero_copy_only=False)
    flat = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    matrix = np.zeros((len(column), dim), np.float32)
    matrix[valid] = flat.reshape(-1, dim)
    return matrix, np.linalg.norm(matrix, axis=1), valid


class ResidentTable:
    """One version of the clip table in memory (see the module docstring)."""

    def __init__(
        self,
        version: int,
        rows: list[dict[str, Any]],
        vectors: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
        has_fts: bool,
        indexed: set[str],
        fts: Bm25 | None = None,
    ) -> None:
        """`rows`: every row's plain columns (media uris as paths to open); `vectors`: per vector
        column (matrix, row norms, which rows have one); `fts`: the captions' full-text index in
        memory (built here from the rows' captions when the table has one and it is not given)."""
        self.version = version
        self.rows = rows
        self.count = len(rows)
        self.vectors = vectors
        self.has_fts = has_fts
        self.indexed = indexed
        present = set(rows[0]) if rows else set()
        self.columns = {
            name: np.asarray([row.get(name) for row in rows], dtype=object)
            for name in FILTER_COLUMNS
            if name in present
        }
        self.numbers = {
            name: np.asarray([np.nan if v is None else v for v in self.columns[name]], np.float64)
            for name in ("duration", "aspect")
            if name in self.columns
        }
        for position, row in enumerate(rows):
            for name, (matrix, _, valid) in vectors.items():
                row[name] = matrix[position] if valid[position] else None
        self.position = {row["clip_id"]: i for i, row in enumerate(rows)}
        if fts is None and has_fts and "caption" in present:
            fts = Bm25.from_captions([row["caption"] for row in rows])
        self.fts = fts

    @classmethod
    def from_index(cls, index: ClipIndex, columns: Sequence[str]) -> ResidentTable:
        """The table's current version, read from LanceDB in one scan."""
        table = index.table
        version = int(table.version)
        names = [c for c in dict.fromkeys([*columns, *FILTER_COLUMNS]) if c in index.schema.names]
        data = table.search().select(names).limit(None).to_arrow()
        listed = table.list_indices()
        vectors: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for name, dim in ((TEXT_VECTOR, index.text_dim), (VISUAL_VECTOR, index.visual_dim)):
            if name in data.column_names and dim is not None:
                vectors[name] = _matrix(data.column(name).combine_chunks(), dim)
        rows = data.drop_columns([c for c in vectors if c in data.column_names]).to_pylist()
        for row in rows:
            if "uri" in row:
                row["uri"] = index.media_uri(row["uri"])
        return cls(
            version,
            rows,
            vectors,
            has_fts=any(ix.columns == ["caption"] for ix in listed),
            indexed={ix.columns[0] for ix in listed if ix.columns} & {TEXT_VECTOR, VISUAL_VECTOR},
        )

    @classmethod
    def load(cls, index: ClipIndex, columns: Sequence[str]) -> ResidentTable | None:
        """The table in memory, or None when it is missing, empty or above MAX_ROWS."""
        if not index.exists:
            return None
        rows = index.count()
        if rows == 0 or rows > MAX_ROWS:
            return None
        return cls.from_index(index, columns)

    def serves(self, column: str, exact: bool) -> bool:
        """Whether `vector_rows` gives what LanceDB would for this column (exact search)."""
        return column in self.vectors and (exact or column not in self.indexed)

    def _equal(self, column: str, values: Sequence[str]) -> np.ndarray:
        data = self.columns.get(column)
        if data is None:
            return np.zeros(self.count, bool)
        return np.isin(data, np.asarray(list(values), dtype=object))

    def _null(self, column: str) -> np.ndarray:
        data = self.columns.get(column)
        if data is None:
            return np.ones(self.count, bool)
        return np.asarray(data == None, bool)  # noqa: E711 (elementwise on an object array)

    def mask(self, filters: SearchFilters | None, terms: Sequence[Term] = ()) -> np.ndarray:
        """Rows the filters and terms keep (SQL semantics: a null never passes a comparison)."""
        keep = np.ones(self.count, bool)
        filters = filters or SearchFilters()
        with np.errstate(invalid="ignore"):
            for column, low, high in (
                ("duration", filters.min_duration, filters.max_duration),
                ("aspect", filters.min_aspect, filters.max_aspect),
            ):
                if low is not None:
                    keep &= self.numbers[column] >= float(low)
                if high is not None:
                    keep &= self.numbers[column] <= float(high)
        if filters.source is not None:
            keep &= self._equal("source", [filters.source])
        for column, values, fallback in terms:
            match = self._equal(column, values)
            if fallback is not None:
                match |= self._null(column) & self._equal(fallback, values)
            keep &= match
        return keep

    def vector_rows(
        self,
        column: str,
        vector: np.ndarray,
        filters: SearchFilters | None,
        terms: Sequence[Term],
        pool: int,
        columns: Sequence[str],
        nprobes: int | None = None,
        exact: bool = False,
    ) -> list[dict[str, Any]]:
        """The `pool` rows nearest `vector` by cosine among those the filters and terms keep,
        with `_distance` (every row is scanned, so `nprobes` and `exact` change nothing)."""
        matrix, norm, _ = self.vectors[column]
        query = np.asarray(vector, dtype=np.float32)
        keep = self.mask(filters, terms) & (norm > 0)
        candidates = np.flatnonzero(keep)
        distance = 1.0 - (matrix[candidates] @ query) / (
            norm[candidates] * np.float32(np.linalg.norm(query))
        )
        if len(candidates) > pool:
            cut = np.partition(distance, pool - 1)[pool - 1]
            near = np.flatnonzero(distance <= cut)
            order = near[np.argsort(distance[near], kind="stable")][:pool]
        else:
            order = np.argsort(distance, kind="stable")
        return [self.row(int(candidates[i]), columns, _distance=float(distance[i])) for i in order]

    def fts_rows(
        self, query: str, filters: SearchFilters | None, pool: int, columns: Sequence[str]
    ) -> list[dict[str, Any]]:
        """The `pool` best rows for `query` by BM25 among those the filters keep, with `_score`
        (`bm25`)."""
        assert self.fts is not None
        found = self.fts.top(query, self.mask(filters), pool)
        return [self.row(i, columns, _score=score) for i, score in found]

    def row(self, position: int, columns: Sequence[str], **extra: Any) -> dict[str, Any]:
        """One row restricted to `columns` (a fresh dict), with `extra` keys added."""
        row = self.rows[position]
        return {**{c: row[c] for c in columns if c in row}, **extra}
