"""Search the clip library by text: candidates from several lists, one motion-aware ranking.

Hybrid search (the default) gathers candidates from up to five lists, each its top N with the
filters applied before ranking: the caption vectors (MiniLM), the video-text vectors (what the
clip shows, through the visual encoder's text tower), full-text search on captions, the clips
whose measured motion / camera label is the one the query asks for, and the captioned clips whose
caption states the asked shape, motion and camera. `rerank.score_row`
then scores every candidate on all the evidence at once (similarities, the asked motion and
camera move against what each clip shows, the caption's stated slots), and `diversity` keeps one
hit per source by default. `rerank=False` falls back to reciprocal rank fusion of the lists
(RRF: score = sum over lists of weight / (RRF_K + rank)), the ranking before motion was read.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from story.tasks.library.columns import CAPTION_SLOTS, TEXT_VECTOR, VISUAL_VECTOR, ivf_partitions
from story.tasks.library.filters import SearchError, SearchFilters, sql_string
from story.tasks.library.partitioned import PartitionedTable
from story.tasks.library.query_intent import QueryIntent, canonical_text, parse_query
from story.tasks.library.rerank import (
    DEFAULT_WEIGHTS,
    DIVERSITY,
    UNIT_WEIGHTS,
    RankWeights,
    diversify,
    diversity_key,
    score_row,
)
from story.tasks.library.resident import ResidentTable, Term

if TYPE_CHECKING:
    from story.tasks.library.index import ClipIndex

InMemory = ResidentTable | PartitionedTable
"""A table held in memory: small ones row by row, large ones partitioned."""
RRF_K = 60
# Word matches break ties and rescue rare names; meaning leads (a shared word like "sphere"
# must not outrank the right colour and motion).
FTS_WEIGHT = 0.5
MODES = ("hybrid", "vector", "fts")
MIN_NPROBES = 20
PROBE_SHARE = 40  # probe 1 in 40 partitions (2.5%): chosen on validation at 1M and 10M rows
POOL = 60
# The slot lists (pre-filtered on the asked motion / camera / caption slots) gather candidates
# that ranking re-scores on every piece of evidence, so their refine step re-reads fewer full
# vectors: 5 for 20 gave the same hits for all 200 validation queries at 1M rows at 0.85x the
# hybrid p50 (`python -m bench.bench_search slots`, bench/results/search_slots.json).
SLOT_REFINE = 5
HIT_COLUMNS = ["clip_id", "uri", "start", "end", "caption", "source", "duration", "source_hash"]
RANK_COLUMNS = [
    "source_shot",
    "motion_label",
    "camera_label",
    "motion_probs",
    "camera_probs",
    "shape_probs",
]
_LISTS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="story-search")


@dataclass
class Hit:
    """One search result; `motion` / `camera` are what the clip shows (measured at ingest)."""

    clip_id: str
    uri: str
    start: float
    end: float
    caption: str
    score: float
    source: str | None
    duration: float
    motion: str | None = None
    camera: str | None = None
    evidence: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _hit(row: dict[str, Any], score: float, evidence: dict[str, float] | None = None) -> Hit:
    return Hit(
        clip_id=row["clip_id"],
        uri=row["uri"],
        start=float(row["start"]),
        end=float(row["end"]),
        caption=row["caption"],
        score=float(score),
        source=row.get("source"),
        duration=float(row["duration"]),
        motion=row.get("motion_label"),
        camera=row.get("camera_label"),
        evidence={k: round(v, 4) for k, v in (evidence or {}).items()},
    )


def default_nprobes(rows: int, dim: int) -> int:
    """IVF partitions to probe: 1 in PROBE_SHARE of the index's, never fewer than MIN_NPROBES.

    20 at 1M rows (250 partitions) and at 10M (791). Chosen on the validation queries of
    `story eval search` (2026-12-04, refine factor 20): the fastest setting within 0.02 of exact
    search both by scene and by row; at 10M, 20 probes find 0.984 of the exact 10 nearest rows
    (40: 0.990) at 236 ms p50 against 266 ms hybrid, and every setting finds the right scene.
    """
    partitions = ivf_partitions(max(rows, 1))
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


@dataclass
class _Plan:
    """What every list of one query shares: columns, filter, probes."""

    index: ClipIndex
    columns: list[str]
    where: str | None
    nprobes: int
    refine_factor: int | None
    pool: int
    exact: bool = False
    filters: SearchFilters | None = None
    resident: InMemory | None = None
    asked_nprobes: int | None = None
    """The caller's nprobes (None: the default of whichever index answers)."""


def _arrow_rows(table: Any, index: ClipIndex) -> list[dict[str, Any]]:
    """A result table as row dicts (media uris as paths to open), vector columns as numpy rows:
    turning 60 rows' vectors into Python floats (`to_list()`) was most of a warm query's CPU
    time."""
    vectors = {
        name: table.column(name).combine_chunks()
        for name in (TEXT_VECTOR, VISUAL_VECTOR)
        if name in table.column_names
    }
    rest = table.drop_columns(list(vectors)).to_pylist()
    for row in rest:
        if "uri" in row:
            row["uri"] = index.media_uri(row["uri"])
    for name, column in vectors.items():
        valid = column.is_valid().to_numpy(zero_copy_only=False)
        dim = column.type.list_size
        flat = column.flatten().to_numpy(zero_copy_only=False)
        if valid.all():
            matrix = flat.reshape(len(column), dim)
            for row, vector in zip(rest, matrix, strict=True):
                row[name] = vector
        else:
            for row, vector in zip(rest, column.to_pylist(), strict=True):
                row[name] = None if vector is None else np.asarray(vector, np.float32)
    return rest


def _light(plan: _Plan) -> dict[str, bool]:
    """A large in-memory table's lists return light rows (`_position`): `_filled` reads the
    union of a query's lists once (about a third of their rows are in more than one list)."""
    return {"light": True} if isinstance(plan.resident, PartitionedTable) else {}


def _vector_rows(
    plan: _Plan, column: str, vector: np.ndarray, terms: list[Term] | None = None
) -> list[dict[str, Any]]:
    if plan.resident is not None and plan.resident.serves(column, plan.exact):
        return plan.resident.vector_rows(
            column,
            vector,
            plan.filters,
            terms or [],
            plan.pool,
            plan.columns,
            nprobes=plan.asked_nprobes,
            exact=plan.exact,
            **_light(plan),
        )
    builder = (
        plan.index.table.search(vector, vector_column_name=column)
        .distance_type("cosine")
        .select(["clip_id", "_distance"])
        .with_row_id(True)
        .nprobes(plan.nprobes)
        .limit(plan.pool)
    )
    refine = plan.refine_factor
    if terms and refine is not None:
        refine = min(refine, SLOT_REFINE)  # read per call: bench_search slots sets it
    if plan.exact:
        builder = builder.bypass_vector_index()
    elif refine is not None:
        builder = builder.refine_factor(refine)
    where = " AND ".join(f"({w})" for w in (plan.where, terms_sql(terms or [])) if w)
    if where:
        builder = builder.where(where, prefilter=True)
    return builder.to_arrow().to_pylist()  # light rows: _filled reads their columns once


def _filled(lists: dict[str, list[dict[str, Any]]], plan: _Plan) -> dict[str, list[dict[str, Any]]]:
    """Every list's rows with the plan's columns. LanceDB's lists return light rows (clip id,
    score, row id): reading 18 columns costs each list about as much as its index search, so
    the union of the lists' rows is read once, by row id, instead of once per list; a large
    in-memory table's lists return light rows too (`_position`), read once the same way."""
    every = [row for rows in lists.values() for row in rows]
    positions = sorted({row["_position"] for row in every if "_position" in row})
    if positions:
        assert isinstance(plan.resident, PartitionedTable)
        read = plan.resident.rows(np.asarray(positions, np.int64), plan.columns)
        held = dict(zip(positions, read, strict=True))
        lists = {n: [_merged(held, row, "_position") for row in rows] for n, rows in lists.items()}
    wanted = sorted({row["_rowid"] for rows in lists.values() for row in rows if "_rowid" in row})
    if not wanted:
        return lists
    table = plan.index.table.take_row_ids(wanted).select(plan.columns).with_row_id().to_arrow()
    ids = table.column("_rowid").to_pylist()
    full = dict(zip(ids, _arrow_rows(table.drop_columns(["_rowid"]), plan.index), strict=True))
    missing = [i for i in wanted if i not in full]
    if missing:
        raise SearchError(
            f"{plan.index.uri}: {len(missing)} rows found by the index are gone from table "
            f"{plan.index.table_name!r} (changed during the search?): search again"
        )
    return {name: [_merged(full, row, "_rowid") for row in rows] for name, rows in lists.items()}


def _merged(full: dict[Any, dict[str, Any]], row: dict[str, Any], key: str) -> dict[str, Any]:
    """A light row (`key` names its row in `full`) as the full row plus its list's own fields
    (`_distance`, `_score`); any other row as it is."""
    if key not in row:
        return row
    own = {k: v for k, v in row.items() if k.startswith("_") and k != key}
    return {**full[row[key]], **own}


def _has_fts(index: ClipIndex) -> bool:
    return any(ix.columns == ["caption"] for ix in index.table.list_indices())


def _fts_rows(plan: _Plan, query: str) -> list[dict[str, Any]]:
    resident = plan.resident
    if resident is not None and resident.fts is not None:
        # BM25 in memory, LanceDB's scores (`story.tasks.library.bm25`), ties in table order.
        return resident.fts_rows(query, plan.filters, plan.pool, plan.columns, **_light(plan))
    builder = (
        plan.index.table.search(query, query_type="fts", fts_columns="caption")
        .select(["clip_id", "_score"])
        .with_row_id(resident is None)
        .limit(plan.pool)
    )
    if plan.where:
        builder = builder.where(plan.where, prefilter=True)
    found = builder.to_arrow()
    if resident is None:
        return found.to_pylist()  # light rows: _filled reads their columns once
    # Full-text ranking stays LanceDB's (BM25 on its tokenizer); the rows come from memory.
    ids = found.column("clip_id").to_pylist()
    if not isinstance(resident, ResidentTable) or any(cid not in resident.position for cid in ids):
        return _fts_rows(replace(plan, resident=None), query)
    scores = found.column("_score").to_pylist()
    return [
        resident.row(resident.position[cid], plan.columns, _score=score)
        for cid, score in zip(ids, scores, strict=True)
    ]


def _fused_rows(
    ranked_lists: list[list[dict[str, Any]]], rrf_k: int, weights: list[float]
) -> list[dict[str, Any]]:
    """Rows of all lists ordered by their summed weight/(rrf_k + rank), with `_score` set."""
    scores: dict[str, float] = {}
    rows: dict[str, dict[str, Any]] = {}
    for ranked, weight in zip(ranked_lists, weights, strict=True):
        for rank, row in enumerate(ranked, start=1):
            cid = row["clip_id"]
            scores[cid] = scores.get(cid, 0.0) + weight / (rrf_k + rank)
            rows.setdefault(cid, row)
    order = sorted(scores, key=lambda cid: (-scores[cid], cid))
    return [dict(rows[cid], _score=scores[cid]) for cid in order]


def reciprocal_rank_fusion(
    ranked_lists: list[list[dict[str, Any]]],
    k: int,
    rrf_k: int = RRF_K,
    weights: list[float] | None = None,
) -> list[Hit]:
    """Fuse ranked lists: each clip scores the sum of weight/(rrf_k + rank) over the lists."""
    fused = _fused_rows(ranked_lists, rrf_k, weights or [1.0] * len(ranked_lists))
    return [_hit(row, row["_score"]) for row in fused[:k]]


SIDEWAYS = ("sideways_left", "sideways_right", "sideways")


def _wanted(value: str) -> tuple[str, ...]:
    return SIDEWAYS if value == "sideways" else (value,)


def slot_terms(intent: QueryIntent) -> list[Term]:
    """Clips whose measured motion and camera move (or, where nothing was measured, whose
    caption's) are what the query asks: (column, wanted values, caption column if null)."""
    terms: list[Term] = []
    if intent.motion:
        terms.append(("motion_label", _wanted(intent.motion), "caption_motion"))
    if intent.camera:
        terms.append(("camera_label", (intent.camera,), "caption_camera"))
    return terms


def caption_terms(intent: QueryIntent) -> list[Term]:
    """Captioned clips whose caption states the query's shape, motion and camera (at least two
    of them, else no list)."""
    terms: list[Term] = [
        (column, _wanted(value), None)
        for column, value in (
            ("caption_shape", intent.shape),
            ("caption_motion", intent.motion),
            ("caption_camera", intent.camera),
        )
        if value
    ]
    return terms if len(terms) >= 2 else []


def terms_sql(terms: list[Term]) -> str | None:
    """Terms as a SQL where-clause (None when there are none)."""
    clauses = []
    for column, values, fallback in terms:
        wanted = ", ".join(sql_string(v) for v in values)
        clause = f"{column} IN ({wanted})"
        if fallback is not None:
            clause = f"({clause} OR ({column} IS NULL AND {fallback} IN ({wanted})))"
        clauses.append(clause)
    return " AND ".join(clauses) or None


@dataclass
class QueryVectors:
    """A query embedded for every list: caption space and (if any) video-text space."""

    text: np.ndarray | None
    visual: np.ndarray | None
    intent: QueryIntent


def embed_query(
    query: str,
    encoder: Any,
    visual_encoder: Any = None,
    text_vector: np.ndarray | None = None,
) -> QueryVectors:
    """Embed a query: its caption-space vector and its video-text vector.

    The video-text vector averages the query as typed and the query restated in the caption
    grammar's words (`canonical_text`), so wording the small encoder never read still lands.
    """
    intent = parse_query(query)
    if text_vector is None and encoder is not None:
        text_vector = encoder.embed_sentences([query])[0]
    visual = None
    if visual_encoder is not None:
        both = visual_encoder.embed_text([query, canonical_text(intent)])
        mean = both.mean(axis=0)
        visual = (mean / max(float(np.linalg.norm(mean)), 1e-9)).astype(np.float32)
    return QueryVectors(text_vector, visual, intent)


def _run_lists(
    calls: list[tuple[str, Any, tuple[Any, ...]]], plan: _Plan
) -> dict[str, list[dict[str, Any]]]:
    """Every list's rows, LanceDB queries side by side on threads; lists answered from memory
    run here (a thread hop costs more than they do), except a large table's full text, which
    runs on a thread beside its vector lists (they share one probe, so they stay together)."""
    resident = plan.resident

    def in_memory(function: Any, args: tuple[Any, ...]) -> bool:
        if resident is None:
            return False
        if function is _fts_rows:
            return resident.fts is not None and not isinstance(resident, PartitionedTable)
        return resident.serves(args[1], plan.exact)

    jobs = {
        name: _LISTS.submit(function, *args)
        for name, function, args in calls
        if not in_memory(function, args)
    }
    return {
        name: jobs[name].result() if name in jobs else function(*args)
        for name, function, args in calls
    }


def search_rows(
    index: ClipIndex,
    encoder: Any,
    query: str,
    k: int = 10,
    filters: SearchFilters | None = None,
    mode: str = "hybrid",
    nprobes: int | None = None,
    refine_factor: int | None = 20,
    visual_encoder: Any = None,
    text_vector: np.ndarray | None = None,
    rerank: bool = True,
    weights: RankWeights = DEFAULT_WEIGHTS,
    vectors: QueryVectors | None = None,
    pool: int = POOL,
    exact: bool = False,
    resident: InMemory | None = None,
) -> list[dict[str, Any]]:
    """Every candidate row for a text query, best first, each with `_score` (and `_evidence`,
    the parts of its score, when ranking); `search` cuts this to k hits with diversity and
    documents the arguments.
    """
    query = _validate(query, k, mode, nprobes, refine_factor)
    where = (filters or SearchFilters()).where()
    rows = resident.count if resident is not None else (index.count() if index.exists else 0)
    if rows == 0:
        return []
    if encoder is not None and encoder.dim != index.text_dim:
        raise SearchError(
            f"text encoder {encoder.name} gives {encoder.dim} dims, the table's text_vector has "
            f"{index.text_dim}: search with the encoder the library was indexed with"
        )
    if visual_encoder is not None and index.visual_dim not in (None, visual_encoder.dim):
        raise SearchError(
            f"visual encoder {visual_encoder.name} gives {visual_encoder.dim} dims, the table's "
            f"visual_vector has {index.visual_dim}: search with the encoder it was indexed with"
        )
    ranking = rerank and index.has_ranking_columns
    present = set(index.schema.names)
    columns = [c for c in HIT_COLUMNS + RANK_COLUMNS + list(CAPTION_SLOTS) if c in present]
    if ranking:
        columns += [c for c in (TEXT_VECTOR, VISUAL_VECTOR) if c in present]
    plan = _Plan(
        index=index,
        columns=columns,
        where=where,
        nprobes=nprobes or default_nprobes(rows, index.text_dim),
        refine_factor=refine_factor,
        pool=max(pool, 4 * k),
        exact=exact,
        filters=filters,
        resident=resident,
        asked_nprobes=nprobes,
    )
    has_fts = resident.has_fts if resident is not None else _has_fts(index)
    if mode == "fts":
        if not has_fts:
            raise SearchError(
                f"{index.uri}: table {index.table_name!r} has no full-text index yet; "
                "run `story index` to build it"
            )
        return _filled({"fts": _fts_rows(plan, query)}, plan)["fts"]

    if vectors is None:
        vectors = embed_query(query, encoder, visual_encoder, text_vector)
    use_visual = vectors.visual is not None and index.visual_dim == len(vectors.visual)
    # (name, function, arguments) in the order candidates are gathered (it breaks score ties).
    calls: list[tuple[str, Any, tuple[Any, ...]]] = []
    if vectors.text is not None:
        calls.append(("text", _vector_rows, (plan, TEXT_VECTOR, vectors.text)))
    if use_visual:
        calls.append(("visual", _vector_rows, (plan, VISUAL_VECTOR, vectors.visual)))
    if mode == "hybrid" and has_fts:
        calls.append(("fts", _fts_rows, (plan, query)))
    caption = caption_terms(vectors.intent) if ranking else []
    if caption and vectors.text is not None:
        calls.append(("caption_slots", _vector_rows, (plan, TEXT_VECTOR, vectors.text, caption)))
    slots = slot_terms(vectors.intent) if ranking else []
    if slots:
        column, vector = (
            (VISUAL_VECTOR, vectors.visual) if use_visual else (TEXT_VECTOR, vectors.text)
        )
        if vector is not None:
            calls.append(("slots", _vector_rows, (plan, column, vector, slots)))
    lists = _filled(_run_lists(calls, plan), plan)

    if not ranking:
        order = [n for n in ("text", "visual", "fts") if lists.get(n)]
        if mode == "vector" and order == ["text"]:
            return [dict(row, _score=1.0 - row["_distance"]) for row in lists["text"]]
        weight = {"text": 1.0, "visual": 1.0, "fts": FTS_WEIGHT}
        return _fused_rows([lists[n] for n in order], RRF_K, [weight[n] for n in order])

    candidates: dict[str, dict[str, Any]] = {}
    for rows_ in lists.values():
        for row in rows_:
            candidates.setdefault(row["clip_id"], row)
    fts_rank = {row["clip_id"]: rank for rank, row in enumerate(lists.get("fts", []), 1)}
    scored = []
    for position, (cid, row) in enumerate(candidates.items()):
        visual = vectors.visual if use_visual else None
        unweighted, raw = score_row(
            row, vectors.intent, vectors.text, visual, fts_rank.get(cid), UNIT_WEIGHTS
        )
        evidence = {name: getattr(weights, name) * value for name, value in raw.items()}
        scored.append((sum(evidence.values()), unweighted, position, row, evidence))
    # Equal scores are ordered by the evidence unweighted, then by the order the lists found
    # them in: a weight of 0 (chosen on validation) still breaks ties.
    scored.sort(key=lambda item: (-item[0], -item[1], item[2]))
    return [dict(row, _score=score, _evidence=ev) for score, _, _, row, ev in scored]


def search(
    index: ClipIndex,
    encoder: Any,
    query: str,
    k: int = 10,
    filters: SearchFilters | None = None,
    mode: str = "hybrid",
    nprobes: int | None = None,
    refine_factor: int | None = 20,
    visual_encoder: Any = None,
    text_vector: np.ndarray | None = None,
    rerank: bool = True,
    diversity: str = "source",
    weights: RankWeights = DEFAULT_WEIGHTS,
    vectors: QueryVectors | None = None,
    pool: int = POOL,
    exact: bool = False,
    resident: InMemory | None = None,
) -> list[Hit]:
    """Top-k clips for a text query (see the module docstring for how they are found).

    `text_vector` / `vectors` are the query's embeddings when the caller already has them (a
    story embeds all its queries in one batch); otherwise `encoder` (caption space) and
    `visual_encoder` (video-text space) embed it here. Each vector list fetches `pool`
    candidates and re-ranks `refine_factor` times as many with exact distances (the slot lists
    at most SLOT_REFINE times; nprobes and
    refine_factor only matter once the IVF-PQ index exists; below its threshold the search is
    exact). `nprobes=None` probes `default_nprobes(rows)` partitions, so recall holds as the
    library grows. `diversity`: "source" (one hit per source file), "shot" or "off". `exact`
    searches the vectors without their index (the reference an index is measured against).
    `resident` (the table held in memory, `story.tasks.library.resident`) answers the vector
    lists it can reproduce exactly, with the same hits.
    """
    if diversity not in DIVERSITY:
        raise SearchError(f"unknown diversity {diversity!r}: use one of {', '.join(DIVERSITY)}")
    rows = search_rows(
        index,
        encoder,
        query,
        k=k,
        filters=filters,
        mode=mode,
        nprobes=nprobes,
        refine_factor=refine_factor,
        visual_encoder=visual_encoder,
        text_vector=text_vector,
        rerank=rerank,
        weights=weights,
        vectors=vectors,
        pool=pool,
        exact=exact,
        resident=resident,
    )
    chosen = diversify(rows, k, diversity_key(diversity))
    return [_hit(row, row["_score"], row.get("_evidence")) for row in chosen]
