"""Choose the ranking weights on the validation split, and show what each piece of evidence buys.

    python -m bench.bench_retrieval [--clips 1000 --queries 500]

Builds (or reuses) the validation evaluation library, gathers every query's candidates once with
unit weights (each candidate's evidence: caption cosine, video-text cosine, full-text rank,
log-probability of the asked motion and camera, caption slot agreement, ground), then searches
the weights by coordinate ascent for the best mean p@1 over the grammar and paraphrase sets of
the captioned and captionless tables (R@5 breaks ties). Also reports the chosen weights'
scores and the ablations (each piece of evidence off). Validation only: the test split is scored by
`story eval retrieval --split test`, once. Results: bench/results/retrieval.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from dataclasses import asdict, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from story.tasks.evaluation.intervals import mean_interval
from story.tasks.evaluation.retrieval_library import CAPTIONED, UNCAPTIONED, build_library
from story.tasks.evaluation.retrieval_queries import query_sets
from story.tasks.library.rerank import UNIT_WEIGHTS, RankWeights
from story.tasks.library.search import search_rows
from story.tasks.library.searcher import LibrarySearcher, _numpy_encoders
from story.tasks.settings import Settings

RESULTS = Path(__file__).resolve().parent / "results" / "retrieval.json"
UNIT = UNIT_WEIGHTS
NAMES = [f.name for f in fields(RankWeights)]
GRID = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
POOL = 100


def gather(searcher: LibrarySearcher, cases: list, truth_of) -> list[dict[str, Any]]:
    """Per query: candidate evidence matrix (candidates x evidence), relevance, ground match."""
    out = []
    vectors = searcher.embed([c.query for c in cases])
    for case, vector in zip(cases, vectors, strict=True):
        rows = search_rows(
            searcher.index,
            searcher.encoders.text,
            case.query,
            k=5,
            visual_encoder=searcher.encoders.visual,
            weights=UNIT,
            vectors=vector,
            pool=POOL,
        )
        evidence = np.array([[r["_evidence"].get(n, 0.0) for n in NAMES] for r in rows])
        truths = [truth_of(r["uri"]) for r in rows]
        out.append(
            {
                "evidence": evidence.reshape(len(rows), len(NAMES)),
                "relevant": np.array([case.relevant(t) for t in truths], bool),
            }
        )
    return out


def scores(gathered: list[dict[str, Any]], weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per query p@1 and R@5 under `weights` (ties broken by candidate order)."""
    p1, r5 = [], []
    for q in gathered:
        if len(q["relevant"]) == 0:
            p1.append(0.0)
            r5.append(0.0)
            continue
        order = np.argsort(-(q["evidence"] @ weights), kind="stable")
        p1.append(float(q["relevant"][order[0]]))
        r5.append(float(q["relevant"][order[:5]].any()))
    return np.array(p1), np.array(r5)


def objective(sets: dict[str, list], weights: np.ndarray) -> tuple[float, float]:
    """Mean p@1 (then R@5) over the grammar and paraphrase sets of both tables; the four real-clip
    queries are reported, not tuned on."""
    tuned = [g for key, g in sets.items() if not key.endswith("/real")]
    p1s, r5s = zip(*(scores(g, weights) for g in tuned), strict=True)
    return float(np.mean([p.mean() for p in p1s])), float(np.mean([r.mean() for r in r5s]))


def coordinate_ascent(sets: dict[str, list], start: RankWeights, rounds: int = 3) -> np.ndarray:
    """Best weights found by trying every grid value for one weight at a time."""
    best = np.array([getattr(start, n) for n in NAMES], float)
    best_score = objective(sets, best)
    for _ in range(rounds):
        improved = False
        for i, value in itertools.product(range(len(NAMES)), GRID):
            trial = best.copy()
            trial[i] = value
            score = objective(sets, trial)
            if score > best_score:
                best, best_score, improved = trial, score, True
        if not improved:
            break
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--workspace", type=Path, default=Path("workspace"))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    t0 = time.perf_counter()
    settings = Settings(workspace=args.workspace, device="cpu")
    root = args.workspace / "eval" / "retrieval-libraries"
    library = build_library(root, "validation", args.clips, settings)
    encoders = _numpy_encoders(settings)
    searchers = {
        t: LibrarySearcher(library.index(t), encoders, resident=True)
        for t in (CAPTIONED, UNCAPTIONED)
    }
    queries = query_sets("validation", args.queries)
    gathered = {
        f"{table}/{name}": gather(searcher, cases, library.truth_of)
        for table, searcher in searchers.items()
        for name, cases in queries.items()
        if cases and not (name == "real" and table == UNCAPTIONED)
    }
    print(f"gathered in {time.perf_counter() - t0:.0f} s", flush=True)
    default = np.array([getattr(RankWeights(), n) for n in NAMES], float)
    chosen = coordinate_ascent(gathered, RankWeights())
    report: dict[str, Any] = {
        "benchmark": "retrieval ranking weights (validation split)",
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "library_clips": args.clips,
        "query_sets": {k: len(v) for k, v in gathered.items()},
        "pool": POOL,
        "grid": list(GRID),
        "default_weights": asdict(RankWeights()),
        "chosen_weights": dict(zip(NAMES, chosen.tolist(), strict=True)),
        "by_set": {},
        "ablations": {},
    }
    for label, weights in (("default", default), ("chosen", chosen)):
        for key, g in gathered.items():
            p1, r5 = scores(g, weights)
            report["by_set"].setdefault(key, {})[label] = {
                "p@1": mean_interval(p1),
                "R@5": mean_interval(r5),
            }
    for i, name in enumerate(NAMES):
        off = chosen.copy()
        off[i] = 0.0
        report["ablations"][f"without {name}"] = {
            key: mean_interval(scores(g, off)[0]) for key, g in gathered.items()
        }
    report["seconds"] = round(time.perf_counter() - t0, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("chosen_weights", "by_set")}, indent=1))


if __name__ == "__main__":
    main()
