"""A searchable snapshot of a small clip table, so a cold `story search` need not import LanceDB.

Importing LanceDB costs a new process ~2 s of CPU (pyarrow.dataset and pandas, the namespace
client's models), more than the 2 s a TD should wait for a search from a fresh shell. A
`ResidentTable` (the search columns in memory: rows, vector matrices, the captions' tokens) is
everything an in-memory search reads, so once one exists it is written beside the library's
tables, `<LanceDB folder>/.story-search/<table>/v<table version>/` (plain JSON and .npy files),
where every workspace that searches the library finds it, and a later process answers from it:
numpy and LanceDB's native tokenizer, no lancedb package. A library folder this user cannot
write (a read-only studio share) gets the snapshot in the workspace instead,
`<workspace>/search_snapshots/<library key>/v<table version>/`; reading looks beside the library
first, then in the workspace.

The snapshot is used only while it is the table's current version, checked without LanceDB: the
newest manifest in the table's `_versions/` folder (Lance writes one per commit) must be the one
the snapshot was written at, with the same size and modification time. Any write to the table
makes a new manifest, so a stale snapshot is never read; the caller then searches through
LanceDB as before. Only local tables that the in-memory path answers in full are written: up
to `resident.MAX_ROWS` rows row by row (no vector index: approximate search it would not
reproduce, the full-text index held in memory), and larger ones (up to `partitioned.MAX_ROWS`)
as a `PartitionedTable`: its own inverted file over the exact vectors, posting lists and an
Arrow file of the rows, memory-mapped when read, so a cold process maps it instead of loading it
(it imports pyarrow for the rows, still not LanceDB). Writers: `story index` after it builds
the table, the search service when it loads a version, and a `story search` that found no
current snapshot (`search_service.run_search`). Writing goes to a temporary folder renamed into
place, so a reader sees a whole snapshot or none.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from story.tasks.library.bm25 import Bm25
from story.tasks.library.columns import RANKING_COLUMNS
from story.tasks.library.media_paths import media_uri
from story.tasks.library.partitioned import FORMAT as PARTITIONED_FORMAT
from story.tasks.library.partitioned import MAX_ROWS as PARTITIONED_MAX_ROWS
from story.tasks.library.partitioned import PartitionedTable
from story.tasks.library.resident import MAX_ROWS, ResidentTable

InMemory = ResidentTable | PartitionedTable

SNAPSHOTS = "search_snapshots"
FORMAT = 1
_MANIFEST = re.compile(r"^(\d+)\.manifest$")
_V2 = 1 << 63  # Lance's V2 manifest names count down from 2**64 - 1


def local_folder(uri: str) -> Path | None:
    """The folder of a local LanceDB URI (None for an object store)."""
    if uri.startswith("file://"):
        return Path(uri[len("file://") :])
    return None if "://" in uri else Path(uri)


def table_stamp(uri: str, table: str) -> dict[str, Any] | None:
    """The table's current version and its manifest file, read from the folder (no LanceDB);
    None for an object-store table or one not written yet."""
    folder = local_folder(uri)
    if folder is None:
        return None
    try:
        entries = list(os.scandir(folder / f"{table}.lance" / "_versions"))
    except OSError:
        return None
    versions = {}
    for entry in entries:
        match = _MANIFEST.match(entry.name)
        if match:
            number = int(match.group(1))
            versions[(1 << 64) - 1 - number if number >= _V2 else number] = entry
    if not versions:
        return None
    version = max(versions)
    stat = versions[version].stat()
    return {
        "version": version,
        "manifest": versions[version].name,
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
    }


SHARED = ".story-search"


def shared_folder(uri: str, table: str) -> Path | None:
    """Where this library's snapshots live beside its tables, found by every workspace (None
    for an object store)."""
    folder = local_folder(uri)
    return None if folder is None else folder.resolve() / SHARED / table


def homes(workspace: Path | str | None, uri: str, table: str) -> list[Path]:
    """Where this library's snapshot may be, in the order they are tried: beside the library,
    then in the workspace (if one is given)."""
    shared = shared_folder(uri, table)
    found = [shared] if shared is not None else []
    return found + ([library_folder(workspace, uri, table)] if workspace is not None else [])


def library_folder(workspace: Path | str, uri: str, table: str) -> Path:
    """Where this library's snapshots live in the workspace (when its own folder is not
    writable)."""
    folder = local_folder(uri)
    where = str(folder.resolve()) if folder is not None else uri
    key = hashlib.sha256(f"{where}\0{table}".encode()).hexdigest()[:16]
    return Path(workspace) / SNAPSHOTS / key


class SnapshotIndex:
    """What search reads of a `ClipIndex`, for a snapshot (it has no LanceDB table)."""

    def __init__(self, meta: dict[str, Any]) -> None:
        self.uri = meta["uri"]
        self.table_name = meta["table"]
        self.text_dim = meta["text_dim"]
        self.visual_dim = meta["visual_dim"]
        self.schema = _Names(meta["schema"])
        self.rows = meta["count"]
        self.table_version = meta["stamp"]["version"]
        self.exists = True

    @property
    def has_ranking_columns(self) -> bool:
        return all(column in self.schema.names for column in RANKING_COLUMNS)

    @property
    def table(self) -> Any:
        raise RuntimeError(f"{self.uri}: a snapshot answers in memory only; open the ClipIndex")

    def count(self) -> int:
        return int(self.rows)

    def version(self) -> int:
        return int(self.table_version)


class _Names:
    def __init__(self, names: list[str]) -> None:
        self.names = list(names)


def writable(resident: InMemory | None) -> bool:
    """Whether a snapshot of this table answers every search as the resident table does."""
    return (
        resident is not None
        and not resident.indexed
        and (resident.fts is not None or not resident.has_fts)
    )


def load(index: Any, columns: Sequence[str]) -> InMemory | None:
    """The table in memory at its current version: row by row up to `resident.MAX_ROWS`,
    partitioned above (up to `partitioned.MAX_ROWS`; building one reads the whole table and
    partitions its vectors, about a minute at 1M rows); None when it is missing or empty."""
    if not index.exists:
        return None
    rows = index.count()
    if rows == 0 or rows > PARTITIONED_MAX_ROWS:
        return None
    if rows <= MAX_ROWS:
        return ResidentTable.load(index, columns)
    # The vectors go through memory-mapped scratch files (10M rows hold 15 GB of them), which
    # the page cache keeps in memory as far as it can.
    return PartitionedTable.from_index(index, columns, scratch=Path(tempfile.gettempdir()))


def write(workspace: Path | str, index: Any, resident: InMemory) -> Path | None:
    """Write the snapshot of `resident` (read from `index`) when it is the table's current
    version; its folder, or None when there is nothing to write (see `writable`)."""
    stamp = table_stamp(index.uri, index.table_name)
    if not writable(resident) or stamp is None or stamp["version"] != resident.version:
        return None
    *first, last = homes(workspace, index.uri, index.table_name)
    for library in first:
        try:
            return _write_into(library, index, resident, stamp)
        except OSError:  # the library's folder is not ours to write: the workspace then
            continue
    return _write_into(last, index, resident, stamp)


def _write_into(library: Path, index: Any, resident: InMemory, stamp: dict[str, Any]) -> Path:
    final = library / f"v{resident.version}"
    written = _meta(final)
    if written is not None and written["stamp"] == stamp:
        return final
    library.mkdir(parents=True, exist_ok=True)
    scratch = library / f".v{resident.version}.{os.getpid()}.tmp"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    try:
        _fill(scratch, index, resident, stamp)
    except BaseException:  # a full disk half way: nothing half-written is left behind
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    if final.exists():
        shutil.rmtree(final, ignore_errors=True)
    try:
        scratch.rename(final)
    except OSError:  # another writer got there first
        shutil.rmtree(scratch, ignore_errors=True)
    for old in library.glob("v*"):
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def _fill(scratch: Path, index: Any, resident: InMemory, stamp: dict[str, Any]) -> None:
    """The snapshot's files: vector matrices, rows, full-text tokens, and meta.json last."""
    common = {
        "format": FORMAT,
        "uri": index.uri,
        "table": index.table_name,
        "stamp": stamp,
        "count": resident.count,
        "has_fts": resident.has_fts,
        "text_dim": index.text_dim,
        "visual_dim": index.visual_dim,
        "schema": list(index.schema.names),
    }
    if isinstance(resident, PartitionedTable):
        resident.write(scratch, common)
        return
    vectors = resident.vectors
    for name, (matrix, _, valid) in vectors.items():
        np.save(scratch / f"{name}.npy", matrix)
        np.save(scratch / f"{name}.valid.npy", valid)
    plain = [{k: v for k, v in row.items() if k not in vectors} for row in resident.rows]
    (scratch / "rows.json").write_text(json.dumps(plain))
    if resident.fts is not None:
        (scratch / "fts.json").write_text(json.dumps(resident.fts.tokenized))
    meta = {**common, "vectors": sorted(vectors)}
    (scratch / "meta.json").write_text(json.dumps(meta, indent=1))


def _meta(folder: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if meta.get("format") != FORMAT:
        return None
    if meta.get("kind") == "partitioned" and meta.get("partitioned_format") != PARTITIONED_FORMAT:
        return None  # an older layout of a large table: stale, so it is written again
    return meta


def read(
    workspace: Path | str | None, uri: str, table: str
) -> tuple[SnapshotIndex, InMemory] | None:
    """The table's current snapshot as an index and its resident table (None when there is
    none, or it is not the table's current version)."""
    stamp = table_stamp(uri, table)
    if stamp is None:
        return None
    for library in homes(workspace, uri, table):
        found = _read_from(library / f"v{stamp['version']}", uri, table, stamp)
        if found is not None:
            return found
    return None


def _read_from(
    folder: Path, uri: str, table: str, stamp: dict[str, Any]
) -> tuple[SnapshotIndex, InMemory] | None:
    meta = _meta(folder)
    # The folder is the library's (beside it, or keyed by its resolved path and table in the
    # workspace); the stamp is its version.
    if meta is None or meta["stamp"] != stamp or meta["table"] != table:
        return None
    if meta.get("kind") == "partitioned":
        try:
            table_ = PartitionedTable.read(folder, meta, lambda stored: media_uri(uri, stored))
        except (OSError, ValueError, KeyError):
            return None
        return SnapshotIndex({**meta, "uri": uri}), table_
    try:
        vectors = {}
        for name in meta["vectors"]:
            matrix = np.load(folder / f"{name}.npy")
            valid = np.load(folder / f"{name}.valid.npy")
            vectors[name] = (matrix, np.linalg.norm(matrix, axis=1), valid)
        rows = json.loads((folder / "rows.json").read_text())
        fts = None
        if meta["has_fts"]:
            fts = Bm25(json.loads((folder / "fts.json").read_text()))
    except (OSError, ValueError, KeyError):
        return None
    resident = ResidentTable(
        stamp["version"], rows, vectors, has_fts=meta["has_fts"], indexed=set(), fts=fts
    )
    return SnapshotIndex({**meta, "uri": uri}), resident


def refresh(workspace: Path | str, index: Any, columns: Sequence[str]) -> Path | None:
    """Load the table in memory and write its snapshot (`story index` after a build). A file
    system error (a full disk, a read-only workspace) does not fail the caller: that library is
    then searched through LanceDB."""
    with contextlib.suppress(OSError):
        resident = load(index, columns)
        if resident is not None:
            return write(workspace, index, resident)
    return None
