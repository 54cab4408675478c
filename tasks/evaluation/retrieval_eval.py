"""`story eval retrieval`: precision@1 and recall@5 on shape + motion + camera, with baselines.

For one split it builds (or reuses) the evaluation library (`retrieval_library`), runs every
query set (`retrieval_queries`) against the captioned table and its captionless copy with each
method, and reports per cell the mean and its 95% interval (Wilson for 0/1 scores, bootstrap
over queries otherwise), plus paired differences against the caption-only baseline:

- `random`: a uniformly random ranking of the table (exact expectation per query);
- `caption_only`: caption vector + full text fused by reciprocal rank, no visual vector and no
  motion reading (the product before this ranking);
- `lists_rrf`: caption, video-text and full-text lists fused by reciprocal rank, no re-ranking
  (an ablation, not run by default: it costs a search per query and table);
- `product`: the default search (all lists, motion-aware re-ranking, one hit per source).

The ground is scored apart (`ground@1`, over queries that name one). The example story's plots
are searched in the sample library and checked against its clips' truth.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from story.tasks.evaluation.intervals import mean_interval, paired_difference
from story.tasks.evaluation.retrieval_library import UNCAPTIONED, RetrievalLibrary
from story.tasks.evaluation.retrieval_queries import QueryCase
from story.tasks.library.search import QueryVectors
from story.tasks.library.searcher import LibrarySearcher, QueryEncoders

METHODS = ("random", "caption_only", "lists_rrf", "product")
DEFAULT_METHODS = ("random", "caption_only", "product")
K = 5
Search = Callable[[str, QueryVectors], list[Any]]


def method_search(searcher: LibrarySearcher, method: str) -> Search:
    """A function (query, its vectors) -> top-K hits for one method (not `random`).

    Every method reads the query vectors embedded once per query (caption_only drops the
    video-text one), so methods differ only in what they search and how they rank.
    """
    if method == "caption_only":
        plain = LibrarySearcher(
            searcher.index, QueryEncoders(searcher.encoders.text, None), resident=searcher.resident
        )
        return lambda q, v: plain.search(
            q, k=K, rerank=False, vectors=QueryVectors(v.text, None, v.intent)
        )
    if method == "lists_rrf":
        return lambda q, v: searcher.search(q, k=K, rerank=False, vectors=v)
    if method == "product":
        return lambda q, v: searcher.search(q, k=K, vectors=v)
    raise ValueError(f"unknown method {method!r}")


def _random_scores(
    cases: list[QueryCase], truths: list[dict[str, str]]
) -> dict[str, list[float | None]]:
    """Expected p@1 and R@5 of a uniformly random ranking, per query."""
    n = len(truths)
    out: dict[str, list[float | None]] = {"p@1": [], "R@5": [], "ground@1": []}
    for case in cases:
        r = sum(case.relevant(t) for t in truths)
        out["p@1"].append(r / n)
        miss = math.comb(n - r, K) / math.comb(n, K) if n - r >= K else 0.0
        out["R@5"].append(1.0 - miss)
        grounds = [case.ground_matches(t) for t in truths]
        asked = [g for g in grounds if g is not None]
        out["ground@1"].append(sum(asked) / len(asked) if asked else None)
    return out


def score_method(
    library: RetrievalLibrary,
    run: Search,
    cases: list[QueryCase],
    vectors: list[QueryVectors],
) -> dict[str, list[Any]]:
    """Per query: p@1, R@5, ground@1 and top-1 slot checks, plus search latency (after
    embedding) and the top hit."""
    out: dict[str, list[Any]] = {
        k: [] for k in ("p@1", "R@5", "ground@1", "shape@1", "motion@1", "camera@1", "ms", "top")
    }
    for case, vector in zip(cases, vectors, strict=True):
        t0 = time.perf_counter()
        hits = run(case.query, vector)
        out["ms"].append(1000 * (time.perf_counter() - t0))
        truths = [library.truth_of(h.uri) for h in hits]
        relevant = [case.relevant(t) for t in truths]
        out["p@1"].append(float(bool(relevant) and relevant[0]))
        out["R@5"].append(float(any(relevant)))
        top = truths[0] if truths else {}
        out["ground@1"].append(case.ground_matches(top) if top else None)
        for slot in ("shape", "motion", "camera"):
            wanted = getattr(case, slot)
            if wanted is None or "real" in top or not top:
                out[f"{slot}@1"].append(None)
            elif slot == "motion":
                from story.tasks.library.query_intent import motion_matches

                out[f"{slot}@1"].append(float(motion_matches(wanted, top["motion"])))
            else:
                out[f"{slot}@1"].append(float(top[slot] == wanted))
        out["top"].append(hits[0].uri if hits else None)
    return out


def _interval(values: list[Any]) -> dict[str, float] | None:
    kept = [float(v) for v in values if v is not None]
    return mean_interval(kept) if kept else None


def evaluate(
    library: RetrievalLibrary,
    sets: dict[str, list[QueryCase]],
    searchers: dict[str, LibrarySearcher],
    methods: tuple[str, ...] = DEFAULT_METHODS,
    on_block: Callable[[str, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Scores of every (table, query set, method); tables are CAPTIONED / UNCAPTIONED.
    `on_block(key, block)` sees each finished block (a long run reports as it goes)."""
    results: dict[str, Any] = {}
    for table, searcher in searchers.items():
        truths = [library.truth_of(uri) for uri in searcher.index.rows()["uri"]]
        for set_name, cases in sets.items():
            if not cases or (set_name == "real" and table == UNCAPTIONED):
                continue
            vectors = searcher.embed([c.query for c in cases])
            per_method: dict[str, dict[str, list[Any]]] = {}
            for method in methods:
                if method == "random":
                    per_method[method] = _random_scores(cases, truths)
                else:
                    per_method[method] = score_method(
                        library, method_search(searcher, method), cases, vectors
                    )
            answerable = [any(c.relevant(t) for t in truths) for c in cases]
            results[f"{table}/{set_name}"] = {
                "queries": len(cases),
                "answerable": int(sum(answerable)),
                "per_query": per_method,
                "summary": summarise(per_method),
            }
            if on_block is not None:
                on_block(f"{table}/{set_name}", results[f"{table}/{set_name}"])
    return results


def summarise(per_method: dict[str, dict[str, list[Any]]]) -> dict[str, Any]:
    """Intervals per method and metric; paired p@1 / R@5 gains of product over the baselines."""
    summary: dict[str, Any] = {}
    for method, scores in per_method.items():
        summary[method] = {
            metric: _interval(values)
            for metric, values in scores.items()
            if metric not in ("ms", "top")
        }
        if "ms" in scores:
            ms = sorted(scores["ms"])
            summary[method]["p50_ms"] = round(ms[len(ms) // 2], 1)
    if "product" in per_method:
        for base in ("caption_only", "random"):
            if base in per_method:
                for metric in ("p@1", "R@5"):
                    a = np.asarray(per_method["product"][metric], float)
                    b = np.asarray(per_method[base][metric], float)
                    summary[f"product - {base} ({metric})"] = paired_difference(a, b)
    return summary


def example_story(
    story_file: Path, searcher: LibrarySearcher, truth_of: Callable[[str], dict[str, str]]
) -> list[dict[str, Any]]:
    """Each plot of a story: its query, the top hit, whether the hit has its shape and motion."""
    from story.tasks.library.query_intent import motion_matches, parse_query
    from story.tasks.script.parse import load_story

    story = load_story(story_file)
    rows = []
    for plot in story.plots:
        hits = searcher.search(plot.query, k=1)
        intent = parse_query(plot.query)
        truth = truth_of(hits[0].uri) if hits else {}
        ok = bool(hits) and truth.get("shape") == intent.shape
        ok = ok and motion_matches(intent.motion, truth.get("motion"))
        rows.append(
            {
                "plot": plot.index,
                "query": plot.query,
                "asks": {"shape": intent.shape, "motion": intent.motion},
                "hit": hits[0].uri if hits else None,
                "shows": truth,
                "shape_and_motion": ok,
            }
        )
    return rows
