"""The retrieval evaluation as a run: libraries, query sets, methods, report.json + report.html.

`evaluate_retrieval` is what `story eval retrieval` calls. The model id it reports (and seals
the test split on) hashes everything that decides a ranking: the video-text checkpoint, the
motion classifier, the caption encoder and the ranking weights.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from story.tasks.evaluation.report import Grid, Table, write_report
from story.tasks.evaluation.retrieval_eval import METHODS, evaluate, example_story
from story.tasks.evaluation.retrieval_library import (
    CAPTIONED,
    UNCAPTIONED,
    build_library,
    ingest_models,
    world_truth,
)
from story.tasks.evaluation.retrieval_queries import query_sets
from story.tasks.hashing import sha256_json
from story.tasks.library.rerank import DEFAULT_WEIGHTS
from story.tasks.library.searcher import LibrarySearcher
from story.tasks.settings import REPO_ROOT, Settings

EXAMPLE_STORY = REPO_ROOT / "datasets" / "stories" / "lighthouse.yaml"
SAMPLE_LIBRARY = REPO_ROOT / "datasets" / "sample_library"
METRICS = ("p@1", "R@5", "ground@1", "shape@1", "motion@1", "camera@1")


@dataclass
class RetrievalEvalConfig:
    """One `story eval retrieval` run."""

    split: str = "validation"
    clips: int = 1000
    queries: int = 500
    example_story: bool = True


def ranking_model_id(settings: Settings) -> str:
    """A short id of everything that decides a ranking (the sealed test split is keyed by it)."""
    parts = {"weights": DEFAULT_WEIGHTS.to_dict(), "models": ingest_models(settings)}
    return f"retrieval@{sha256_json(parts)[:12]}"


def _searchers(library: Any, settings: Settings) -> dict[str, LibrarySearcher]:
    from story.tasks.library.searcher import _numpy_encoders

    encoders = _numpy_encoders(settings)
    # resident: the product's search path (`story search`, the service, renders).
    return {
        t: LibrarySearcher(library.index(t), encoders, resident=True)
        for t in (CAPTIONED, UNCAPTIONED)
    }


def _sample_truth(uri: str) -> dict[str, str]:
    from story.tasks.world import miniworld

    sidecar = Path(uri).with_suffix(".json")
    if "/real/" in uri or not sidecar.is_file():
        return {"real": Path(uri).name}
    spec = miniworld.SceneSpec.from_dict(json.loads(sidecar.read_text())["spec"])
    return world_truth(spec)


def sample_library_searcher(root: Path, settings: Settings) -> LibrarySearcher:
    """The sample library (the product's own), ingested once under root with these models."""
    from story.tasks.library.index import ClipIndex
    from story.tasks.library.ingest import ClipIngestor, make_shards
    from story.tasks.library.manifest import read_manifest
    from story.tasks.library.searcher import _numpy_encoders

    folder = root / f"sample-{sha256_json(ingest_models(settings))[:10]}"
    index = ClipIndex(str(folder / "lancedb"))
    if not index.exists:
        worker = ClipIngestor(settings.resolved())
        visual = worker.visual_encoder.dim if worker.visual_encoder else None
        index = ClipIndex(str(folder / "lancedb"), visual_dim=visual)
        for job in make_shards(read_manifest(str(SAMPLE_LIBRARY / "manifest.jsonl")), 64):
            index.add(worker.process(job).rows)
        index.ensure_indices(settings.ivf_pq_min_rows)
    return LibrarySearcher(index, _numpy_encoders(settings), resident=True)


def _tables(results: dict[str, Any]) -> list[Table]:
    tables = []
    for key, block in results.items():
        summary = block["summary"]
        rows = {
            method: {m: summary[method].get(m) for m in METRICS}
            | {"p50 ms": summary[method].get("p50_ms")}
            for method in METHODS
            if method in summary
        }
        for name, cell in summary.items():
            if name.startswith("product -"):
                rows[name] = {name.split("(")[1].rstrip(")"): cell}
        tables.append(
            Table(
                title=f"{key}: {block['queries']} queries ({block['answerable']} answerable)",
                columns=[*METRICS, "p50 ms"],
                rows=rows,
                note="relevant = shape + motion + camera; ground@1 over queries naming one",
            )
        )
    return tables


def _strip_grid(results: dict[str, Any], sets: dict[str, list]) -> list[Grid]:
    """First frames of the product's top hit for the first paraphrase queries."""
    from story.tasks.library.media import read_frames

    block = results.get(f"{CAPTIONED}/paraphrase")
    if not block:
        return []
    rows = []
    tops = block["per_query"]["product"]["top"]
    for case, uri in list(zip(sets["paraphrase"], tops, strict=True))[:8]:
        if uri:
            rows.append((case.query[:60], [read_frames(uri, list(range(0, 16, 2)))]))
    return [Grid(title="Paraphrase queries: the product's top clip", rows=rows, frames=4)]


def evaluate_retrieval(
    config: RetrievalEvalConfig,
    folder: Path,
    settings: Settings,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the evaluation and write its report into `folder`."""
    t0 = time.perf_counter()
    root = Path(settings.workspace) / "eval" / "retrieval-libraries"
    log(f"building / reusing the {config.split} library ({config.clips} clips)")
    library = build_library(root, config.split, config.clips, settings)
    sets = query_sets(config.split, config.queries)
    log(f"querying: {', '.join(f'{k} {len(v)}' for k, v in sets.items())}")
    partial = Path(folder) / "partial.json"
    Path(folder).mkdir(parents=True, exist_ok=True)

    def progress(key: str, block: dict[str, Any]) -> None:
        done = json.loads(partial.read_text()) if partial.is_file() else {}
        done[key] = {"queries": block["queries"], "summary": block["summary"]}
        partial.write_text(json.dumps(done, indent=1, default=str) + "\n")
        log(f"{key}: done")

    results = evaluate(library, sets, _searchers(library, settings), on_block=progress)
    story_rows = []
    if config.example_story:
        log("the example story on the sample library")
        searcher = sample_library_searcher(root, settings)
        story_rows = example_story(EXAMPLE_STORY, searcher, _sample_truth)
    summary = {
        "split": config.split,
        "model_id": ranking_model_id(settings),
        "library_clips": config.clips,
        "library_build_seconds": library.build_seconds,
        "query_sets": {k: len(v) for k, v in sets.items()},
        "weights": DEFAULT_WEIGHTS.to_dict(),
        "example_story": story_rows,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    for key, block in results.items():
        summary[key] = {m: block["summary"].get(m) for m in METHODS if m in block["summary"]}
    paths = write_report(
        folder,
        f"Retrieval ({config.split})",
        summary,
        _tables(results),
        _strip_grid(results, sets),
    )
    (Path(folder) / "per_query.json").write_text(
        json.dumps({k: v["per_query"] for k, v in results.items()}, default=str) + "\n"
    )
    return {**paths, "summary": summary}
