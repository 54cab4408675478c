"""Completion markers for ingest shards, kept in the same LanceDB database as the clips.

A shard is recorded only after its rows are in the clip table, so a killed build re-runs at
most the shards in flight, and the table's clip_id de-duplication makes that re-run add nothing
twice. Keeping the ledger beside the table means it travels with it (local dir or object store).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import lancedb
import pyarrow as pa

LEDGER_SCHEMA = pa.schema(
    [
        pa.field("shard_id", pa.string()),
        pa.field("manifest", pa.string()),
        pa.field("rows_added", pa.int64()),
        pa.field("quarantined", pa.string()),
        pa.field("read_s", pa.float64()),
        pa.field("embed_s", pa.float64()),
        pa.field("write_s", pa.float64()),
        pa.field("completed_at", pa.timestamp("us", tz="UTC")),
    ]
)


class ShardLedger:
    """Which shards are finished, and what each one quarantined."""

    def __init__(self, uri: str, table: str = "ingest_shards", storage_options=None) -> None:
        self.db = lancedb.connect(uri, storage_options=storage_options)
        self.table = self.db.create_table(table, schema=LEDGER_SCHEMA, exist_ok=True)

    def finished(self, shard_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Records of the given shards that already completed."""
        if not shard_ids or self.table.count_rows() == 0:
            return {}
        wanted = set(shard_ids)
        records = self.table.to_arrow().to_pylist()
        return {r["shard_id"]: r for r in records if r["shard_id"] in wanted}

    def record(
        self,
        shard_id: str,
        manifest: str,
        rows_added: int,
        quarantined: list[dict[str, Any]],
        read_s: float,
        embed_s: float,
        write_s: float,
    ) -> None:
        self.table.add(
            [
                {
                    "shard_id": shard_id,
                    "manifest": manifest,
                    "rows_added": rows_added,
                    "quarantined": json.dumps(quarantined),
                    "read_s": read_s,
                    "embed_s": embed_s,
                    "write_s": write_s,
                    "completed_at": datetime.now(UTC),
                }
            ]
        )
