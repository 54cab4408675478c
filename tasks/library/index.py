"""The clip library table (LanceDB `clips`): idempotent inserts, versions, and its indices.

Rows are keyed by `clip_id` (a content hash), so writing the same clip twice stores it once.
Besides the media facts and the caption vector, a row holds what ranking reads without decoding:
the video-text vector (`visual_vector`, when a visual encoder is set) and the shape it reads
zero-shot (`shape_probs`), the clip's motion and camera probabilities measured at ingest
(`story.tasks.library.motion`), the slots its caption
states (`caption_shape` ... `caption_ground`, parsed once at ingest) and `source_shot`, the
source file and shot it was cut from (search returns one hit per source by default).
Indices: native full-text on `caption`, a BTREE on `clip_id`, BITMAPs on the motion / camera
labels and caption slots search filters on, and an IVF-PQ (cosine) index on each vector column
once the table holds `ivf_pq_min_rows` rows. `ensure_indices` after an append folds
the new rows into every index, so queries never scan a growing unindexed tail.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import lancedb
import pandas as pd
import pyarrow as pa
from lancedb.index import IvfPq

from story.tasks.errors import StoryError
from story.tasks.library.columns import (  # noqa: F401 (re-exported)
    CAPTION_SLOTS,
    RANKING_COLUMNS,
    TEXT_VECTOR,
    VISUAL_VECTOR,
    ivf_partitions,
)
from story.tasks.library.filters import sql_string
from story.tasks.library.media_paths import media_uri, stored_uri

SLOT_FILTER_COLUMNS = (
    "motion_label",
    "camera_label",
    "caption_shape",
    "caption_motion",
    "caption_camera",
)
IVF_SAMPLE_RATE = 64
IVF_ITERATIONS = 20


class ClipIndexError(StoryError):
    """The clip table cannot be opened or written as asked."""


def clip_schema(text_dim: int, visual_dim: int | None = None) -> pa.Schema:
    """Arrow schema of the `clips` table; `visual_vector` only when a visual encoder is set."""
    fields = [
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("uri", pa.string(), nullable=False),
        pa.field("source_hash", pa.string()),
        pa.field("start", pa.float64()),
        pa.field("end", pa.float64()),
        pa.field("duration", pa.float64()),
        pa.field("fps", pa.float64()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("aspect", pa.float64()),
        pa.field("frames", pa.int32()),
        pa.field("frame_indices", pa.list_(pa.int32())),
        pa.field("source", pa.string()),
        pa.field("license", pa.string()),
        pa.field("caption", pa.string()),
        pa.field(TEXT_VECTOR, pa.list_(pa.float32(), text_dim)),
    ]
    if visual_dim is not None:
        fields.append(pa.field(VISUAL_VECTOR, pa.list_(pa.float32(), visual_dim)))
    fields += [
        pa.field("source_shot", pa.string()),
        pa.field("motion_label", pa.string()),
        pa.field("camera_label", pa.string()),
        pa.field("motion_probs", pa.list_(pa.float32())),
        pa.field("camera_probs", pa.list_(pa.float32())),
        pa.field("shape_probs", pa.list_(pa.float32())),
        pa.field("motion_features", pa.list_(pa.float32())),
        *(pa.field(column, pa.string()) for column in CAPTION_SLOTS),
        pa.field("shard", pa.string()),
        pa.field("ingested_at", pa.timestamp("us", tz="UTC")),
    ]
    return pa.schema(fields)


CLIP_COLUMNS: tuple[str, ...] = tuple(clip_schema(1, 1).names)


def _vector_dim(schema: pa.Schema, column: str) -> int | None:
    if column not in schema.names:
        return None
    return schema.field(column).type.list_size


def _open_table(db: Any, name: str) -> Any:
    """The named table, or None when it does not exist yet."""
    try:
        return db.open_table(name)
    except ValueError as exc:
        if "not found" in str(exc):
            return None
        raise


class ClipIndex:
    """The `clips` table of a LanceDB database (local folder or object-store URI)."""

    def __init__(
        self,
        uri: str,
        table: str = "clips",
        text_dim: int = 384,
        visual_dim: int | None = None,
        storage_options: dict | None = None,
    ) -> None:
        self.uri = str(uri)
        self.table_name = table
        self.db = lancedb.connect(self.uri, storage_options=storage_options)
        self._table: Any = _open_table(self.db, table)
        if self._table is not None:
            self._check_dims(text_dim, visual_dim)
            schema = self._table.schema
            self.text_dim = _vector_dim(schema, TEXT_VECTOR) or text_dim
            self.visual_dim = _vector_dim(schema, VISUAL_VECTOR)
            # A table written before a column existed keeps its own schema; rows drop the rest.
            self.schema = schema
        else:
            self.text_dim = text_dim
            self.visual_dim = visual_dim
            self.schema = clip_schema(self.text_dim, self.visual_dim)

    @property
    def has_ranking_columns(self) -> bool:
        """Whether rows carry the motion and caption slots that motion-aware ranking reads."""
        return all(column in self.schema.names for column in RANKING_COLUMNS)

    def _check_dims(self, text_dim: int, visual_dim: int | None) -> None:
        schema = self._table.schema
        where = f"{self.uri}/{self.table_name}"
        have_text = _vector_dim(schema, TEXT_VECTOR)
        if have_text != text_dim:
            raise ClipIndexError(
                f"{where}: text_vector has {have_text} dims but the text encoder gives {text_dim}; "
                "re-index into a new table"
            )
        have_visual = _vector_dim(schema, VISUAL_VECTOR)
        if visual_dim is not None and have_visual != visual_dim:
            raise ClipIndexError(
                f"{where}: the visual encoder gives {visual_dim} dims but the table's "
                f"visual_vector has {have_visual or 'no column'}; re-index into a new table"
            )

    @property
    def table(self) -> Any:
        """The LanceDB table; raises if nothing was written yet."""
        if self._table is None:
            raise ClipIndexError(f"{self.uri}: table {self.table_name!r} does not exist yet")
        return self._table

    @property
    def exists(self) -> bool:
        return self._table is not None

    def _to_arrow(self, rows: Sequence[dict]) -> pa.Table:
        for i, row in enumerate(rows):
            missing = [c for c in ("clip_id", "uri", TEXT_VECTOR) if row.get(c) is None]
            if missing:
                raise ClipIndexError(f"row {i} ({row.get('clip_id')!r}): missing {missing}")
            if len(row[TEXT_VECTOR]) != self.text_dim:
                raise ClipIndexError(
                    f"row {i} ({row['clip_id']}): text_vector has {len(row[TEXT_VECTOR])} dims, "
                    f"the table has {self.text_dim}"
                )
            if row.get(VISUAL_VECTOR) is not None and self.visual_dim is None:
                raise ClipIndexError(
                    f"row {i} ({row['clip_id']}): has a visual_vector but table "
                    f"{self.table_name!r} has no visual_vector column"
                )
        columns = self.schema.names
        try:
            return pa.Table.from_pylist(
                [
                    {c: self.stored_uri(row[c]) if c == "uri" else row.get(c) for c in columns}
                    for row in rows
                ],
                schema=self.schema,
            )
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise ClipIndexError(
                f"{self.table_name}: rows do not fit the clip schema: {exc}"
            ) from exc

    def add(self, rows: Sequence[dict]) -> int:
        """Insert rows whose clip_id is new (within the batch and the table); returns rows added."""
        unique: dict[str, dict] = {}
        for row in rows:
            unique.setdefault(str(row.get("clip_id")), row)
        stored = self.existing_ids(unique)
        fresh = [row for cid, row in unique.items() if cid not in stored]
        if not fresh:
            return 0
        data = self._to_arrow(fresh)
        if self._table is None:
            self._table = self.db.create_table(self.table_name, data=data, schema=self.schema)
            return data.num_rows
        # merge_insert keeps this idempotent even if another writer added some ids meanwhile.
        result = self._table.merge_insert("clip_id").when_not_matched_insert_all().execute(data)
        return int(result.num_inserted_rows)

    def stored_uri(self, uri: str) -> str:
        """A media uri as this table stores it (relative when the file lives beside it)."""
        return stored_uri(self.uri, uri)

    def media_uri(self, stored: str) -> str:
        """A stored media uri as a path or URI to open on this machine."""
        return media_uri(self.uri, stored)

    def count(self) -> int:
        return 0 if self._table is None else int(self._table.count_rows())

    def version(self) -> int:
        """The table's version number (0 before the first write)."""
        return 0 if self._table is None else int(self._table.version)

    def existing_ids(self, clip_ids: Iterable[str]) -> set[str]:
        """Which of these clip ids are already stored."""
        ids = [str(c) for c in clip_ids]
        if self._table is None or not ids:
            return set()
        found: set[str] = set()
        for start in range(0, len(ids), 500):
            chunk = ", ".join(sql_string(c) for c in ids[start : start + 500])
            table = (
                self._table.search()
                .where(f"clip_id IN ({chunk})")
                .select(["clip_id"])
                .limit(None)
                .to_arrow()
            )
            found.update(table.column("clip_id").to_pylist())
        return found

    def get(self, clip_id: str) -> dict | None:
        """One row by clip_id, or None."""
        if self._table is None:
            return None
        hits = self._table.search().where(f"clip_id = {sql_string(clip_id)}").limit(1).to_list()
        return {**hits[0], "uri": self.media_uri(hits[0]["uri"])} if hits else None

    def rows(self) -> pd.DataFrame:
        """The whole table as a DataFrame (for small tables and tests)."""
        if self._table is None:
            return pd.DataFrame(columns=list(self.schema.names))
        frame = self._table.to_pandas()
        frame["uri"] = [self.media_uri(u) for u in frame["uri"]]
        return frame

    def _indices(self) -> dict[str, Any]:
        return {ix.columns[0]: ix for ix in self.table.list_indices()}

    def ensure_indices(self, ivf_pq_min_rows: int) -> dict:
        """Create missing indices, fold appended rows in; report what was done and how long.

        Appended rows go into the full-text and BTREE indices through `optimize()`. That also
        compacts data files, and a vector index remapped by compaction lost recall in our tests
        (lance 0.40: a row's own vector no longer came back first), so after an optimize the
        IVF-PQ index is rebuilt rather than remapped. Returns {column: action, ...,
        "seconds": {step: duration}}; an empty dict when the table does not exist yet.
        """
        if self._table is None:
            return {}
        done: dict[str, Any] = {}
        seconds: dict[str, float] = {}

        def timed(step: str, action: Any) -> None:
            t0 = time.perf_counter()
            action()
            seconds[step] = round(time.perf_counter() - t0, 3)

        stale = sorted(ix.name for ix in self._indices().values() if ix.num_unindexed_rows > 0)
        if stale:
            timed("optimize", self.table.optimize)
            done["optimized"] = ", ".join(stale)
        have = self._indices()
        if "caption" not in have:
            timed(
                "caption",
                lambda: self.table.create_fts_index("caption", use_tantivy=False, replace=True),
            )
            done["caption"] = "fts created"
        if "clip_id" not in have:
            timed("clip_id", lambda: self.table.create_scalar_index("clip_id", replace=True))
            done["clip_id"] = "btree created"
        for column in SLOT_FILTER_COLUMNS:
            if column in self.schema.names and column not in have:
                timed(
                    column,
                    lambda c=column: self.table.create_scalar_index(
                        c, index_type="BITMAP", replace=True
                    ),
                )
                done[column] = "bitmap created"
        rows = self.count()
        for column, dim in ((TEXT_VECTOR, self.text_dim), (VISUAL_VECTOR, self.visual_dim)):
            if dim is None:
                continue
            index = have.get(column)
            if rows < ivf_pq_min_rows:
                done[column] = f"flat ({rows} rows < ivf_pq_min_rows {ivf_pq_min_rows})"
                continue
            if index is not None and not stale:
                done[column] = "ivf_pq up to date"
                continue
            config = ivf_pq_config(rows, dim)
            timed(
                column,
                lambda c=column, cfg=config: self.table.create_index(c, config=cfg, replace=True),
            )
            done[column] = (
                f"ivf_pq {'rebuilt' if index is not None else 'created'} "
                f"(partitions={config.num_partitions}, sub_vectors={config.num_sub_vectors})"
            )
        done["seconds"] = seconds
        return done


def ivf_pq_config(rows: int, dim: int) -> IvfPq:
    """Cosine IVF-PQ: sqrt(rows)/4 partitions, PQ sub-vectors of ~8 dims (a divisor of dim).

    Training cost grows with partitions squared, so partitions stay at ~4k rows each at 1M rows
    (~250), and k-means trains on IVF_SAMPLE_RATE vectors per partition for IVF_ITERATIONS rounds
    instead of lance's 256 x 50, which took several times longer on a 2-core box.
    bench/bench_search.py measures build time, latency and recall with these settings.
    """
    partitions = ivf_partitions(rows)
    width = next((w for w in (8, 4, 16, 2) if dim % w == 0), 1)
    return IvfPq(
        distance_type="cosine",
        num_partitions=partitions,
        num_sub_vectors=dim // width,
        sample_rate=IVF_SAMPLE_RATE,
        max_iterations=IVF_ITERATIONS,
    )
