"""A large clip table searched in memory: IVF-flat vector lists, posting-list BM25, column store.

`ResidentTable` holds a small table as Python rows and scans every vector; above
`resident.MAX_ROWS` that costs seconds to load and tens of milliseconds a list, so a large
library was searched through LanceDB: four candidate lists (caption vectors, full text, two
pre-filtered slot lists) and a column read, about 60 ms p50 at 1M rows on this machine, most of
it in the table-wide filters, BM25 over long posting lists and the PQ refine step.

`PartitionedTable` answers the same lists from memory, for a long-lived process (the search
service) or from its memory-mapped snapshot (a cold `story search`):

* **vector lists**: an inverted file over exact vectors (IVF-flat). Spherical k-means
  (`partitions_for(rows)`: sqrt(rows) partitions, trained on a seeded sample) splits the unit
  vectors into partitions stored contiguously; a query scores every centroid, reads the
  `nprobes` nearest partitions' vectors with one matrix-vector product each and keeps the `pool`
  nearest by cosine distance (ties in table order). No product quantisation, so no refine step:
  within the probed partitions the distances are exact. The filters (duration / aspect / source,
  and the slot lists' terms) are evaluated on the probed rows only, from integer codes; when a
  selective filter leaves fewer than `pool` rows, the probe widens (doubling) until it has them
  or has read every partition. The lists of one query that share a vector (the caption list
  and both slot lists search the caption vector) share one probe.
* **full text**: BM25 exactly as `bm25.Bm25` scores it (LanceDB's scores), from posting lists
  stored as flat arrays, each posting's term weight precomputed.
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
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from story.tasks.library.bm25 import K1, B, tokens
from story.tasks.library.columns import TEXT_VECTOR, VISUAL_VECTOR
from story.tasks.library.filters import SearchFilters
from story.tasks.library.resident import FILTER_COLUMNS, Term

if TYPE_CHECKING:
    from story.tasks.library.index import ClipIndex

SAMPLE = 65_536  # k-means training rows
KMEANS_ITERATIONS = 12
CHUNK = 32_768  # rows per matrix product when assigning partitions
NUMBER_COLUMNS = ("duration", "aspect")
# 1 in 32 partitions: chosen on the validation queries at 1M rows (`story eval search
# --resident`); never fewer than MIN_PROBES.
PROBE_SHARE = 32
MIN_PROBES = 8
FORMAT = 1
MAX_ROWS = 20_000_000
"""Largest table held in memory (about 1.9 GB a million rows with a 384-d caption vector and a
512-d video-text vector); above it search goes to LanceDB."""


def partitions_for(rows: int) -> int:
    """IVF partitions for `rows` vectors: sqrt(rows), so a partition holds about as many rows as
    there are partitions (1,000 of 1,000 at 1M rows)."""
    return max(1, round(math.sqrt(max(rows, 1))))


def default_probes(partitions: int) -> int:
    return min(partitions, max(MIN_PROBES, math.ceil(partitions / PROBE_SHARE)))


def _unit(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)


def _nearest(vectors: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Each row's most similar centroid (rows and centroids unit length), in chunks."""
    out = np.empty(len(vectors), np.int64)
    for start in range(0, len(vectors), CHUNK):
        part = np.asarray(vectors[start : start + CHUNK], np.float32)
        out[start : start + len(part)] = np.argmax(part @ centroids.T, axis=1)
    return out


def kmeans(sample: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """`k` unit centroids of unit vectors `sample` by spherical k-means (an empty cluster is
    re-seeded with a random sample row)."""
    k = min(k, len(sample))
    centroids = sample[rng.choice(len(sample), k, replace=False)].copy()
    for _ in range(KMEANS_ITERATIONS):
        assign = _nearest(sample, centroids)
        order = np.argsort(assign, kind="stable")
        counts = np.bincount(assign, minlength=k)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        sums = np.add.reduceat(sample[order], starts[counts > 0], axis=0)
        centroids[counts > 0] = _unit(sums)
        empty = np.flatnonzero(counts == 0)
        if len(empty):
            centroids[empty] = sample[rng.choice(len(sample), len(empty), replace=False)]
    return centroids.astype(np.float32)


@dataclass
class Ivf:
    """One vector column as an inverted file: `vectors[offsets[p]:offsets[p+1]]` are partition
    p's unit vectors, `positions` their table positions, `slot[position]` a row's index into
    `vectors` (-1: the row has no vector)."""

    centroids: np.ndarray
    offsets: np.ndarray
    positions: np.ndarray
    vectors: np.ndarray
    slot: np.ndarray

    @classmethod
    def build(
        cls,
        unit: np.ndarray,
        valid: np.ndarray,
        partitions: int,
        seed: int = 0,
        allocate: Callable[[str, tuple[int, ...]], np.ndarray] | None = None,
    ) -> Ivf:
        """From unit vectors in table order (`valid`: which rows have one; `unit` may be a
        memory map). `allocate(name, shape)` gives the partition-ordered copy its storage (a
        memory map for a table larger than memory; default: an array)."""
        rng = np.random.default_rng(seed)
        rows = np.flatnonzero(valid)
        picked = np.sort(rng.choice(len(rows), min(len(rows), SAMPLE), replace=False))
        sample = np.asarray(unit[rows[picked]], np.float32)
        centroids = kmeans(sample, min(partitions, max(len(rows), 1)), rng)
        assign = _nearest(unit, centroids)[rows]
        order = np.argsort(assign, kind="stable")  # table order inside each partition
        offsets = np.concatenate([[0], np.cumsum(np.bincount(assign, minlength=len(centroids)))])
        slot = np.full(len(valid), -1, np.int64)
        slot[rows[order]] = np.arange(len(order))
        positions = rows[order]
        shape = (len(positions), unit.shape[1])
        vectors = allocate("vectors", shape) if allocate else np.empty(shape, np.float32)
        for start in range(0, len(positions), CHUNK):
            vectors[start : start + CHUNK] = unit[positions[start : start + CHUNK]]
        return cls(centroids, offsets.astype(np.int64), positions, vectors, slot)

    @property
    def partitions(self) -> int:
        return len(self.centroids)

    def probe(self, query: np.ndarray, nprobes: int) -> tuple[np.ndarray, np.ndarray]:
        """(slots, cosine similarities) of every vector in the `nprobes` partitions whose
        centroid is nearest the unit `query` (all partitions: exact search)."""
        if nprobes >= self.partitions:
            return np.arange(len(self.vectors)), self.vectors @ query
        near = np.argpartition(-(self.centroids @ query), nprobes - 1)[:nprobes]
        near.sort()
        slots, sims = [], []
        for p in near:
            start, end = int(self.offsets[p]), int(self.offsets[p + 1])
            if end > start:
                slots.append(np.arange(start, end))
                sims.append(self.vectors[start:end] @ query)
        if not slots:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        return np.concatenate(slots), np.concatenate(sims)


class Postings:
    """The captions' full-text index as flat posting lists, scored as `bm25.Bm25` scores."""

    def __init__(
        self,
        vocabulary: dict[str, int],
        indptr: np.ndarray,
        rows: np.ndarray,
        weights: np.ndarray,
        count: int,
        documents: int,
    ) -> None:
        self.vocabulary = vocabulary
        self.indptr = indptr
        self.rows = rows
        self.weights = weights
        self.count = count
        self.documents = documents
        self._local = threading.local()

    @classmethod
    def from_captions(cls, captions: Any) -> Postings:
        """From an Arrow string column (nulls: rows without a caption); each distinct caption is
        tokenized once."""
        import pyarrow.compute as pc

        encoded = pc.dictionary_encode(_array(captions))
        distinct = encoded.dictionary.to_pylist()
        caption_of = encoded.indices.fill_null(-1).to_numpy().astype(np.int64)
        vocabulary: dict[str, int] = {}
        token_ids: list[int] = []
        freqs: list[int] = []
        per_caption = np.zeros(len(distinct) + 1, np.int64)  # the last entry: no caption
        length = np.zeros(len(distinct) + 1, np.float64)
        for i, text in enumerate(distinct):
            words = tokens(text)
            length[i] = len(words)
            counted = Counter(words)
            per_caption[i] = len(counted)
            for word, freq in counted.items():
                token_ids.append(vocabulary.setdefault(word, len(vocabulary)))
                freqs.append(freq)
        caption_of[caption_of < 0] = len(distinct)
        starts = np.concatenate([[0], np.cumsum(per_caption)[:-1]])
        lengths = length[caption_of]
        documents = int((lengths > 0).sum())
        mean = lengths.sum() / documents if documents else 1.0
        norm = K1 * (1.0 - B + B * lengths / max(mean, 1e-12))
        n_row = per_caption[caption_of]
        total = int(n_row.sum())
        row_of = np.repeat(np.arange(len(caption_of)), n_row)
        first = np.repeat(np.cumsum(n_row) - n_row, n_row)
        at = np.repeat(starts[caption_of], n_row) + (np.arange(total) - first)
        tid = np.asarray(token_ids, np.int64)[at] if total else np.zeros(0, np.int64)
        counts = np.asarray(freqs, np.float64)[at] if total else np.zeros(0, np.float64)
        order = np.argsort(tid, kind="stable")  # rows stay in table order within a token
        rows = row_of[order]
        counts = counts[order]
        indptr = np.concatenate([[0], np.cumsum(np.bincount(tid, minlength=len(vocabulary)))])
        weights = counts * (K1 + 1.0) / (counts + norm[rows])
        return cls(vocabulary, indptr, rows.astype(np.int32), weights, len(caption_of), documents)

    def _scratch(self) -> np.ndarray:
        """This thread's score buffer, zeroed (a fresh array per query cost ~5 ms of page faults
        at 1M rows)."""
        local = self._local
        score = getattr(local, "score", None)
        if score is None:
            score = local.score = np.zeros(self.count, np.float64)
        else:
            score.fill(0.0)
        return score

    def top(
        self, query: str, keep: Callable[[np.ndarray], np.ndarray] | None, limit: int
    ) -> list[tuple[int, float]]:
        """The `limit` best (row, score) among the rows `keep` passes, best first, ties in table
        order (`bm25.Bm25.top`). A row matches when its score is above 0 (every term adds a
        positive amount)."""
        score = self._scratch()
        for word in tokens(query):
            token = self.vocabulary.get(word)
            if token is None:
                continue
            start, end = int(self.indptr[token]), int(self.indptr[token + 1])
            n = end - start
            idf = math.log(1.0 + (self.documents - n + 0.5) / (n + 0.5))
            _add(score, self.rows[start:end], self.weights[start:end], idf)
        candidates = None
        if keep is None and self.count > 16 * limit:
            # The limit-th best of every 16th row is a floor for the limit-th best of all rows:
            # only rows at or above it (less a float32 rounding margin) can make the cut.
            floor = np.partition(score[::16], -limit)[-limit]
            if floor > 0:
                candidates = np.flatnonzero(score >= floor * (1.0 - 1e-6))
        if candidates is None:
            candidates = np.flatnonzero(score > 0)
            if keep is not None and len(candidates):
                candidates = candidates[keep(candidates)]
        found = score[candidates].astype(np.float32)  # LanceDB's scores are float32
        return [(int(candidates[i]), float(found[i])) for i in _best(-found, limit)]


def _add(score: np.ndarray, rows: np.ndarray, weights: np.ndarray, idf: float) -> None:
    """score[rows] += idf * weights, in one C loop when SciPy's sparse kernel is there."""
    if _csc_matvec is not None and rows.dtype == np.int32 and weights.dtype == np.float64:
        bounds = np.array([0, len(rows)], np.int32)
        _csc_matvec(len(score), 1, bounds, rows, weights, np.array([idf]), score)
    else:
        score[rows] += idf * np.asarray(weights)


try:  # the sparse matrix-vector kernel (a column times a scalar, added in place)
    from scipy.sparse._sparsetools import (  # type: ignore[import-untyped]
        csc_matvec as _csc_matvec,
    )
except ImportError:  # pragma: no cover - SciPy's private module moved: numpy does the same
    _csc_matvec = None


def _best(cost: np.ndarray, limit: int) -> np.ndarray:
    """Indices of the `limit` lowest costs, lowest first, ties by index (stable)."""
    if len(cost) > limit:
        cut = np.partition(cost, limit - 1)[limit - 1]
        near = np.flatnonzero(cost <= cut)
        return near[np.argsort(cost[near], kind="stable")][:limit]
    return np.argsort(cost, kind="stable")


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
    ) -> None:
        """`rows`: an Arrow table of the hit and ranking columns (no vectors), in table order;
        `codes`: per filter column, each row's index into its values (-1: null)."""
        self.version = version
        self.table = rows
        self.count = rows.num_rows
        self.ivfs = ivfs
        self.codes = codes
        self.numbers = numbers
        self.has_fts = has_fts
        self.fts = fts
        self.media_uri = media_uri
        self._probes: dict[tuple[str, bytes, int], tuple[np.ndarray, np.ndarray]] = {}
        self._lock = threading.Lock()

    @property
    def vectors(self) -> dict[str, Ivf]:
        return self.ivfs

    def serves(self, column: str, exact: bool) -> bool:
        return column in self.ivfs

    def default_probes(self, column: str) -> int:
        return default_probes(self.ivfs[column].partitions)

    # --- filters ---------------------------------------------------------------------------

    def _equal(self, column: str, values: Sequence[str], positions: np.ndarray) -> np.ndarray:
        found = self.codes.get(column)
        if found is None:
            return np.zeros(len(positions), bool)
        codes, vocabulary = found
        table = np.zeros(len(vocabulary) + 1, bool)  # the last entry: null (code -1)
        table[[vocabulary.index(v) for v in values if v in vocabulary]] = True
        return table[codes[positions]]

    def _null(self, column: str, positions: np.ndarray) -> np.ndarray:
        found = self.codes.get(column)
        return np.ones(len(positions), bool) if found is None else found[0][positions] < 0

    def keep(
        self, positions: np.ndarray, filters: SearchFilters | None, terms: Sequence[Term] = ()
    ) -> np.ndarray:
        """Which of `positions` the filters and terms keep (SQL: a null never passes)."""
        keep = np.ones(len(positions), bool)
        filters = filters or SearchFilters()
        with np.errstate(invalid="ignore"):
            for column, low, high in (
                ("duration", filters.min_duration, filters.max_duration),
                ("aspect", filters.min_aspect, filters.max_aspect),
            ):
                if low is None and high is None:
                    continue
                values = self.numbers[column][positions]
                if low is not None:
                    keep &= values >= float(low)
                if high is not None:
                    keep &= values <= float(high)
        if filters.source is not None:
            keep &= self._equal("source", [filters.source], positions)
        for column, values, fallback in terms:
            match = self._equal(column, values, positions)
            if fallback is not None:
                match |= self._null(column, positions) & self._equal(fallback, values, positions)
            keep &= match
        return keep

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
                kept = self.keep(positions, filters, terms)
                positions, sims = positions[kept], sims[kept]
            if len(positions) >= pool or probes >= ivf.partitions:
                break
            probes = min(ivf.partitions, probes * 2)
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
        taken = self.table.select(plain).take(positions).to_pylist() if len(positions) else []
        for i, (row, position) in enumerate(zip(taken, positions, strict=True)):
            if "uri" in row:
                row["uri"] = self.media_uri(row["uri"])
            for name, ivf in self.ivfs.items():
                if name in columns:
                    at = ivf.slot[position]
                    row[name] = ivf.vectors[at] if at >= 0 else None
            for key, values in extra.items():
                row[key] = values[i]
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
    ) -> PartitionedTable:
        """The table's current version, read in one streamed scan, its vectors partitioned.

        With `scratch` (a folder), the vectors go to memory-mapped files there instead of
        memory (a table of 10M rows holds 15 GB of caption vectors): unlinked once mapped, so
        they vanish when the table is dropped."""
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
        folder = Path(tempfile.mkdtemp(prefix="partitioned-", dir=scratch)) if scratch else None

        def allocate(name: str, shape: tuple[int, ...]) -> np.ndarray:
            if folder is None:
                return np.zeros(shape, np.float32)
            path = folder / f"{name}.{len(list(folder.iterdir()))}.npy"
            mapped = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=shape)
            path.unlink()  # the mapping keeps the data while it is in use
            return mapped

        try:
            matrices = {c: allocate(c, (count, dims[c])) for c in vector_columns}
            valid = {c: np.zeros(count, bool) for c in vector_columns}
            batches = []
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
                    block[ok] = _unit(flat.reshape(-1, dims[column]))
                    matrices[column][at : at + n] = block
                    valid[column][at : at + n] = ok
                batches.append(batch.select(plain))
                at += n
            if not batches or at != count:
                raise RuntimeError(
                    f"{index.uri}: the table changed while it was read; search again"
                )
            rows = pa.Table.from_batches(batches).combine_chunks()
            del batches
            listed = table.list_indices()
            has_fts = any(ix.columns == ["caption"] for ix in listed)
            parts = partitions or partitions_for(count)
            ivfs = {}
            for column in vector_columns:
                if valid[column].any():
                    ivfs[column] = Ivf.build(matrices[column], valid[column], parts, seed, allocate)
                del matrices[column]  # the inverted file holds its own copy, in partition order
        finally:
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
        codes, numbers = _filter_arrays(rows)
        fts = Postings.from_captions(rows.column("caption")) if has_fts else None
        return cls(version, rows, ivfs, codes, numbers, has_fts, fts, index.media_uri)

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
        fts = None
        if self.fts is not None:
            for part in ("indptr", "rows", "weights"):
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
            return np.load(folder / f"{name}.npy", mmap_mode="r")

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
            fts = Postings(
                json.loads((folder / "fts.vocabulary.json").read_text()),
                array("fts.indptr"),
                array("fts.rows"),
                array("fts.weights"),
                meta["fts"]["count"],
                meta["fts"]["documents"],
            )
        return cls(
            meta["stamp"]["version"], rows, ivfs, codes, numbers, meta["has_fts"], fts, media_uri
        )


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
        encoded = pc.dictionary_encode(_array(column))
        values = encoded.indices.fill_null(-1).to_numpy().astype(np.int32)
        codes[name] = (values, [str(v) for v in encoded.dictionary.to_pylist()])
    return codes, numbers


def _array(column: Any) -> Any:
    """An Arrow array from an array or a chunked column."""
    return column.combine_chunks() if hasattr(column, "combine_chunks") else column
