"""A clip library opened for searching: the table, the query encoders and ranking, loaded once.

`LibrarySearcher.from_settings(settings)` is what every caller of search holds: the `story
search` command, renders retrieving each plot's clip, the resident search service and the
evaluations. Queries are embedded by torch-free numpy towers (`story.models.numpy_text`) that
give the same vectors as the torch encoders, so a cold process does not import torch,
transformers or open_clip to embed one query; `torch_encoders=True` uses the torch ones.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from story.tasks.library.index import ClipIndex
from story.tasks.library.query_intent import canonical_text, parse_query
from story.tasks.library.rerank import DEFAULT_WEIGHTS, RankWeights
from story.tasks.library.search import (
    POOL,
    Hit,
    QueryVectors,
    SearchError,
    SearchFilters,
    search,
)


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
    ) -> None:
        self.index = index
        self.encoders = encoders
        self.weights = weights

    @classmethod
    def from_settings(cls, settings: Any, torch_encoders: bool = False) -> LibrarySearcher:
        """The settings' library with the configured encoders (numpy towers unless asked)."""
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
        return cls(index, encoders)

    def embed(self, queries: Sequence[str]) -> list[QueryVectors]:
        """Every query's vectors, each encoder called once for the whole batch.

        One BLAS thread: these products are a few rows thick, and on a busy machine spinning up
        BLAS threads for them cost ~1 s per query instead of ~20 ms.
        """
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"):
            return self._embed(list(queries))

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
