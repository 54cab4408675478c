"""Retrieval quality on the miniature world, where the truth is known.

Queries are written the way a story plot's query is derived (`derive_query_prompt` on a caption
of a held-out scene: shape, motion and place, appearance words dropped). A hit is relevant when
its clip's main object has the query's shape and motion on the same background. Reports
precision@1 and @5 for vector, full-text and hybrid search at several full-text weights, so the
default fusion is chosen by measurement. `python -m bench.bench_retrieval [--lancedb URI]`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import story.tasks.library.search as search_module
from story.models.text_encoder import load_text_encoder
from story.tasks.library.index import ClipIndex
from story.tasks.library.ingest import ClipIngestor, make_shards
from story.tasks.library.manifest import read_manifest
from story.tasks.script.parse import derive_query_prompt
from story.tasks.settings import Settings
from story.tasks.world.miniworld import attributes_from_caption, make_caption, sample_scene

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "retrieval.json"
SAMPLE_MANIFEST = REPO / "datasets" / "sample_library" / "manifest.jsonl"
KEYS = ("shape", "motion", "background")
HELD_OUT = 20_000_000


def build(manifest: Path, workdir: Path) -> ClipIndex:
    settings = Settings(workspace=workdir)
    worker = ClipIngestor(settings.resolved())
    index = ClipIndex(settings.lancedb)
    for job in make_shards(read_manifest(manifest), 64):
        index.add(worker.process(job).rows)
    index.ensure_indices(settings.ivf_pq_min_rows)
    return index


def queries(index: ClipIndex, count: int) -> list[tuple[str, dict[str, str]]]:
    """Held-out queries for attribute triples the library holds."""
    present = {
        tuple(attrs.get(k) for k in KEYS)
        for attrs in (attributes_from_caption(c) for c in index.rows()["caption"])
        if all(k in attrs for k in KEYS)
    }
    triples = sorted(present)
    out = []
    for n in range(count):
        shape, motion, background = triples[n % len(triples)]
        spec = sample_scene(
            HELD_OUT + n, n_objects=1, shape=shape, motion=motion, background=background
        )
        query, _ = derive_query_prompt(make_caption(spec, variant=n % 8), {})
        out.append((query, dict(zip(KEYS, (shape, motion, background), strict=True))))
    return out


def precision(index, encoder, items, mode: str, weight: float) -> dict[str, float]:
    search_module.FTS_WEIGHT = weight
    p1 = p5 = 0.0
    latencies = []
    for query, truth in items:
        t0 = time.perf_counter()
        hits = search_module.search(index, encoder, query, k=5, mode=mode)
        latencies.append(time.perf_counter() - t0)
        relevant = [
            all(attributes_from_caption(h.caption).get(k) == v for k, v in truth.items())
            for h in hits
        ]
        p1 += float(relevant[0]) if relevant else 0.0
        p5 += sum(relevant) / 5
    n = len(items)
    latencies.sort()
    return {"p@1": p1 / n, "p@5": p5 / n, "p50_ms": 1000 * latencies[n // 2]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--manifest", type=Path, default=SAMPLE_MANIFEST)
    parser.add_argument("--queries", type=int, default=150)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-retrieval-"))
    try:
        index = build(args.manifest, workdir)
        encoder = load_text_encoder("minilm", device="cpu")
        items = queries(index, args.queries)
        rows = index.count()
        default_weight = search_module.FTS_WEIGHT
        runs: dict[str, Any] = {
            "vector": precision(index, encoder, items, "vector", default_weight),
            "fts": precision(index, encoder, items, "fts", default_weight),
        }
        for weight in (0.5, 1.0, 2.0):
            runs[f"hybrid_fts_weight_{weight}"] = precision(index, encoder, items, "hybrid", weight)
        search_module.FTS_WEIGHT = default_weight
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report = {
        "benchmark": "retrieval",
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "library_rows": rows,
        "queries": len(items),
        "examples": [q for q, _ in items[:5]],
        "relevant_if_same": list(KEYS),
        "default_fts_weight": default_weight,
        "runs": runs,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
