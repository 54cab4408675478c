"""Search the clip library by text: vector, full-text, or both fused by reciprocal rank.

Hybrid search runs a vector search (caption embeddings, plus the visual column when a visual
encoder is given) and a full-text search on captions, each returning its top N with the filters
applied before ranking, then fuses the ranked lists with reciprocal rank fusion (RRF):
score(clip) = sum over lists of weight / (RRF_K + rank), with the full-text list weighted
FTS_WEIGHT. No score calibration between the lists is needed, and a clip both searches agree on
rises to the top.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from story.models.text_encoder import TextEncoder
from story.tasks.errors import StoryError
from story.tasks.library.index import (
    TEXT_VECTOR,
    VISUAL_VECTOR,
    ClipIndex,
    ivf_pq_config,
    sql_string,
)

RRF_K = 60
# Word matches break ties and rescue rare names; meaning leads (a shared word like "sphere"
# must not outrank the right colour and motion).
FTS_WEIGHT = 0.5
MODES = ("hybrid", "vector", "fts")
MIN_NPROBES = 20
PROBE_SHARE = 20  # probe 1 in 20 partitions (5%)
HIT_COLUMNS = ["clip_id", "uri", "start", "end", "caption", "source", "duration"]


class SearchError(StoryError, ValueError):
    """A query or its options are invalid, or the library cannot answer it."""


@dataclass
class SearchFilters:
    """Conditions every hit must meet; None means unconstrained."""

    min_duration: float | None = None
    max_duration: float | None = None
    min_aspect: float | None = None
    max_aspect: float | None = None
    source: str | None = None

    def where(self) -> str | None:
        """The filters as a SQL where-clause (None when there are none)."""
        clauses = []
        for column, low, high in (
            ("duration", self.min_duration, self.max_duration),
            ("aspect", self.min_aspect, self.max_aspect),
        ):
            for name, value in ((f"min_{column}", low), (f"max_{column}", high)):
                if value is not None and not (
                    isinstance(value, int | float) and math.isfinite(value)
                ):
                    raise SearchError(f"filter {name} must be a finite number, got {value!r}")
            if low is not None and high is not None and low > high:
                raise SearchError(f"filter min_{column} ({low}) is above max_{column} ({high})")
            if low is not None:
                clauses.append(f"{column} >= {float(low)!r}")
            if high is not None:
                clauses.append(f"{column} <= {float(high)!r}")
        if self.source is not None:
            clauses.append(f"source = {sql_string(self.source)}")
        return " AND ".join(clauses) or None


@dataclass
class Hit:
    """One search result."""

    clip_id: str
    uri: str
    start: float
    end: float
    caption: str
    score: float
    source: str | None
    duration: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _hit(row: dict[str, Any], score: float) -> Hit:
    return Hit(
        clip_id=row["clip_id"],
        uri=row["uri"],
        start=float(row["start"]),
        end=float(row["end"]),
        caption=row["caption"],
        score=float(score),
        source=row.get("source"),
        duration=float(row["duration"]),
    )


def default_nprobes(rows: int, dim: int) -> int:
    """IVF partitions to probe: 1 in PROBE_SHARE of the index's, never fewer than MIN_NPROBES.

    At 1M rows (250 partitions) that is 20, at 10M (791) 40: bench/bench_scale.py measured
    recall@10 0.75 at 10M with a fixed 20 and 0.87 with 40.
    """
    partitions = ivf_pq_config(max(rows, 1), dim).num_partitions
    return max(MIN_NPROBES, math.ceil(partitions / PROBE_SHARE))


def _validate(query: str, k: int, mode: str, nprobes: int | None, refine_factor: int | None) -> str:
    if not isinstance(query, str) or not query.strip():
        raise SearchError("the search query is empty: describe the clip you want")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise SearchError(f"k must be a positive integer, got {k!r}")
    if mode not in MODES:
        raise SearchError(f"unknown search mode {mode!r}: use one of {', '.join(MODES)}")
    if nprobes is not None and nprobes < 1:
        raise SearchError(f"nprobes must be >= 1, got {nprobes}")
    if refine_factor is not None and refine_factor < 1:
        raise SearchError(f"refine_factor must be >= 1 or None, got {refine_factor}")
    return query.strip()


def _vector_rows(
    index: ClipIndex,
    column: str,
    vector: np.ndarray,
    limit: int,
    where: str | None,
    nprobes: int,
    refine_factor: int | None,
) -> list[dict[str, Any]]:
    builder = (
        index.table.search(vector, vector_column_name=column)
        .distance_type("cosine")
        .select([*HIT_COLUMNS, "_distance"])
        .nprobes(nprobes)
        .limit(limit)
    )
    if refine_factor is not None:
        builder = builder.refine_factor(refine_factor)
    if where:
        builder = builder.where(where, prefilter=True)
    return builder.to_list()


def _has_fts(index: ClipIndex) -> bool:
    return any(ix.columns == ["caption"] for ix in index.table.list_indices())


def _fts_rows(index: ClipIndex, query: str, limit: int, where: str | None) -> list[dict[str, Any]]:
    builder = (
        index.table.search(query, query_type="fts", fts_columns="caption")
        .select([*HIT_COLUMNS, "_score"])
        .limit(limit)
    )
    if where:
        builder = builder.where(where, prefilter=True)
    return builder.to_list()


def reciprocal_rank_fusion(
    ranked_lists: list[list[dict[str, Any]]],
    k: int,
    rrf_k: int = RRF_K,
    weights: list[float] | None = None,
) -> list[Hit]:
    """Fuse ranked lists: each clip scores the sum of weight/(rrf_k + rank) over the lists."""
    weights = weights or [1.0] * len(ranked_lists)
    scores: dict[str, float] = {}
    rows: dict[str, dict[str, Any]] = {}
    for ranked, weight in zip(ranked_lists, weights, strict=True):
        for rank, row in enumerate(ranked, start=1):
            cid = row["clip_id"]
            scores[cid] = scores.get(cid, 0.0) + weight / (rrf_k + rank)
            rows.setdefault(cid, row)
    order = sorted(scores, key=lambda cid: (-scores[cid], cid))
    return [_hit(rows[cid], scores[cid]) for cid in order[:k]]


def search(
    index: ClipIndex,
    encoder: TextEncoder,
    query: str,
    k: int = 10,
    filters: SearchFilters | None = None,
    mode: str = "hybrid",
    nprobes: int | None = None,
    refine_factor: int | None = 20,
    visual_encoder: Any = None,
    text_vector: np.ndarray | None = None,
) -> list[Hit]:
    """Top-k clips for a text query; `score` is cosine similarity, BM25, or the fused RRF score.

    `text_vector` is the query's embedding when the caller already has it (a story embeds all
    its queries in one encoder batch); otherwise `encoder` embeds the query here.

    Each vector search fetches max(4k, 50) candidates and re-ranks `refine_factor` times as many
    with exact distances: the default re-ranks ~1000, which held recall@10 above 0.95 on 1M rows
    with IVF-PQ in bench/bench_search.py (nprobes and refine_factor only matter once the IVF-PQ
    index exists; below its threshold the search is exact). `nprobes=None` probes
    `default_nprobes(rows)` partitions, so recall holds as the library grows.
    """
    query = _validate(query, k, mode, nprobes, refine_factor)
    where = (filters or SearchFilters()).where()
    rows = index.count() if index.exists else 0
    if rows == 0:
        return []
    if nprobes is None:
        nprobes = default_nprobes(rows, index.text_dim)
    if encoder.dim != index.text_dim:
        raise SearchError(
            f"text encoder {encoder.name} gives {encoder.dim} dims, the table's text_vector has "
            f"{index.text_dim}: search with the encoder the library was indexed with"
        )
    pool = max(4 * k, 50)
    has_fts = _has_fts(index)
    if mode == "fts":
        if not has_fts:
            raise SearchError(
                f"{index.uri}: table {index.table_name!r} has no full-text index yet; "
                "run `story index` to build it"
            )
        return [_hit(row, row["_score"]) for row in _fts_rows(index, query, k, where)]

    if text_vector is None:
        text_vector = encoder.embed_sentences([query])[0]
    ranked = [_vector_rows(index, TEXT_VECTOR, text_vector, pool, where, nprobes, refine_factor)]
    if visual_encoder is not None and index.visual_dim is not None:
        visual_query = visual_encoder.embed_text([query])[0]
        ranked.append(
            _vector_rows(index, VISUAL_VECTOR, visual_query, pool, where, nprobes, refine_factor)
        )
    if mode == "vector" and len(ranked) == 1:
        return [_hit(row, 1.0 - row["_distance"]) for row in ranked[0][:k]]
    weights = [1.0] * len(ranked)
    if mode == "hybrid" and has_fts:
        ranked.append(_fts_rows(index, query, pool, where))
        weights.append(FTS_WEIGHT)
    kept = [(r, w) for r, w in zip(ranked, weights, strict=True) if r]
    return reciprocal_rank_fusion([r for r, _ in kept], k, weights=[w for _, w in kept])
