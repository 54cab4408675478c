"""A clip library opened for searching: the table, the query encoders and ranking, loaded once.

`LibrarySearcher.from_settings(settings)` is what every caller of search holds: the `story
search` command, renders retrieving each plot's clip, the resident search service and the
evaluations. Queries are embedded by torch-free numpy towers (`story.models.numpy_text`) that
give the same vectors as the torch encoders, so a cold process does not import torch,
transformers or open_clip to embed one query; `torch_encoders=True` uses the torch ones.
A long-lived searcher (`resident=True`, the search service) also keeps the table's search columns
in memory (`story.tasks.library.resident`, rebuilt when the table's version changes) and the
vectors of recent queries.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from story.tasks.library import snapshot
from story.tasks.library.columns import CAPTION_SLOTS, TEXT_VECTOR, VISUAL_VECTOR
from story.tasks.library.partitioned import PartitionedTable
from story.tasks.library.query_intent import canonical_text, parse_query
from story.tasks.library.rerank import DEFAULT_WEIGHTS, RankWeights
from story.tasks.library.resident import MAX_ROWS
from story.tasks.library.search import (
    HIT_COLUMNS,
    POOL,
    RANK_COLUMNS,
    Hit,
    InMemory,
    QueryVectors,
    SearchError,
    SearchFilters,
    search,
)

if TYPE_CHECKING:
    from story.tasks.library.index import ClipIndex

RESIDENT_COLUMNS = (*HIT_COLUMNS, *RANK_COLUMNS, *CAPTION_SLOTS, TEXT_VECTOR, VISUAL_VECTOR)
QUERY_CACHE = 512


@functools.cache
def _blas() -> Any:
    """One threadpoolctl controller per process (building one scans the loaded libraries)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _one_blas_thread(table: InMemory | None, service: bool = False) -> None:
    """A process searching a large table in memory runs BLAS on one thread from then on.

    Its products are one query vector against a partition or the centroids; OpenBLAS's own
    threads gain nothing there and collapse when several searches call it at once: at 1M rows,
    16 concurrent clients answered 3.0 queries a second with OpenBLAS's threads and 41 with one
    (1 client: 50 and 46; `python -m bench.bench_search clients`).

    The search service holding a table in half precision also runs torch on one thread (its
    half-precision products; `ivf.dot`): torch's second thread spun against the full-text
    thread, 95 against 69 ms p50 a hybrid query at 10M rows on two cores. Only the service:
    torch's thread count is the whole process's, and a render worker renders with torch."""
    if isinstance(table, PartitionedTable):
        _blas().limit(limits=1, user_api="blas")
        if service and any(ivf.half for ivf in table.ivfs.values()):
            import torch

            torch.set_num_threads(1)


@dataclass
class QueryEncoders:
    """Caption-space (MiniLM) and video-text-space query encoders; either may be None."""

    text: Any
    visual: Any

    @property
    def names(self) -> dict[str, str | None]:
        return {
            "text": getattr(self.text, "name", None),
            "visual": getattr(self.visual, "name", None),
        }


def _numpy_encoders(settings: Any) -> QueryEncoders:
    from story.models.numpy_text import NumpyClipText, NumpyMiniLM
    from story.models.video_text_config import video_text_folder

    if getattr(settings, "open_clip_checkpoint", None) is not None:
        from story.models.visual_encoder import load_visual_encoder

        return QueryEncoders(NumpyMiniLM(), load_visual_encoder(settings))
    folder = video_text_folder(settings)
    return QueryEncoders(NumpyMiniLM(), NumpyClipText(folder) if folder is not None else None)


def _torch_encoders(settings: Any) -> QueryEncoders:
    from story.models.text_encoder import load_text_encoder
    from story.models.visual_encoder import load_visual_encoder

    return QueryEncoders(
        load_text_encoder("minilm", device=settings.device), load_visual_encoder(settings)
    )


@functools.lru_cache(maxsize=4)
def _cached_encoders(video_text: str, checkpoints: str) -> QueryEncoders:
    from story.tasks.settings import Settings

    return _numpy_encoders(Settings(video_text_model=video_text, checkpoints=Path(checkpoints)))


def query_encoders(settings: Any) -> QueryEncoders:
    """The settings' query encoders, loaded once per process (renders reuse them per story)."""
    if getattr(settings, "open_clip_checkpoint", None) is not None:
        return _numpy_encoders(settings)
    return _cached_encoders(str(settings.video_text_model), str(settings.checkpoints))


class LibrarySearcher:
    """Search one clip table with encoders loaded once (see the module docstring)."""

    def __init__(
        self,
        index: ClipIndex,
        encoders: QueryEncoders,
        weights: RankWeights = DEFAULT_WEIGHTS,
        resident: bool = False,
    ) -> None:
        self.index = index
        self.encoders = encoders
        self.weights = weights
        self.resident = resident
        self._table: InMemory | None = None
        self._table_key: tuple[int, int] | None = None
        # Where each version held in memory is also written as a snapshot (`snapshot`), for
        # cold processes: the search service sets it.
        self.snapshots: Path | None = None
        # Whether a large table with no snapshot is built here (about half a minute a million
        # rows): only the long-lived search service does; a one-off search or a render worker
        # takes the LanceDB path instead.
        self.builds_large = False
        self._queries: OrderedDict[str, QueryVectors] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_settings(
        cls,
        settings: Any,
        torch_encoders: bool = False,
        resident: bool = False,
        snapshots: bool = False,
        builds_large: bool = False,
    ) -> LibrarySearcher:
        """The settings' library with the configured encoders (numpy towers unless asked);
        `resident` keeps the table and recent query vectors in memory (long-lived callers);
        `snapshots` also writes each version it holds to the workspace's search snapshots;
        `builds_large` builds a table above the row-by-row limit when it has no snapshot (the
        search service), where others search through LanceDB."""
        from story.tasks.library.index import ClipIndex

        index = ClipIndex(
            settings.lancedb,
            settings.clips_table,
            storage_options=settings.storage_options or None,
        )
        if not index.exists or index.count() == 0:
            raise SearchError(
                f"{settings.lancedb}: the clip library is empty; run `story index` first"
            )
        encoders = _torch_encoders(settings) if torch_encoders else _numpy_encoders(settings)
        searcher = cls(index, encoders, resident=resident)
        if resident and snapshots:
            searcher.snapshots = Path(settings.workspace)
        searcher.builds_large = resident and builds_large
        if resident:
            searcher.resident_table()
        return searcher

    @classmethod
    def from_snapshot(cls, settings: Any) -> LibrarySearcher | None:
        """The settings' library answered from its snapshot (`story.tasks.library.snapshot`:
        no LanceDB import), or None when it has no snapshot at the table's current version."""
        if settings.storage_options:
            return None
        found = snapshot.read(settings.workspace, str(settings.lancedb), settings.clips_table)
        if found is None:
            return None
        index, table = found
        searcher = cls(index, _numpy_encoders(settings))  # type: ignore[arg-type]
        searcher.hold(table)
        return searcher

    def hold(self, table: InMemory) -> None:
        """Answer from `table` (the index's current version, held in memory) from now on."""
        self.resident = True
        self._table, self._table_key = table, (id(self.index), self.index.version())
        _one_blas_thread(table, self.builds_large)

    def refresh(self, index: ClipIndex) -> None:
        """Search `index` from now on (a newer version of the table)."""
        self.index = index
        with self._lock:
            self._queries.clear()

    def resident_table(self) -> InMemory | None:
        """The table in memory at the index's current version (None unless `resident`, or when
        the table is too large to hold)."""
        if not self.resident:
            return None
        key = (id(self.index), self.index.version())
        if key != self._table_key:
            self._table = None
            if self.index.exists and self.index.count() > MAX_ROWS:
                # A large table: its snapshot at this version (memory-mapped, shared by every
                # process through the page cache). Only a searcher that writes snapshots (the
                # search service) builds one when there is none (about half a minute a million
                # rows); the others (render workers) search through LanceDB meanwhile.
                found = snapshot.read(self.snapshots, self.index.uri, self.index.table_name)
                if found is not None:
                    self._table = found[1]
                elif self.builds_large:
                    self._table = snapshot.load(self.index, RESIDENT_COLUMNS)
            else:
                self._table = snapshot.load(self.index, RESIDENT_COLUMNS)
            self._table_key = key
            _one_blas_thread(self._table, self.builds_large)
            if self.snapshots is not None and self._table is not None:
                with contextlib.suppress(OSError):  # a cold search then reads LanceDB instead
                    snapshot.write(self.snapshots, self.index, self._table)
        return self._table

    def embed(self, queries: Sequence[str]) -> list[QueryVectors]:
        """Every query's vectors, each encoder called once for the whole batch.

        One BLAS thread: these products are a few rows thick, and on a busy machine spinning up
        BLAS threads for them cost ~1 s per query instead of ~20 ms. A resident searcher
        remembers the last QUERY_CACHE queries' vectors.
        """
        queries = list(queries)
        if not self.resident:
            with _blas().limit(limits=1, user_api="blas"):
                return self._embed(queries)
        with self._lock:
            missing = list(dict.fromkeys(q for q in queries if q not in self._queries))
            if missing:
                with _blas().limit(limits=1, user_api="blas"):
                    self._queries.update(zip(missing, self._embed(missing), strict=True))
            found = [self._queries[q] for q in queries]
            for query in queries:
                self._queries.move_to_end(query)
            while len(self._queries) > QUERY_CACHE:
                self._queries.popitem(last=False)
            return found

    def _embed(self, queries: list[str]) -> list[QueryVectors]:
        intents = [parse_query(q) for q in queries]
        text = (
            self.encoders.text.embed_sentences(queries)
            if self.encoders.text is not None and queries
            else [None] * len(queries)
        )
        visual: list[np.ndarray | None] = [None] * len(queries)
        if self.encoders.visual is not None and self.index.visual_dim is not None and queries:
            both = self.encoders.visual.embed_text(
                queries + [canonical_text(intent) for intent in intents]
            )
            mean = (both[: len(queries)] + both[len(queries) :]) / 2.0
            norms = np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-9)
            visual = list((mean / norms).astype(np.float32))
        return [
            QueryVectors(t, v, intent) for t, v, intent in zip(text, visual, intents, strict=True)
        ]

    def search(
        self,
        query: str,
        k: int = 10,
        filters: SearchFilters | None = None,
        mode: str = "hybrid",
        rerank: bool = True,
        diversity: str = "source",
        vectors: QueryVectors | None = None,
        nprobes: int | None = None,
        refine_factor: int | None = 20,
        pool: int = POOL,
        exact: bool = False,
    ) -> list[Hit]:
        """Top-k clips for `query` (`story.tasks.library.search.search` with these encoders)."""
        if vectors is None and isinstance(query, str) and query.strip() and mode != "fts":
            vectors = self.embed([query.strip()])[0]
        return search(
            self.index,
            self.encoders.text,
            query,
            k=k,
            filters=filters,
            mode=mode,
            nprobes=nprobes,
            refine_factor=refine_factor,
            visual_encoder=self.encoders.visual,
            rerank=rerank,
            diversity=diversity,
            weights=self.weights,
            vectors=vectors,
            pool=pool,
            exact=exact,
            resident=self.resident_table(),
        )

    def describe(self) -> dict[str, Any]:
        """What this searcher reads: table, rows, version, encoders, ranking columns."""
        return {
            "lancedb_uri": self.index.uri,
            "table": self.index.table_name,
            "rows": self.index.count(),
            "table_version": self.index.version(),
            "encoders": self.encoders.names,
            "visual_vectors": self.index.visual_dim is not None,
            "motion_ranking": self.index.has_ranking_columns,
            "folder": str(Path(self.index.uri)),
        }
