"""Read a clip manifest (JSONL, CSV or parquet) into validated rows with resolved media URIs.

Columns: `uri` (required; local path or object-store URI, relative paths are taken from the
manifest's folder), `caption`, `start`, `end` (seconds), `source`, `license`. Other columns
are ignored. A bad row raises `ManifestError` naming the manifest and the line (for parquet,
the 1-based row number).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlsplit

from story.tasks.errors import ManifestError
from story.tasks.object_store import is_remote

_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}


@dataclass(frozen=True)
class ManifestRow:
    """One manifest entry: a media file (or a time range of it) with its caption and provenance."""

    uri: str
    caption: str
    start: float | None
    end: float | None
    source: str
    license: str
    line: int


def resolve_uri(uri: str, base: str) -> str:
    """Make `uri` absolute: remote URIs stay as they are, relative ones are joined onto `base`."""
    if uri.lower().startswith("file://"):
        return os.path.normpath(unquote(urlsplit(uri).path))
    if is_remote(uri):
        return uri
    if is_remote(base):
        parts = urlsplit(base)
        joined = posixpath.normpath(posixpath.join(parts.path or "/", uri))
        return f"{parts.scheme}://{parts.netloc}{joined}"
    path = Path(uri).expanduser()
    if not path.is_absolute():
        path = Path(base) / path
    return os.path.normpath(path.absolute())


def read_manifest(path: str | Path) -> list[ManifestRow]:
    """Every row of the manifest, validated; an empty manifest gives an empty list."""
    return list(iter_manifest_rows(path))


def iter_manifest_rows(path: str | Path) -> Iterator[ManifestRow]:
    """Yield validated rows one by one (the format is chosen by the file extension)."""
    name = str(path)
    suffix = Path(urlsplit(name).path if is_remote(name) else name).suffix.lower()
    kind = _FORMATS.get(suffix)
    if kind is None:
        raise ManifestError(name, None, f"unsupported manifest format {suffix or '(none)'!r}")
    if is_remote(name):
        base = name.rsplit("/", 1)[0] + "/"
    else:
        name = os.path.abspath(Path(name).expanduser())
        base = os.path.dirname(name)
    with _open(name) as handle:
        if kind == "jsonl":
            records = _jsonl_records(name, handle)
        elif kind == "csv":
            records = _csv_records(name, handle)
        else:
            records = _parquet_records(name, handle)
        for line, record in records:
            yield _row(record, name, line, base)


def _open(name: str) -> IO[bytes]:
    try:
        if is_remote(name):
            import fsspec

            return fsspec.open(name, "rb").open()
        return open(name, "rb")  # noqa: SIM115 - closed by the caller's `with`
    except FileNotFoundError as exc:
        raise ManifestError(name, None, "manifest not found") from exc
    except IsADirectoryError as exc:
        raise ManifestError(name, None, "manifest is a directory") from exc


def _jsonl_records(name: str, handle: IO[bytes]) -> Iterator[tuple[int, dict[str, Any]]]:
    for line, raw in enumerate(handle, start=1):
        try:
            text = raw.decode("utf-8-sig" if line == 1 else "utf-8").strip()
        except UnicodeDecodeError as exc:
            raise ManifestError(name, line, "not UTF-8 text") from exc
        if not text:
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ManifestError(name, line, f"invalid JSON: {exc.msg}") from exc
        if not isinstance(record, dict):
            raise ManifestError(name, line, "expected a JSON object")
        yield line, record


def _csv_records(name: str, handle: IO[bytes]) -> Iterator[tuple[int, dict[str, Any]]]:
    data = handle.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ManifestError(name, data.count(b"\n", 0, exc.start) + 1, "not UTF-8 text") from exc
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if reader.fieldnames is None:
        return
    if "uri" not in reader.fieldnames:
        raise ManifestError(name, 1, "no 'uri' column in the header")
    try:
        for record in reader:
            yield reader.line_num, {k: v for k, v in record.items() if k is not None}
    except csv.Error as exc:
        raise ManifestError(name, reader.line_num, f"malformed CSV: {exc}") from exc


def _parquet_records(name: str, handle: IO[bytes]) -> Iterator[tuple[int, dict[str, Any]]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(handle)
    except (pa.ArrowException, OSError) as exc:
        raise ManifestError(name, None, f"cannot read parquet: {exc}") from exc
    if table.num_rows and "uri" not in table.column_names:
        raise ManifestError(name, None, "no 'uri' column")
    wanted = [
        c
        for c in ("uri", "caption", "start", "end", "source", "license")
        if c in table.column_names
    ]
    yield from enumerate(table.select(wanted).to_pylist(), start=1)


def _blank(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, float) and math.isnan(value))


def _seconds(name: str, line: int, field: str, value: Any) -> float | None:
    if _blank(value):
        return None
    if isinstance(value, bool):
        raise ManifestError(name, line, f"{field} is not a number: {value!r}")
    try:
        seconds = float(value)
    except (TypeError, ValueError) as exc:
        raise ManifestError(name, line, f"{field} is not a number: {value!r}") from exc
    if not math.isfinite(seconds):
        raise ManifestError(name, line, f"{field} is not finite: {value!r}")
    if seconds < 0:
        raise ManifestError(name, line, f"{field} is negative: {seconds:g}")
    return seconds


def _text(value: Any) -> str:
    return "" if _blank(value) else str(value)


def _row(record: dict[str, Any], name: str, line: int, base: str) -> ManifestRow:
    uri = record.get("uri")
    if _blank(uri) or (isinstance(uri, str) and not uri.strip()):
        raise ManifestError(name, line, "missing uri")
    if not isinstance(uri, str):
        raise ManifestError(name, line, f"uri is not a string: {uri!r}")
    start = _seconds(name, line, "start", record.get("start"))
    end = _seconds(name, line, "end", record.get("end"))
    if end is not None and end <= (start or 0.0):
        raise ManifestError(name, line, f"start ({start or 0.0:g}) is not before end ({end:g})")
    return ManifestRow(
        uri=resolve_uri(uri.strip(), base),
        caption=_text(record.get("caption")),
        start=start,
        end=end,
        source=_text(record.get("source")),
        license=_text(record.get("license")),
        line=line,
    )
