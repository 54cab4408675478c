"""Local paths and object-store URIs behind one small API, configured by `storage_options` alone.

`Settings.storage_options` uses LanceDB's (Rust `object_store`) key names, e.g.
`{"aws_endpoint": "http://minio:9000", "aws_access_key_id": ..., "aws_secret_access_key": ...,
"aws_region": "us-east-1", "allow_http": "true"}`; LanceDB takes them as they are. fsspec (s3fs)
names the same things differently, so `fsspec_options` translates them, and `configure_fsspec`
installs them as fsspec's per-protocol defaults, so that every `fsspec.open("s3://...")` in the
process (manifests, media, depth, renders) reaches the same store without passing options around.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

from story.tasks.errors import StoryError

__all__ = [
    "ObjectStoreError",
    "configure_fsspec",
    "exists",
    "filesystem",
    "fsspec_options",
    "get_file",
    "is_remote",
    "join",
    "list_files",
    "put_file",
    "read_bytes",
    "write_bytes",
]

# LanceDB / object_store key -> s3fs keyword (the object_store aliases are accepted too).
_S3_KEYS = {
    "aws_access_key_id": "key",
    "access_key_id": "key",
    "aws_secret_access_key": "secret",
    "secret_access_key": "secret",
    "aws_session_token": "token",
    "session_token": "token",
    "aws_endpoint": "endpoint_url",
    "aws_endpoint_url": "endpoint_url",
    "endpoint": "endpoint_url",
    "endpoint_url": "endpoint_url",
}
_S3_REGION_KEYS = ("aws_region", "region", "aws_default_region")
# object_store's request timeouts ("30s", "500ms", "2") -> botocore's, in seconds.
_S3_TIMEOUT_KEYS = {"timeout": "read_timeout", "connect_timeout": "connect_timeout"}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s)?\s*$")


def _seconds(key: str, value: str) -> float:
    match = _DURATION.match(str(value))
    if not match:
        raise ObjectStoreError(f"storage option {key}={value!r}: expected a duration like 30s")
    number = float(match.group(1))
    return number / 1000 if match.group(2) == "ms" else number


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]+://")


def is_remote(uri: str) -> bool:
    """True for object-store and other URIs with a scheme, except `file://`."""
    return bool(_SCHEME.match(uri)) and not uri.lower().startswith("file://")


class ObjectStoreError(StoryError):
    """An object-store path cannot be read or written."""


def fsspec_options(storage_options: dict[str, str] | None, protocol: str = "s3") -> dict[str, Any]:
    """s3fs keyword arguments for LanceDB-style storage options (other protocols: as they are)."""
    options = dict(storage_options or {})
    if protocol not in ("s3", "s3a"):
        return options
    out: dict[str, Any] = {}
    client: dict[str, Any] = {}
    config: dict[str, Any] = {}
    for key, value in options.items():
        name = key.lower()
        if name in _S3_KEYS:
            out[_S3_KEYS[name]] = value
        elif name in _S3_REGION_KEYS:
            client["region_name"] = value
        elif name in _S3_TIMEOUT_KEYS:
            config[_S3_TIMEOUT_KEYS[name]] = _seconds(key, value)
    if client:
        out["client_kwargs"] = client
    if config:
        out["config_kwargs"] = config
    return out


def configure_fsspec(storage_options: dict[str, str] | None) -> None:
    """Make these options fsspec's defaults for s3:// URIs in this process (no-op when empty)."""
    if not storage_options:
        return
    import fsspec.config

    options = fsspec_options(storage_options, "s3")
    for protocol in ("s3", "s3a"):
        fsspec.config.conf[protocol] = dict(options)


def _protocol(uri: str) -> str:
    return uri.split("://", 1)[0].lower() if is_remote(uri) else "file"


def filesystem(uri: str, storage_options: dict[str, str] | None = None) -> tuple[Any, str]:
    """The fsspec filesystem for `uri` and the path inside it (local paths use the local fs)."""
    import fsspec

    protocol = _protocol(uri)
    if protocol == "file":
        return fsspec.filesystem("file"), str(Path(uri).expanduser().absolute())
    fs, path = fsspec.core.url_to_fs(uri, **fsspec_options(storage_options, protocol))
    return fs, path


def join(base: str, *parts: str) -> str:
    """`base` joined with `parts` ('/' for URIs, the OS separator for local paths)."""
    if is_remote(base):
        return posixpath.join(base.rstrip("/"), *parts)
    return str(Path(base, *parts))


def exists(uri: str, storage_options: dict[str, str] | None = None) -> bool:
    """True when a file (or folder) exists at `uri`."""
    fs, path = filesystem(uri, storage_options)
    return bool(fs.exists(path))


def put_file(local: str | Path, uri: str, storage_options: dict[str, str] | None = None) -> str:
    """Copy a local file to `uri` (an object-store PUT replaces the object whole); returns uri."""
    local = Path(local)
    if not local.is_file():
        raise ObjectStoreError(f"{local}: no such file to upload")
    fs, path = filesystem(uri, storage_options)
    parent = posixpath.dirname(path) if is_remote(uri) else str(Path(path).parent)
    if not is_remote(uri):
        fs.makedirs(parent, exist_ok=True)
    try:
        fs.put_file(str(local), path)
    except OSError as exc:
        raise ObjectStoreError(f"{uri}: upload of {local} failed: {exc}") from exc
    return uri


def get_file(uri: str, local: str | Path, storage_options: dict[str, str] | None = None) -> Path:
    """Copy `uri` to a local file (parents created); returns the local path."""
    local = Path(local)
    local.parent.mkdir(parents=True, exist_ok=True)
    fs, path = filesystem(uri, storage_options)
    try:
        fs.get_file(path, str(local))
    except FileNotFoundError as exc:
        raise ObjectStoreError(f"{uri}: no such object") from exc
    except OSError as exc:
        raise ObjectStoreError(f"{uri}: download failed: {exc}") from exc
    return local


def read_bytes(uri: str, storage_options: dict[str, str] | None = None) -> bytes:
    """The whole object (or local file) as bytes."""
    fs, path = filesystem(uri, storage_options)
    try:
        return bytes(fs.cat_file(path))
    except FileNotFoundError as exc:
        raise ObjectStoreError(f"{uri}: no such object") from exc


def write_bytes(uri: str, data: bytes, storage_options: dict[str, str] | None = None) -> str:
    """Write `data` to `uri` in one piece; returns uri."""
    fs, path = filesystem(uri, storage_options)
    if not is_remote(uri):
        fs.makedirs(str(Path(path).parent), exist_ok=True)
    fs.pipe_file(path, data)
    return uri


def list_files(
    uri: str, suffixes: tuple[str, ...] = (), storage_options: dict[str, str] | None = None
) -> list[str]:
    """Every file under the folder `uri` (recursive, sorted) as full URIs / absolute paths."""
    fs, path = filesystem(uri, storage_options)
    if not fs.exists(path):
        raise ObjectStoreError(f"{uri}: no such folder")
    if not fs.isdir(path):
        raise ObjectStoreError(f"{uri}: not a folder")
    found = sorted(fs.find(path))
    wanted = tuple(s.lower() for s in suffixes)
    protocol = _protocol(uri)
    out = []
    for item in found:
        if wanted and not item.lower().endswith(wanted):
            continue
        out.append(item if protocol == "file" else f"{protocol}://{item}")
    return out
