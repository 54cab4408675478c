"""Content hashing: sha256 of bytes, files, folders and canonical JSON, and the render id.

Every artifact is addressed by content, so the same inputs always give the same ids. Canonical
JSON sorts keys, drops insignificant whitespace and refuses NaN/Infinity, so a dict hashes the
same on every machine and Python version.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path, PurePath
from typing import Any

import numpy as np

_CHUNK = 1 << 20
RENDER_ID_LENGTH = 16


def to_plain(value: Any) -> Any:
    """Turn paths, tuples, sets and numpy scalars/arrays into plain JSON values."""
    if isinstance(value, Mapping):
        return {str(key): to_plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(item) for item in value]
    if isinstance(value, set | frozenset):
        return sorted(to_plain(item) for item in value)
    if isinstance(value, PurePath):
        return value.as_posix()
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"cannot hash a non-finite number: {value!r}")
    if hasattr(value, "tolist") and type(value).__module__ == "numpy":
        return to_plain(value.tolist())
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"cannot hash a value of type {type(value).__name__}: {value!r}")


def canonical_json(value: Any) -> bytes:
    """UTF-8 JSON with sorted keys and no whitespace: equal values give equal bytes."""
    return json.dumps(
        to_plain(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of a byte string."""
    return hashlib.sha256(data).hexdigest()


def sha256_json(value: Any) -> str:
    """Hex sha256 of the canonical JSON of a value."""
    return sha256_bytes(canonical_json(value))


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_tree(
    path: str | os.PathLike[str], file_hash: Callable[[Path], str] = sha256_file
) -> str:
    """Hex sha256 of a folder: every regular file's relative path and content, in sorted order.

    A single file hashes like `sha256_file`, so callers need not care which one a checkpoint is.
    `file_hash` gives each file's hex sha256 (a cache may remember them instead of re-reading).
    """
    root = Path(path)
    if root.is_file():
        return file_hash(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such file or folder")
    digest = hashlib.sha256()
    files = sorted(p for p in root.rglob("*") if p.is_file())
    for file in files:
        digest.update(file.relative_to(root).as_posix().encode("utf-8"))
        digest.update(b"\0")
        digest.update(file_hash(file).encode("ascii"))
        digest.update(b"\n")
    return digest.hexdigest()


def render_id(inputs: Mapping[str, Any]) -> str:
    """Id of a render: a prefix of the hash of everything that determines its frames."""
    return sha256_json(inputs)[:RENDER_ID_LENGTH]


def frames_sha256(frames: Any) -> str:
    """Hex sha256 of an array's shape, dtype and bytes: equal only for identical frames."""
    array = np.ascontiguousarray(frames)
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()
