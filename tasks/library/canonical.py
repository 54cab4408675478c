"""The clip table as one canonical parquet file: what DVC versions instead of the LanceDB folder.

A LanceDB folder does not rebuild to the same bytes: Lance names its data, index and transaction
files with random UUIDs and writes timestamps into its manifests, so two machines that index the
same manifest lock different hashes. The export holds the same rows in a form that does: sorted
by `clip_id`, one parquet file with fixed writer settings and no timestamps of its own, media
paths relative to the export's folder (absolute when the file lies outside the project).
`ingested_at` is part of each row; a build that must reproduce sets `SOURCE_DATE_EPOCH`
(`story.tasks.reproducible`), as the DVC `index` stage does.

A library given as an export (`--lancedb datasets/clips.parquet`) is read-only: `materialize`
restores it once into a LanceDB folder under `<workspace>/cache/library/<export digest>` (rows,
full-text and scalar indices; the vector index only above `ivf_pq_min_rows`) and every reader
opens that. The folder is a derived cache: keyed by the export's content, rebuilt if missing, and
published whole by a rename, so concurrent workers never see half of it.
"""

from __future__ import annotations

import os
import shutil
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from story.tasks.errors import StoryError
from story.tasks.library.media_paths import media_uri, stored_uri
from story.tasks.object_store import is_remote

if TYPE_CHECKING:
    import pyarrow as pa

EXPORT_SUFFIX = ".parquet"
EXPORT_FORMAT = "story-clips/1"
ROW_GROUP = 4096
READY_FILE = "export.sha256"


class LibraryExportError(StoryError):
    """A canonical export cannot be written, read or restored."""


def is_export(uri: str | os.PathLike[str] | None) -> bool:
    """Whether a library URI names a canonical export rather than a LanceDB folder."""
    return uri is not None and not is_remote(str(uri)) and str(uri).endswith(EXPORT_SUFFIX)


def reject_export(uri: str | None, action: str) -> None:
    """Writers call this: an export is read-only and would silently diverge from its cache."""
    if is_export(uri):
        raise LibraryExportError(
            f"{uri}: is a canonical export (read-only); {action} into a LanceDB folder, then "
            f"`story library-export` it"
        )


def _export_folder(path: Path) -> str:
    # media_paths stores paths relative to a library folder; an export's are relative to the
    # folder that holds the file.
    return str(path.parent)


def export_table(lancedb_uri: str, out: str | os.PathLike[str], table: str = "clips") -> dict:
    """Write the clip table of `lancedb_uri` to `out`; returns rows, bytes and the sha256."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from story.tasks import atomic
    from story.tasks.library.index import ClipIndex

    target = Path(out)
    if not is_export(target):
        raise LibraryExportError(f"{target}: an export is a {EXPORT_SUFFIX} file")
    index = ClipIndex(lancedb_uri, table)
    if not index.exists:
        raise LibraryExportError(f"{lancedb_uri}: table {table!r} does not exist")
    data = index.table.to_arrow().sort_by("clip_id")
    uris = [
        stored_uri(_export_folder(target), index.media_uri(u))
        for u in data.column("uri").to_pylist()
    ]
    data = data.set_column(data.schema.get_field_index("uri"), "uri", pa.array(uris, pa.string()))
    data = data.replace_schema_metadata({"story.format": EXPORT_FORMAT, "story.table": table})
    with atomic.atomic_path(target) as partial:
        pq.write_table(
            data,
            partial,
            row_group_size=ROW_GROUP,
            compression="zstd",
            compression_level=3,
            use_dictionary=True,
            write_statistics=True,
        )
    return {
        "export": str(target),
        "rows": data.num_rows,
        "bytes": target.stat().st_size,
        "sha256": export_digest(target),
        "table_version": index.version(),
    }


def read_export(path: str | os.PathLike[str]) -> pa.Table:
    """The rows of an export with media paths resolved for this machine."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = Path(path)
    if not source.is_file():
        raise LibraryExportError(f"{source}: library export not found")
    try:
        data = pq.read_table(source)
    except (OSError, pa.ArrowInvalid) as exc:
        raise LibraryExportError(f"{source}: not a readable parquet file: {exc}") from exc
    meta = data.schema.metadata or {}
    if meta.get(b"story.format") != EXPORT_FORMAT.encode():
        raise LibraryExportError(
            f"{source}: not a clip-library export (format {meta.get(b'story.format')!r}, "
            f"expected {EXPORT_FORMAT!r})"
        )
    for column in ("clip_id", "uri", "text_vector"):
        if column not in data.schema.names:
            raise LibraryExportError(f"{source}: missing column {column!r}")
    uris = [media_uri(_export_folder(source), u) for u in data.column("uri").to_pylist()]
    data = data.set_column(data.schema.get_field_index("uri"), "uri", pa.array(uris, pa.string()))
    return data.replace_schema_metadata(None)


def restore_table(
    export: str | os.PathLike[str],
    lancedb_uri: str,
    table: str = "clips",
    ivf_pq_min_rows: int = 100_000,
) -> dict:
    """Create `table` in `lancedb_uri` from an export (the table must not exist yet)."""
    import pyarrow as pa

    from story.tasks.library.index import ClipIndex, _vector_dim

    data = read_export(export)
    visual = _vector_dim(data.schema, "visual_vector")
    index = ClipIndex(
        lancedb_uri,
        table,
        text_dim=_vector_dim(data.schema, "text_vector") or 384,
        visual_dim=visual,
    )
    if index.exists:
        raise LibraryExportError(
            f"{lancedb_uri}: table {table!r} exists; restore into a new folder"
        )
    uris = [index.stored_uri(u) for u in data.column("uri").to_pylist()]
    data = data.set_column(data.schema.get_field_index("uri"), "uri", pa.array(uris, pa.string()))
    index._table = index.db.create_table(table, data=data, schema=data.schema)
    index.schema = data.schema
    indices = index.ensure_indices(ivf_pq_min_rows)
    return {"lancedb_uri": lancedb_uri, "rows": index.count(), "indices": indices}


@lru_cache(maxsize=32)
def _cached_sha(path: str, size: int, mtime_ns: int) -> str:
    from story.tasks.hashing import sha256_file  # numpy stays out of the settings import

    return sha256_file(path)


def export_digest(path: str | os.PathLike[str]) -> str:
    """The export's sha256, computed once per (path, size, mtime) in this process."""
    source = Path(path)
    try:
        stat = source.stat()
    except OSError as exc:
        raise LibraryExportError(f"{source}: library export not found") from exc
    return _cached_sha(os.path.abspath(source), stat.st_size, stat.st_mtime_ns)


def materialize(
    export: str | os.PathLike[str],
    cache_root: str | os.PathLike[str],
    table: str = "clips",
    ivf_pq_min_rows: int = 100_000,
) -> str:
    """The LanceDB folder restored from `export` (built on first use); returns its path."""
    digest = export_digest(export)
    folder = Path(cache_root) / digest[:16]
    if _ready(folder, digest):
        return str(folder)
    if folder.exists():  # a restore that did not finish, or another export's leftovers
        shutil.rmtree(folder, ignore_errors=True)
    partial = folder.with_name(f".{folder.name}.{os.getpid()}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        restore_table(export, str(partial), table, ivf_pq_min_rows)
        (partial / READY_FILE).write_text(digest + "\n")
        try:
            partial.rename(folder)
        except OSError:
            # Another process published the same folder first: theirs is as good; a reader
            # already using it is never disturbed.
            if not _ready(folder, digest):
                raise
    except OSError as exc:
        raise LibraryExportError(f"{folder}: cannot restore {export}: {exc}") from exc
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return str(folder)


def _ready(folder: Path, digest: str) -> bool:
    ready = folder / READY_FILE
    try:
        return ready.read_text().strip() == digest
    except OSError:
        return False
