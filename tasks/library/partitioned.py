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
written by `write` (plain .npy files and an Arrow IPC file, memory-mapped when read).
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from story.tasks.library.columns import TEXT_VECTOR, VISUAL_VECTOR
from story.tasks.library.filters import SearchFilters
from story.tasks.library.ivf import (
    Ivf,
    default_probes,
    half_precision,
    partitions_for,
    unit_rows,
)
from story.tasks.library.postings import Postings, as_array
from story.tasks.library.resident import FILTER_COLUMNS, Term

if TYPE_CHECKING:
    from story.tasks.library.index import ClipIndex

NUMBER_COLUMNS = ("duration", "aspect")
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
FILE_BATCH_ROWS = 1 << 20
FORMAT = 2  # 2: full-text bounds and bitmaps, filter codes in probe order
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
        self._probes: dict[tuple[str, bytes, int], tuple[np.ndarray, np.ndarray]] = {}
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

    def _array(self, name: str, order: str | None) -> np.ndarray:
        """A filter array (`codes.<column>` or `number.<column>`) in table order, or in the
        order of the inverted file `order`'s vectors (indexed by slot)."""
        if order is not None:
            return self.ordered[order][name]
        kind, column = name.split(".", 1)
        return self.codes[column][0] if kind == "codes" else self.numbers[column]

    def _equal(
        self, column: str, values: Sequence[str], positions: np.ndarray, order: str | None
    ) -> np.ndarray:
        found = self.codes.get(column)
        if found is None:
            return np.zeros(len(positions), bool)
        vocabulary = found[1]
        table = np.zeros(len(vocabulary) + 1, bool)  # the last entry: null (code -1)
        table[[vocabulary.index(v) for v in values if v in vocabulary]] = True
        return table[self._array(f"codes.{column}", order)[positions]]

    def _null(self, column: str, positions: np.ndarray, order: str | None) -> np.ndarray:
        if column not in self.codes:
            return np.ones(len(positions), bool)
        return self._array(f"codes.{column}", order)[positions] < 0

    def keep(
        self,
        positions: np.ndarray,
        filters: SearchFilters | None,
        terms: Sequence[Term] = (),
        order: str | None = None,
    ) -> np.ndarray:
        """Which of `positions` the filters and terms keep (SQL: a null never passes). With
        `order` (an inverted file's column), `positions` are slots into its vectors, and the
        filter arrays are read in its order: a probe's rows are then contiguous in them
        (random reads into 40 MB a column cost ~20 ms a query at 10M rows)."""
        keep = np.ones(len(positions), bool)
        filters = filters or SearchFilters()
        with np.errstate(invalid="ignore"):
            for column, low, high in (
                ("duration", filters.min_duration, filters.max_duration),
                ("aspect", filters.min_aspect, filters.max_aspect),
            ):
                if low is None and high is None:
                    continue
                values = self._array(f"number.{column}", order)[positions]
                if low is not None:
                    keep &= values >= float(low)
                if high is not None:
                    keep &= values <= float(high)
        if filters.source is not None:
            keep &= self._equal("source", [filters.source], positions, order)
        for column, values, fallback in terms:
            match = self._equal(column, values, positions, order)
            if fallback is not None:
                match |= self._null(column, positions, order) & self._equal(
                    fallback, values, positions, order
                )
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

    def _probe(self, column: str, query: np.ndarray, nprobes: int) -> tuple[np.ndarray, np.ndarray]:
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
    ) -> list[dict[str, Any]]:
        """The `pool` rows nearest `vector` by cosine among the probed partitions' rows that the
        filters and terms keep, with `_distance`."""
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
            slots, sims = self._probe(column, query, probes)
            positions = ivf.positions[slots]
            if restricted:
                kept = self.keep(slots, filters, terms, order=column)
                slots, positions, sims = slots[kept], positions[kept], sims[kept]
            if len(positions) >= pool or probes >= ivf.partitions:
                break
            probes = min(ivf.partitions, probes * 2)
        which, sims = ivf.refine(slots, sims, query, pool)
        if which is not None:
            positions = positions[which]
        distance = (1.0 - sims).astype(np.float32)
        if len(distance) > pool:
            cut = np.partition(distance, pool - 1)[pool - 1]
            near = np.flatnonzero(distance <= cut)
            positions, distance = positions[near], distance[near]
        order = np.lexsort((positions, distance))[:pool]  # ties in table order
        return self.rows(positions[order], columns, _distance=[float(d) for d in distance[order]])

    def fts_rows(
        self, query: str, filters: SearchFilters | None, pool: int, columns: Sequence[str]
    ) -> list[dict[str, Any]]:
        """The `pool` best rows for `query` by BM25 among those the filters keep, with
        `_score`."""
        assert self.fts is not None
        keep = None
        if filters is not None and filters.where() is not None:
            keep = lambda positions: self.keep(positions, filters)  # noqa: E731
        found = self.fts.top(query, keep, pool)
        return self.rows(
            np.asarray([p for p, _ in found], np.int64), columns, _score=[s for _, s in found]
        )

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
        from a file comes in batches (FILE_BATCH_ROWS each; 65,536 in older files), and Arrow's
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

    # --- building, writing, reading ---------------------------------------------------------

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
        """The table's current version, read in one streamed scan, its vectors partitioned.

        With `scratch` (a folder), what the table holds goes to memory-mapped files there
        instead of memory (a table of 10M rows holds 15 GB of caption vectors and 3 GB of rows
        and posting lists), so the page cache, not the process, keeps it; the files are unlinked
        once mapped and vanish when the table is dropped. `half`: hold the vectors in half
        precision (default: when in float32 they would take more than a quarter of this
        machine's memory, `ivf.half_precision`)."""
        import pyarrow as pa

        table = index.table
        version = int(table.version)
        dims = {
            column: dim
            for column, dim in ((TEXT_VECTOR, index.text_dim), (VISUAL_VECTOR, index.visual_dim))
            if dim is not None and column in index.schema.names
        }
        vector_columns = list(dims)
        plain = [
            c
            for c in dict.fromkeys([*columns, *FILTER_COLUMNS])
            if c in index.schema.names and c not in vector_columns
        ]
        count = index.count()
        if half is None:
            half = half_precision(count, sum(dims.values()))
        dtype = np.float16 if half else np.float32
        folder = Path(tempfile.mkdtemp(prefix="partitioned-", dir=scratch)) if scratch else None
        spill = _Spill(folder)
        try:
            matrices = {c: spill.empty(c, (count, dims[c]), dtype) for c in vector_columns}
            valid = {c: np.zeros(count, bool) for c in vector_columns}
            rows_out = spill.rows(pa.schema([index.schema.field(c) for c in plain]))
            at = 0
            reader = table.search().select(plain + vector_columns).limit(None).to_batches(65_536)
            for batch in reader:
                n = batch.num_rows
                if at + n > count:
                    break
                for column in vector_columns:
                    values = batch.column(column)
                    ok = values.is_valid().to_numpy(zero_copy_only=False)
                    flat = values.flatten().to_numpy(zero_copy_only=False)
                    block = np.zeros((n, dims[column]), np.float32)
                    block[ok] = unit_rows(flat.reshape(-1, dims[column]))
                    matrices[column][at : at + n] = block
                    valid[column][at : at + n] = ok
                rows_out.append(batch.select(plain))
                at += n
            rows = rows_out.close()
            if at != count:
                raise RuntimeError(
                    f"{index.uri}: the table changed while it was read; search again"
                )
            listed = table.list_indices()
            has_fts = any(ix.columns == ["caption"] for ix in listed)
            parts = partitions or partitions_for(count)
            ivfs = {}
            for column in vector_columns:
                if valid[column].any():
                    ivfs[column] = Ivf.build(
                        matrices[column], valid[column], parts, seed, spill.empty, dtype
                    )
                del matrices[column]  # the inverted file holds its own copy, in partition order
            codes, numbers = _filter_arrays(rows)
            codes = {name: (spill.keep(c), values) for name, (c, values) in codes.items()}
            fts = None
            if has_fts:
                fts = Postings.from_captions(rows.column("caption"))
                fts.rows, fts.weights = spill.keep(fts.rows), spill.keep(fts.weights)
                fts.bitmaps, fts.norm = spill.keep(fts.bitmaps), spill.keep(fts.norm)
            held = cls(version, rows, ivfs, codes, numbers, has_fts, fts, index.media_uri)
            for arrays in held.ordered.values():
                for name in arrays:
                    arrays[name] = spill.keep(arrays[name])
        finally:
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
        return held

    def write(self, folder: Path, meta: dict[str, Any]) -> None:
        """Every array as .npy, the rows as an Arrow IPC file, and meta.json (with `meta`) last."""
        import pyarrow as pa

        with (
            pa.OSFile(str(folder / "rows.arrow"), "wb") as sink,
            pa.ipc.new_file(sink, self.table.schema) as writer,
        ):
            writer.write_table(self.table)
        for name, ivf in self.ivfs.items():
            for part in ("centroids", "offsets", "positions", "vectors", "slot"):
                np.save(folder / f"{name}.{part}.npy", getattr(ivf, part))
        vocabularies = {}
        for name, (codes, vocabulary) in self.codes.items():
            np.save(folder / f"codes.{name}.npy", codes)
            vocabularies[name] = vocabulary
        for name, values in self.numbers.items():
            np.save(folder / f"number.{name}.npy", values)
        for order, arrays in self.ordered.items():
            for name, values in arrays.items():
                np.save(folder / f"{order}.ordered.{name}.npy", values)
        fts = None
        if self.fts is not None:
            for part in FTS_ARRAYS:
                np.save(folder / f"fts.{part}.npy", getattr(self.fts, part))
            (folder / "fts.vocabulary.json").write_text(json.dumps(self.fts.vocabulary))
            fts = {"count": self.fts.count, "documents": self.fts.documents}
        meta = {
            **meta,
            "kind": "partitioned",
            "partitioned_format": FORMAT,
            "ivfs": sorted(self.ivfs),
            "codes": vocabularies,
            "numbers": sorted(self.numbers),
            "fts": fts,
        }
        (folder / "meta.json").write_text(json.dumps(meta, indent=1))

    @classmethod
    def read(
        cls, folder: Path, meta: dict[str, Any], media_uri: Callable[[str], str]
    ) -> PartitionedTable:
        """The table written by `write`, its arrays memory-mapped (pages load as searched)."""
        import pyarrow as pa

        if meta.get("partitioned_format") != FORMAT:
            raise ValueError(f"{folder}: not a partitioned snapshot of format {FORMAT}")

        def array(name: str) -> np.ndarray:
            # Copy-on-write for the vectors: torch maps a writable array without a warning;
            # nothing writes to it, so no page is ever copied.
            # The others as plain arrays over the map: np.memmap's indexing costs ~10 us a call
            # in Python, and a query at 10M rows indexes them hundreds of times.
            if name.endswith(".vectors"):
                return np.load(folder / f"{name}.npy", mmap_mode="c")
            return np.asarray(np.load(folder / f"{name}.npy", mmap_mode="r"))

        rows = pa.ipc.open_file(pa.memory_map(str(folder / "rows.arrow"))).read_all()
        ivfs = {
            name: Ivf(
                **{
                    part: array(f"{name}.{part}")
                    for part in ("centroids", "offsets", "positions", "vectors", "slot")
                }
            )
            for name in meta["ivfs"]
        }
        codes = {name: (array(f"codes.{name}"), list(v)) for name, v in meta["codes"].items()}
        numbers = {name: array(f"number.{name}") for name in meta["numbers"]}
        fts = None
        if meta["fts"] is not None:
            lists = {part: array(f"fts.{part}") for part in FTS_ARRAYS}
            fts = Postings(
                json.loads((folder / "fts.vocabulary.json").read_text()),
                count=meta["fts"]["count"],
                documents=meta["fts"]["documents"],
                **lists,
            )
        ordered = {
            order: {
                **{f"codes.{name}": array(f"{order}.ordered.codes.{name}") for name in codes},
                **{f"number.{name}": array(f"{order}.ordered.number.{name}") for name in numbers},
            }
            for order in ivfs
        }
        return cls(
            meta["stamp"]["version"],
            rows,
            ivfs,
            codes,
            numbers,
            meta["has_fts"],
            fts,
            media_uri,
            ordered,
        )


class _Spill:
    """Where a table being built keeps its large arrays: memory, or memory-mapped files in a
    scratch folder (each unlinked once mapped: the mapping keeps its pages)."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self.files = 0

    def _path(self, name: str) -> Path:
        assert self.folder is not None
        self.files += 1
        return self.folder / f"{self.files}.{name}"

    def empty(self, name: str, shape: tuple[int, ...], dtype: type = np.float32) -> np.ndarray:
        """An array of `shape` (zeros)."""
        if self.folder is None:
            return np.zeros(shape, dtype)
        path = self._path(f"{name}.npy")
        mapped = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
        path.unlink()
        return mapped

    def keep(self, array: np.ndarray) -> np.ndarray:
        """`array`, or a read-only memory map of a copy of it."""
        if self.folder is None:
            return array
        path = self._path("array.npy")
        np.save(path, array)
        mapped = np.asarray(np.load(path, mmap_mode="r"))  # plain: see `read`
        path.unlink()
        return mapped

    def rows(self, schema: Any) -> _Rows:
        return _Rows(schema, None if self.folder is None else self._path("rows.arrow"))


class _Rows:
    """Record batches gathered into one Arrow table: in memory (combined), or written to an IPC
    file and memory-mapped back."""

    def __init__(self, schema: Any, path: Path | None) -> None:
        import pyarrow as pa

        self.schema = schema
        self.path = path
        self.batches: list[Any] = []
        self.sink = pa.OSFile(str(path), "wb") if path is not None else None
        self.writer = pa.ipc.new_file(self.sink, schema) if self.sink is not None else None

    def append(self, batch: Any) -> None:
        self.batches.append(batch)
        if self.writer is not None and sum(b.num_rows for b in self.batches) >= FILE_BATCH_ROWS:
            self._flush()

    def _flush(self) -> None:
        """The gathered batches as one record batch of the file (a take reads one batch at a
        time: 65,536-row batches made ~150 takes a list at 10M rows)."""
        import pyarrow as pa

        if self.batches and self.writer is not None:
            joined = pa.Table.from_batches(self.batches, schema=self.schema).combine_chunks()
            self.writer.write_table(joined)
            self.batches = []

    def close(self) -> Any:
        import pyarrow as pa

        if self.writer is None:
            return pa.Table.from_batches(self.batches, schema=self.schema).combine_chunks()
        self._flush()
        self.writer.close()
        assert self.sink is not None and self.path is not None
        self.sink.close()
        rows = pa.ipc.open_file(pa.memory_map(str(self.path))).read_all()
        self.path.unlink()
        return rows


Codes = dict[str, tuple[np.ndarray, list[str]]]


def _filter_arrays(rows: Any) -> tuple[Codes, dict[str, np.ndarray]]:
    """Per string filter column its codes and values; per number column its values (NaN: null)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    codes: dict[str, tuple[np.ndarray, list[str]]] = {}
    numbers: dict[str, np.ndarray] = {}
    for name in FILTER_COLUMNS:
        if name not in rows.column_names:
            continue
        column = rows.column(name)
        if name in NUMBER_COLUMNS:
            numbers[name] = column.cast(pa.float64()).fill_null(math.nan).to_numpy()
            continue
        encoded = pc.dictionary_encode(as_array(column))
        values = encoded.indices.fill_null(-1).to_numpy().astype(np.int32)
        codes[name] = (values, [str(v) for v in encoded.dictionary.to_pylist()])
    return codes, numbers
