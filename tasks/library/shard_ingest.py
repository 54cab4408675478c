"""Ingest shards into the clip table: skip finished ones, write each as soon as it completes.

Sharded, idempotent and resumable: a shard's ledger record marks it finished, each shard's rows
are written once when its worker returns, and clip ids de-duplicate anything re-run. The shards
run on whatever executor the caller chose (`story.tasks.workers`).
"""

from __future__ import annotations

import json
import logging
import time
from functools import lru_cache
from typing import Any

from story.tasks.library import snapshot
from story.tasks.library.index import ClipIndex
from story.tasks.library.ingest import INGEST_TEXT_ENCODER, ClipIngestor, ShardJob
from story.tasks.library.ingest_ledger import ShardLedger
from story.tasks.library.searcher import RESIDENT_COLUMNS
from story.tasks.progress import ProgressCallback, no_progress
from story.tasks.settings import Settings
from story.tasks.workers import Executor, WorkerSpec

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def text_dim() -> int:
    """Width of the clip table's text vectors: what the ingest text encoder gives."""
    from story.models.text_encoder import load_text_encoder

    return load_text_encoder(INGEST_TEXT_ENCODER, device="cpu").dim


def visual_dim(settings: Settings) -> int | None:
    """Width of the configured visual encoder's vectors (None: no visual encoder)."""
    from story.models.video_text_config import configured_dim

    dim = configured_dim(settings)
    if dim != -1:
        return dim
    from story.models.visual_encoder import load_visual_encoder

    encoder = load_visual_encoder(settings)
    return None if encoder is None else encoder.dim


def ingest_shards(
    settings: Settings,
    manifest: str,
    jobs: list[ShardJob],
    executor: Executor,
    progress: ProgressCallback = no_progress,
) -> dict[str, Any]:
    """Run the shards not yet finished (reporting shards done); rows, additions, quarantine
    and timings."""
    index = ClipIndex(
        settings.lancedb,
        settings.clips_table,
        text_dim(),
        visual_dim(settings),
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
    spec = WorkerSpec(ClipIngestor, {"settings": settings.resolved()})
    progress(len(finished), len(jobs))
    for done, (job, result, error) in enumerate(executor.map(spec, todo), len(finished) + 1):
        progress(done, len(jobs))
        if result is None:
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
            "shard %s: +%d rows, %d quarantined", job.shard_id, shard_added, len(result.quarantined)
        )
    t0 = time.perf_counter()
    indices = index.ensure_indices(settings.ivf_pq_min_rows)
    timings["index_s"] = time.perf_counter() - t0
    # The first `story search` from a new shell then answers without importing LanceDB.
    t0 = time.perf_counter()
    written = snapshot.refresh(settings.workspace, index, RESIDENT_COLUMNS)
    timings["snapshot_s"] = time.perf_counter() - t0
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
        "search_snapshot": None if written is None else str(written),
        "timings": {k: round(v, 4) for k, v in timings.items()},
    }
