"""A large clip table searched in memory: IVF-flat vector lists, posting-list BM25, column store.

`ResidentTable` holds a small table as Python rows and scans every vector; above
`resident.MAX_ROWS` that costs seconds to load and tens of milliseconds a list, so a large
library was searched through LanceDB: four candidate lists (caption vectors, full text, two
pre-filtered slot lists) and a column read, about 60 ms p50 at 1M rows on this machine, most of
it in the table-wide filters, BM25 over long posting lists and the PQ refine step.

`PartitionedTable` answers the same lists from memory, for a long-lived process (the search
service) or from its memory-mapped snapshot (a cold `story search`):

* **vector lists**: an inverted file over exact vectors (`ivf.Ivf`: sqrt(rows) partitions by
  spherical k-means; a query reads the `nprobes` partitions nearest it, no product
  quantisation; a table too large for memory in float32 holds them in half precision, its
  lists' cut rescored in float32). The filters (duration / aspect / source, and the slot
  lists' terms) are evaluated on the probed rows only, from integer codes kept in each
  inverted file's order (a probe's rows contiguous); when a selective
  filter leaves fewer than `pool` rows, the probe widens (doubling) until it has them or has
  read every partition. The lists of one query that share a vector (the caption list and both
  slot lists search the caption vector) share one probe.
* **full text**: BM25 exactly as `bm25.Bm25` scores it (LanceDB's scores), from flat posting
  lists with each posting's term weight precomputed, or from the common tokens' bitmaps where
  their bounds leave few rows to score (`postings.Postings`).
* **rows**: the hit and ranking columns in one Arrow table; a query's candidates are taken by
  position.

Built from the table in one streamed scan (`from_index`), or read from a snapshot folder
written by `write` (plain .npy files and an Arrow IPC file, memory-mapped when read); both in
`partitioned_store`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from story.tasks.library.filters import SearchFilters
from story.tasks.library.ivf import Ivf, Probe, default_probes
from story.tasks.library.postings import Postings
from story.tasks.library.resident import Term

if TYPE_CHECKING:
    from story.tasks.library.index import ClipIndex

FTS_ARRAYS = (
    "indptr",
    "rows",
    "weights",
    "max_weight",
    "dense",
    "levels",
    "bitmaps",
    "norm",
    "groups",
    "group_weight",
)
FORMAT = 3  # 2: full-text bounds and bitmaps, filter codes in probe order; 3: vector screens
MAX_ROWS = 20_000_000
"""Largest table held in memory (about 1.9 GB a million rows with a 384-d caption vector and a
512-d video-text vector); above it search goes to LanceDB."""


class PartitionedTable:
    """One version of a large clip table in memory (see the module docstring)."""

    indexed: set[str] = set()  # noqa: RUF012 (no column is answered approximately by LanceDB)

    def __init__(
        self,
        version: int,
        rows: Any,
        ivfs: dict[str, Ivf],
        codes: dict[str, tuple[np.ndarray, list[str]]],
        numbers: dict[str, np.ndarray],
        has_fts: bool,
        fts: Postings | None,
        media_uri: Callable[[str], str],
        ordered: dict[str, dict[str, np.ndarray]] | None = None,
    ) -> None:
        """`rows`: an Arrow table of the hit and ranking columns (no vectors), in table order;
        `codes`: per filter column, each row's index into its values (-1: null); `ordered`:
        per inverted file, every filter array (`codes.<column>`, `number.<column>`) in the
        order of its vectors (default: gathered here)."""
        self.version = version
        self.table = rows
        self.count = rows.num_rows
        self.ivfs = ivfs
        self.codes = codes
        self.numbers = numbers
        self.has_fts = has_fts
        self.fts = fts
        self.media_uri = media_uri
        if ordered is None:
            ordered = {name: self.in_order(ivf.positions) for name, ivf in ivfs.items()}
        self.ordered = ordered
        self._probes: dict[tuple[str, bytes, int], Probe] = {}
        self._batches: list[Any] | None = None
        self._starts = np.zeros(1, np.int64)
        self._lock = threading.Lock()

    def serves(self, column: str, exact: bool) -> bool:
        """Whether `vector_rows` answers this column (every vector column; exact search reads
        every partition)."""
        return column in self.ivfs

    def default_probes(self, column: str) -> int:
        """Partitions a query reads when the caller names no count (`ivf.default_probes`)."""
        return default_probes(self.ivfs[column].partitions)

    # --- filters ---------------------------------------------------------------------------

    def _array(
        self, name: str, positions: np.ndarray, order: str | None, probe: Probe | None
    ) -> np.ndarray:
        """A filter array (`codes.<column>` or `number.<column>`) at `positions`: table
        positions, or with `order` (an inverted file's column) slots into its vectors, read in
        its order; `probe`: the probe whose slots `positions` are (gathered as slices)."""
        if order is None:
            kind, column = name.split(".", 1)
            values = self.codes[column][0] if kind == "codes" else self.numbers[column]
            return values[positions]
        values = self.ordered[order][name]
        return probe.gather(values) if probe is not None else values[positions]

    def _equal(
        self,
        column: str,
        values: Sequence[str],
        positions: np.ndarray,
        order: str | None,
        probe: Probe | None,
    ) -> np.ndarray:
        found = self.codes.get(column)
        if found is None:
            return np.zeros(len(positions), bool)
        vocabulary = found[1]
        wanted = [vocabulary.index(v) for v in values if v in vocabulary]
        codes = self._array(f"codes.{column}", positions, order, probe)
        if len(wanted) <= 2:  # a comparison or two is several times faster than a lookup
            match = np.zeros(len(codes), bool)
            for code in wanted:
                match |= codes == code
            return match
        table = np.zeros(len(vocabulary) + 1, bool)  # the last entry: null (code -1)
        table[wanted] = True
        return table[codes]

    def _null(
        self, column: str, positions: np.ndarray, order: str | None, probe: Probe | None
    ) -> np.ndarray:
        if column not in self.codes:
            return np.ones(len(positions), bool)
        return self._array(f"codes.{column}", positions, order, probe) < 0

    def keep(
        self,
        positions: np.ndarray,
        filters: SearchFilters | None,
        terms: Sequence[Term] = (),
        order: str | None = None,
        probe: Probe | None = None,
    ) -> np.ndarray:
        """Which of `positions` the filters and terms keep (SQL: a null never passes). With
        `order` (an inverted file's column), `positions` are slots into its vectors, and the
        filter arrays are read in its order: a probe's rows are then contiguous in them
        (random reads into 40 MB a column cost ~20 ms a query at 10M rows), and with `probe`
        (whose slots `positions` are) read as slices."""
        keep = np.ones(len(positions), bool)
        filters = filters or SearchFilters()
        at = (positions, order, probe)
        with np.errstate(invalid="ignore"):
            for column, low, high in (
                ("duration", filters.min_duration, filters.max_duration),
                ("aspect", filters.min_aspect, filters.max_aspect),
            ):
                if low is None and high is None:
                    continue
                number = self._array(f"number.{column}", *at)
                if low is not None:
                    keep &= number >= float(low)
                if high is not None:
                    keep &= number <= float(high)
        if filters.source is not None:
            keep &= self._equal("source", [filters.source], *at)
        for column, values, fallback in terms:
            match = self._equal(column, values, *at)
            if fallback is not None:
                match |= self._null(column, *at) & self._equal(fallback, values, *at)
            keep &= match
        return keep

    def in_order(self, positions: np.ndarray) -> dict[str, np.ndarray]:
        """Every filter array taken at `positions` (an inverted file's vector order)."""
        arrays = {f"codes.{name}": codes[positions] for name, (codes, _) in self.codes.items()}
        arrays.update(
            {f"number.{name}": values[positions] for name, values in self.numbers.items()}
        )
        return arrays

    # --- lists -----------------------------------------------------------------------------

    def _probe(self, column: str, query: np.ndarray, nprobes: int) -> Probe:
        key = (column, query.tobytes(), nprobes)
        with self._lock:
            found = self._probes.get(key)
        if found is None:
            found = self.ivfs[column].probe(query, nprobes)
            with self._lock:
                if len(self._probes) >= 8:
                    self._probes.pop(next(iter(self._probes)))
                self._probes[key] = found
        return found

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
        light: bool = False,
    ) -> list[dict[str, Any]]:
        """The `pool` rows nearest `vector` by cosine among the probed partitions' rows that the
        filters and terms keep, with `_distance`; `light`: each row only its `_position` and
        `_distance` (the caller reads the union of its lists' rows once, `rows`)."""
        ivf = self.ivfs[column]
        query = np.asarray(vector, np.float32)
        norm = float(np.linalg.norm(query))
        if norm == 0 or len(ivf.vectors) == 0:
            return []
        query = query / np.float32(norm)
        asked = nprobes or self.default_probes(column)
        probes = ivf.partitions if exact else min(asked, ivf.partitions)
        restricted = bool(terms) or (filters is not None and filters.where() is not None)
        while True:
            probe = self._probe(column, query, probes)
            slots, sims = probe.slots, probe.sims
            if restricted:
                kept = self.keep(slots, filters, terms, order=column, probe=probe)
                slots, sims = slots[kept], sims[kept]
            if len(slots) >= pool or probes >= ivf.partitions:
                break
            probes = min(ivf.partitions, probes * 2)
        which, sims = ivf.refine(slots, sims, query, pool, probe.screened)
        positions = ivf.positions[slots if which is None else slots[which]]
        distance = (1.0 - sims).astype(np.float32)
        if len(distance) > pool:
            cut = np.partition(distance, pool - 1)[pool - 1]
            near = np.flatnonzero(distance <= cut)
            positions, distance = positions[near], distance[near]
        order = np.lexsort((positions, distance))[:pool]  # ties in table order
        return self._found(positions[order], columns, light, _distance=distance[order].tolist())

    def fts_rows(
        self,
        query: str,
        filters: SearchFilters | None,
        pool: int,
        columns: Sequence[str],
        light: bool = False,
    ) -> list[dict[str, Any]]:
        """The `pool` best rows for `query` by BM25 among those the filters keep, with
        `_score` (`light`: as `vector_rows`)."""
        assert self.fts is not None
        keep = None
        if filters is not None and filters.where() is not None:
            keep = lambda positions: self.keep(positions, filters)  # noqa: E731
        found = self.fts.top(query, keep, pool)
        positions = np.asarray([p for p, _ in found], np.int64)
        return self._found(positions, columns, light, _score=[s for _, s in found])

    def _found(
        self, positions: np.ndarray, columns: Sequence[str], light: bool, **extra: list[Any]
    ) -> list[dict[str, Any]]:
        """A list's rows: `rows`, or with `light` each row's `_position` and `extra` only."""
        if not light:
            return self.rows(positions, columns, **extra)
        found: list[dict[str, Any]] = [{"_position": int(p)} for p in positions]
        for key, values in extra.items():
            for row, value in zip(found, values, strict=True):
                row[key] = value
        return found

    def rows(
        self, positions: np.ndarray, columns: Sequence[str], **extra: list[Any]
    ) -> list[dict[str, Any]]:
        """The rows at `positions` restricted to `columns` (vectors from the inverted files),
        each with its entry of every `extra` list."""
        plain = [c for c in columns if c in self.table.column_names]
        taken = self._take(np.asarray(positions, np.int64), plain)
        for i, (row, position) in enumerate(zip(taken, positions, strict=True)):
            if "uri" in row:
                row["uri"] = self.media_uri(row["uri"])
            for name, ivf in self.ivfs.items():
                if name in columns:
                    at = ivf.slot[position]
                    row[name] = ivf.vector(at) if at >= 0 else None
            for key, values in extra.items():
                row[key] = values[i]
        return taken

    def _take(self, positions: np.ndarray, columns: list[str]) -> list[dict[str, Any]]:
        """The rows at `positions` as dicts, taken record batch by record batch. A table read
        from a file comes in batches (`partitioned_store.FILE_BATCH_ROWS` each), and Arrow's
        take on a chunked table cost about a second a query at 10M rows (it joins the chunks
        first)."""
        if not len(positions):
            return []
        with self._lock:
            if self._batches is None:
                self._batches = self.table.to_batches()
                sizes = [batch.num_rows for batch in self._batches]
                self._starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        batches, starts = self._batches, self._starts
        which = np.searchsorted(starts, positions, side="right") - 1
        taken: list[dict[str, Any]] = [{} for _ in positions]
        for batch in np.unique(which):
            at = np.flatnonzero(which == batch)
            picked = batches[batch].select(columns).take(positions[at] - starts[batch])
            for i, row in zip(at, picked.to_pylist(), strict=True):
                taken[i] = row
        return taken

    # --- building, writing, reading (`partitioned_store`) ------------------------------------

    @classmethod
    def from_index(
        cls,
        index: ClipIndex,
        columns: Sequence[str],
        partitions: int | None = None,
        seed: int = 0,
        scratch: Path | None = None,
        half: bool | None = None,
    ) -> PartitionedTable:
        """The table's current version, its vectors partitioned (`partitioned_store.build`)."""
        from story.tasks.library.partitioned_store import build

        return build(index, columns, partitions, seed, scratch, half)

    def write(self, folder: Path, meta: dict[str, Any]) -> None:
        """The snapshot folder (`partitioned_store.write`)."""
        from story.tasks.library.partitioned_store import write

        write(self, folder, meta)

    @classmethod
    def read(
        cls, folder: Path, meta: dict[str, Any], media_uri: Callable[[str], str]
    ) -> PartitionedTable:
        """The table a snapshot folder holds, memory-mapped (`partitioned_store.read`)."""
        from story.tasks.library.partitioned_store import read

        return read(folder, meta, media_uri)
