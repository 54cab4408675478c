"""Flow `ingest_new` / `story ingest-new`: add only what is new to the clip library, on a schedule.

Two sources, either or both: a drop folder (local or object store) whose video files are not yet
in the table, and a manifest that grows by appended rows. Only unseen items become a generated
manifest under `<workspace>/ingest/`, which then goes through `build_index`'s shard and ledger
logic, so nothing already in the table is decoded or embedded again and a killed run resumes.

An item is known when the table holds a row of its uri inside its time range (the whole file for
drop-folder files), or when a finished shard quarantined it. A drop-folder file's caption comes
from a sidecar of the same stem: `.txt` (the caption) or `.json` (`caption`, `source`, `license`,
`start`, `end`); without one, the file stem with `_`/`-` as spaces.
"""

from __future__ import annotations

import json
import posixpath
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from story.flows.engine import flow
from story.flows.executors import executor_for
from story.flows.logs import run_logger
from story.flows.parameters import SettingsParam, as_settings
from story.tasks.errors import ManifestError, StoryError
from story.tasks.hashing import sha256_json
from story.tasks.library.canonical import reject_export
from story.tasks.library.index import ClipIndex, sql_string
from story.tasks.library.ingest import make_shards
from story.tasks.library.ingest_ledger import ShardLedger
from story.tasks.library.manifest import ManifestRow, read_manifest
from story.tasks.library.shard_ingest import ingest_shards, text_dim
from story.tasks.object_store import (
    ObjectStoreError,
    configure_fsspec,
    exists,
    list_files,
    read_bytes,
)
from story.tasks.settings import Settings

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts")
RANGE_SLACK_S = 0.05  # shot bounds are frame-rounded; a stored row this far outside still counts
URI_CHUNK = 200


def _sidecar(video: str, siblings: set[str], storage_options: dict[str, str]) -> dict[str, Any]:
    """Caption and provenance for a drop-folder file from its `.json` / `.txt` sidecar."""
    stem = video.rsplit(".", 1)[0]
    if f"{stem}.json" in siblings:
        raw = read_bytes(f"{stem}.json", storage_options)
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ManifestError(f"{stem}.json", None, f"invalid JSON sidecar: {exc}") from exc
        if not isinstance(data, dict):
            raise ManifestError(f"{stem}.json", None, "sidecar must be a JSON object")
        return {k: data[k] for k in ("caption", "source", "license", "start", "end") if k in data}
    if f"{stem}.txt" in siblings:
        return {"caption": read_bytes(f"{stem}.txt", storage_options).decode("utf-8").strip()}
    name = posixpath.basename(stem)
    return {"caption": " ".join(name.replace("_", " ").replace("-", " ").split())}


def drop_folder_records(folder: str, storage_options: dict[str, str]) -> list[dict[str, Any]]:
    """One manifest record per video file under the folder (recursive), sidecars applied."""
    try:
        files = list_files(folder, storage_options=storage_options)
    except ObjectStoreError as exc:
        raise StoryError(f"drop folder {folder}: {exc}") from exc
    siblings = set(files)
    records = []
    for uri in files:
        if not uri.lower().endswith(VIDEO_SUFFIXES):
            continue
        record = {"uri": uri, "source": "drop", "license": ""}
        record.update(_sidecar(uri, siblings, storage_options))
        records.append(record)
    return records


def _as_records(rows: list[ManifestRow]) -> list[dict[str, Any]]:
    return [
        {
            "uri": r.uri,
            "caption": r.caption,
            "start": r.start,
            "end": r.end,
            "source": r.source,
            "license": r.license,
        }
        for r in rows
    ]


def _stored_ranges(index: ClipIndex, uris: list[str]) -> dict[str, list[tuple[float, float]]]:
    """(start, end) of every stored row of these uris."""
    ranges: dict[str, list[tuple[float, float]]] = {}
    if not index.exists or not uris:
        return ranges
    for offset in range(0, len(uris), URI_CHUNK):
        stored = [index.stored_uri(u) for u in uris[offset : offset + URI_CHUNK]]
        chunk = ", ".join(sql_string(u) for u in stored)
        table = (
            index.table.search()
            .where(f"uri IN ({chunk})")
            .select(["uri", "start", "end"])
            .limit(None)
            .to_arrow()
        )
        for uri, start, end in zip(
            table.column("uri").to_pylist(),
            table.column("start").to_pylist(),
            table.column("end").to_pylist(),
            strict=True,
        ):
            ranges.setdefault(index.media_uri(uri), []).append((float(start), float(end)))
    return ranges


def _quarantined_uris(ledger: ShardLedger) -> set[str]:
    if ledger.table.count_rows() == 0:
        return set()
    column = ledger.table.search().select(["quarantined"]).limit(None).to_arrow()
    return {q["uri"] for text in column.column("quarantined").to_pylist() for q in json.loads(text)}


def _is_known(
    record: dict[str, Any], ranges: dict[str, list[tuple[float, float]]], quarantined: set[str]
) -> bool:
    if record["uri"] in quarantined:
        return True
    stored = ranges.get(record["uri"])
    if not stored:
        return False
    low = float(record.get("start") or 0.0) - RANGE_SLACK_S
    high = record.get("end")
    high = float("inf") if high is None else float(high) + RANGE_SLACK_S
    return any(start >= low and end <= high for start, end in stored)


@task(name="find-new-items", cache_policy=NO_CACHE)
def find_new(
    settings: Settings, drop_folder: str | None, manifest: str | None
) -> tuple[list[dict[str, Any]], int]:
    """Records not yet in the library (first occurrence of each), and how many were seen."""
    records: list[dict[str, Any]] = []
    if manifest is not None:
        records += _as_records(read_manifest(manifest))
    if drop_folder is not None:
        records += drop_folder_records(drop_folder, settings.storage_options)
    unique = list({(r["uri"], r.get("start"), r.get("end")): r for r in records}.values())
    options = settings.storage_options or None
    index = ClipIndex(settings.lancedb, settings.clips_table, text_dim(), storage_options=options)
    ledger = ShardLedger(settings.lancedb, storage_options=options)
    ranges = _stored_ranges(index, sorted({r["uri"] for r in unique}))
    quarantined = _quarantined_uris(ledger)
    return [r for r in unique if not _is_known(r, ranges, quarantined)], len(unique)


def write_manifest(settings: Settings, records: list[dict[str, Any]]) -> Path:
    """A JSONL manifest of the new records, named by their content (same items, same file)."""
    folder = Path(settings.workspace) / "ingest"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"new-{sha256_json(records)[:16]}.jsonl"
    path.write_text("".join(json.dumps(r, default=str) + "\n" for r in records))
    return path


@flow(name="ingest_new")
def ingest_new(
    settings: SettingsParam = None,
    drop_folder: str | None = None,
    manifest: str | None = None,
    use_ray: bool = True,
) -> dict[str, Any]:
    """Index only the new clips of a drop folder and/or an appended manifest."""
    resolved = as_settings(settings)
    reject_export(resolved.lancedb_uri, "ingest new clips")
    if drop_folder is None and manifest is None:
        raise StoryError("ingest_new needs a drop folder or a manifest (or both)")
    configure_fsspec(resolved.storage_options)
    if drop_folder is not None and not exists(drop_folder, resolved.storage_options):
        raise StoryError(f"drop folder {drop_folder}: no such folder")
    log = run_logger(__name__)
    new, seen = find_new(resolved, drop_folder, manifest)
    log.info("%d items seen, %d new", seen, len(new))
    generated = str(write_manifest(resolved, new)) if new else None
    jobs = make_shards(read_manifest(generated), resolved.shard_size) if generated else []
    summary = ingest_shards(resolved, generated or "", jobs, executor_for(resolved, use_ray))
    summary.update(
        {
            "seen": seen,
            "new": len(new),
            "generated_manifest": generated,
            "drop_folder": drop_folder,
            "manifest": manifest,
        }
    )
    create_table_artifact(
        key="ingest-new-counts",
        table=[
            {"metric": "items seen", "value": seen},
            {"metric": "new items", "value": len(new)},
            {"metric": "rows added", "value": summary["added"]},
            {"metric": "quarantined", "value": len(summary["quarantined"])},
            {"metric": "rows in table", "value": summary["rows"]},
            {"metric": "table version", "value": summary["table_version"]},
        ],
        description="Incremental ingest: what was new and what was added",
    )
    return summary
