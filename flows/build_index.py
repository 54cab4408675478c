"""Flow `build_index`: manifest -> shards -> ingest actors -> LanceDB `clips` table.

Sharded, idempotent and resumable: finished shards are skipped by their ledger record, each
shard's rows are written once as it completes, and clip ids de-duplicate anything re-run.
"""

from __future__ import annotations

import json
import time
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from story.flows.engine import flow
from story.flows.logs import run_logger
from story.flows.ray_pool import ensure_ray, run_local, run_on_actors
from story.tasks.library.index import ClipIndex
from story.tasks.library.ingest import ClipIngestor, ShardJob, make_shards
from story.tasks.library.ingest_ledger import ShardLedger
from story.tasks.library.manifest import read_manifest
from story.tasks.object_store import configure_fsspec
from story.tasks.settings import Settings

TEXT_DIM = 384


@task(name="plan-shards")
def plan_shards(manifest: str, shard_size: int) -> list[ShardJob]:
    """Read the manifest and cut it into content-addressed shards."""
    return make_shards(read_manifest(manifest), shard_size)


def _visual_dim(settings: Settings) -> int | None:
    from story.models.visual_encoder import load_visual_encoder

    encoder = load_visual_encoder(settings)
    return None if encoder is None else encoder.dim


def ingest_shards(
    settings: Settings, manifest: str, jobs: list[ShardJob], use_ray: bool
) -> dict[str, Any]:
    """Run the shards not yet finished and write each one as soon as it completes."""
    log = run_logger(__name__)
    index = ClipIndex(
        settings.lancedb,
        settings.clips_table,
        TEXT_DIM,
        _visual_dim(settings),
        storage_options=settings.storage_options or None,
    )
    ledger = ShardLedger(settings.lancedb, storage_options=settings.storage_options or None)
    finished = ledger.finished([j.shard_id for j in jobs])
    todo = [j for j in jobs if j.shard_id not in finished]
    log.info("%d shards, %d already finished, %d to run", len(jobs), len(finished), len(todo))

    quarantined: list[dict[str, Any]] = []
    for record in finished.values():
        quarantined.extend(json.loads(record["quarantined"]))
    failed_shards: list[dict[str, Any]] = []
    added = 0
    timings = {"read_s": 0.0, "embed_s": 0.0, "write_s": 0.0}
    if todo:
        init = {"settings": settings.resolved()}
        if use_ray:
            ensure_ray(settings)
            outcomes = run_on_actors(
                ClipIngestor, init, todo, "process", workers=settings.ray_workers
            )
        else:
            outcomes = run_local(ClipIngestor, init, todo, "process")
        for job, result, error in outcomes:
            if error is not None:
                log.error("shard %s failed: %s", job.shard_id, error)
                failed_shards.append({"shard_id": job.shard_id, "error": repr(error)})
                continue
            t0 = time.perf_counter()
            shard_added = index.add(result.rows)
            write_s = time.perf_counter() - t0
            ledger.record(
                job.shard_id,
                manifest,
                shard_added,
                result.quarantined,
                result.read_s,
                result.embed_s,
                write_s,
            )
            added += shard_added
            quarantined.extend(result.quarantined)
            timings["read_s"] += result.read_s
            timings["embed_s"] += result.embed_s
            timings["write_s"] += write_s
            log.info(
                "shard %s: +%d rows, %d quarantined",
                job.shard_id,
                shard_added,
                len(result.quarantined),
            )
    t0 = time.perf_counter()
    indices = index.ensure_indices(settings.ivf_pq_min_rows)
    timings["index_s"] = time.perf_counter() - t0
    return {
        "rows": index.count(),
        "added": added,
        "quarantined": quarantined,
        "failed_shards": failed_shards,
        "shards": {"total": len(jobs), "skipped": len(finished), "run": len(todo)},
        "table": settings.clips_table,
        "table_version": index.version(),
        "lancedb_uri": settings.lancedb,
        "indices": indices,
        "timings": {k: round(v, 4) for k, v in timings.items()},
    }


def publish_artifacts(summary: dict[str, Any]) -> None:
    """Counts, quarantined items and where the time went, as Prefect artifacts."""
    create_table_artifact(
        key="build-index-counts",
        table=[
            {"metric": "rows in table", "value": summary["rows"]},
            {"metric": "rows added", "value": summary["added"]},
            {"metric": "quarantined", "value": len(summary["quarantined"])},
            {"metric": "failed shards", "value": len(summary["failed_shards"])},
            {"metric": "table version", "value": summary["table_version"]},
        ],
        description="Clip library build: counts",
    )
    create_table_artifact(
        key="build-index-timings",
        table=[{"stage": k, "seconds": v} for k, v in summary["timings"].items()],
        description="Time spent reading, embedding, writing and indexing",
    )
    lines = ["| uri | reason | detail |", "|---|---|---|"]
    lines += [
        f"| {q['uri']} | {q['reason']} | {str(q.get('detail', '')).replace('|', '/')[:160]} |"
        for q in summary["quarantined"]
    ]
    create_markdown_artifact(
        key="build-index-quarantine",
        markdown="# Quarantined media\n\n"
        + ("\n".join(lines) if summary["quarantined"] else "None."),
        description="Items that could not be ingested, with the reason",
    )


@flow(name="build_index")
def build_index(
    manifest: str, settings: dict[str, Any] | None = None, use_ray: bool = True
) -> dict:
    """Index a clip manifest into the clip library and report rows, additions and quarantine."""
    resolved = Settings(**(settings or {}))
    configure_fsspec(resolved.storage_options)
    jobs = plan_shards(manifest, resolved.shard_size)
    summary = ingest_shards(resolved, manifest, jobs, use_ray)
    summary["manifest"] = manifest
    publish_artifacts(summary)
    return summary
