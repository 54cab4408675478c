"""Flow `build_index`: manifest -> shards -> ingest workers -> LanceDB `clips` table.

Sharded, idempotent and resumable (`story.tasks.library.shard_ingest`): finished shards are
skipped by their ledger record and each shard's rows are written once as it completes.
"""

from __future__ import annotations

import os
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from story.flows.engine import flow
from story.flows.executors import executor_for
from story.flows.parameters import SettingsParam, as_settings
from story.flows.progress import Progress
from story.tasks.library.canonical import reject_export
from story.tasks.library.ingest import ShardJob, make_shards
from story.tasks.library.manifest import read_manifest
from story.tasks.library.shard_ingest import ingest_shards
from story.tasks.object_store import configure_fsspec, is_remote


@task(name="plan-shards")
def plan_shards(manifest: str, shard_size: int) -> list[ShardJob]:
    """Read the manifest and cut it into content-addressed shards (media named relative to the
    manifest's folder, so another checkout of the same manifest gets the same shards)."""
    base = None if is_remote(manifest) else os.path.dirname(os.path.abspath(manifest))
    return make_shards(read_manifest(manifest), shard_size, base)


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
    manifest: str, settings: SettingsParam = None, use_ray: bool = True
) -> dict[str, Any]:
    """Index a clip manifest into the clip library and report rows, additions and quarantine."""
    resolved = as_settings(settings)
    reject_export(resolved.lancedb_uri, "index")
    configure_fsspec(resolved.storage_options)
    jobs = plan_shards(manifest, resolved.shard_size)
    executor = executor_for(resolved, use_ray)
    with Progress(f"index {manifest}: shards", key="build-index-progress") as progress:
        summary = ingest_shards(resolved, manifest, jobs, executor, progress)
    summary["manifest"] = manifest
    publish_artifacts(summary)
    return summary
