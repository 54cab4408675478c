"""The structure store: per-frame depth (or edges, motion) of a clip, computed once per key.

A key is the content address of everything that determines the array: the clip, the model id
(which carries its checkpoint hash), the sampled frame indices, the output resolution and the
normalisation. Each entry is one float16 `.npz` under `<root>/<2-char prefix>/<key>.npz` with a
JSON sidecar holding the key's parts. Files rather than a Lance table because entries are
write-once blobs produced by many actors at once: a file per key needs no table commit (so no
writer conflicts or compaction), is made crash-safe by writing a temporary file and `os.replace`,
and a reader loads one key without touching the rest.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from story.tasks.errors import StoryError
from story.tasks.hashing import sha256_json

KEY_LENGTH = 32
KEY_VERSION = 1


class StructureStoreError(StoryError):
    """A store entry is missing or cannot be read."""


class StructureEstimator(Protocol):
    """Anything that turns frames into a structure map: depth estimators, edges, motion."""

    model_id: str

    def estimate(
        self, frames: np.ndarray, *, size: tuple[int, int] | None = None, normalize: str = "frame"
    ) -> np.ndarray: ...


@dataclass(frozen=True)
class StructureKey:
    """What determines one stored structure array."""

    clip_id: str
    model_id: str
    frame_indices: tuple[int, ...]
    size: tuple[int, int] | None
    normalize: str = "frame"

    @property
    def digest(self) -> str:
        """The content address: a prefix of the sha256 of the canonical key parts."""
        return sha256_json({"v": KEY_VERSION, **self.parts()})[:KEY_LENGTH]

    def parts(self) -> dict[str, Any]:
        data = asdict(self)
        data["frame_indices"] = list(self.frame_indices)
        data["size"] = None if self.size is None else list(self.size)
        return data


def make_key(
    clip_id: str,
    model_id: str,
    frame_indices: Sequence[int],
    size: tuple[int, int] | None,
    normalize: str = "frame",
) -> StructureKey:
    """A key with plain-int indices and size, so equal inputs give equal digests."""
    return StructureKey(
        clip_id=str(clip_id),
        model_id=str(model_id),
        frame_indices=tuple(int(i) for i in frame_indices),
        size=None if size is None else (int(size[0]), int(size[1])),
        normalize=normalize,
    )


def _digest(key: StructureKey | str) -> str:
    return key.digest if isinstance(key, StructureKey) else str(key)


def _write_atomic(path: Path, write: Any) -> None:
    """Write through a temporary file in the same folder, then rename over the target."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class DepthStore:
    """Content-addressed structure arrays under a folder (default `<workspace>/depth`)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, key: StructureKey | str) -> Path:
        digest = _digest(key)
        return self.root / digest[:2] / f"{digest}.npz"

    def meta_path(self, key: StructureKey | str) -> Path:
        return self.path(key).with_suffix(".json")

    def has(self, key: StructureKey | str) -> bool:
        return self.path(key).is_file()

    def get(self, key: StructureKey | str) -> np.ndarray:
        """The stored array as float32; raises StructureStoreError when missing or unreadable."""
        path = self.path(key)
        if not path.is_file():
            raise StructureStoreError(f"{path}: no stored structure for key {_digest(key)}")
        try:
            with np.load(path) as data:
                return data["structure"].astype(np.float32)
        except (OSError, ValueError, KeyError) as exc:
            raise StructureStoreError(f"{path}: unreadable structure entry: {exc}") from exc

    def meta(self, key: StructureKey | str) -> dict[str, Any]:
        """The sidecar: the key's parts plus whatever the writer recorded."""
        path = self.meta_path(key)
        if not path.is_file():
            raise StructureStoreError(f"{path}: no sidecar for key {_digest(key)}")
        return json.loads(path.read_text())

    def put(
        self, key: StructureKey | str, array: np.ndarray, meta: dict[str, Any] | None = None
    ) -> Path:
        """Store an array as float16 with its sidecar (sidecar first: an `.npz` implies both)."""
        digest = _digest(key)
        record = {"key": digest, "shape": list(array.shape), "dtype": "float16", **(meta or {})}
        if isinstance(key, StructureKey):
            record.update(key.parts())
        sidecar = json.dumps(record, indent=2, default=str).encode("utf-8")
        _write_atomic(self.meta_path(digest), lambda handle: handle.write(sidecar))
        half = np.ascontiguousarray(array, dtype=np.float16)
        _write_atomic(self.path(digest), lambda handle: np.savez(handle, structure=half))
        return self.path(digest)

    def keys(self) -> Iterator[str]:
        """Every stored key (digest), in no particular order."""
        if not self.root.is_dir():
            return
        for path in self.root.glob("??/*.npz"):
            yield path.stem


def clip_fields(clip: Any) -> tuple[str, str, list[int]]:
    """(clip_id, uri, frame indices) from a clip-table row (dict or Series) or (uri, indices)."""
    if isinstance(clip, tuple) and len(clip) == 2:
        uri, indices = clip
        indices = [int(i) for i in indices]
        return uri_clip_id(str(uri), indices), str(uri), indices
    try:
        return str(clip["clip_id"]), str(clip["uri"]), [int(i) for i in clip["frame_indices"]]
    except (KeyError, TypeError) as exc:
        raise StructureStoreError(
            f"a clip needs clip_id, uri and frame_indices (or be a (uri, indices) pair): {exc}"
        ) from exc


def uri_clip_id(uri: str, indices: Sequence[int]) -> str:
    """An id for frames addressed by path alone: the file's bytes and the indices decide it."""
    from story.tasks.hashing import sha256_file

    path = Path(uri)
    if not path.is_file():
        raise StructureStoreError(f"{uri}: media file not found")
    return "file-" + sha256_json({"sha": sha256_file(path), "indices": list(indices)})[:16]


def get_or_compute_depth(
    store: DepthStore,
    estimator: StructureEstimator,
    clip: Any,
    *,
    size: tuple[int, int] | None = None,
    normalize: str = "frame",
    frames: np.ndarray | None = None,
) -> np.ndarray:
    """The clip's structure from the store, computing and storing it first when missing.

    `frames`: the clip's frames at its indices when the caller already decoded them.
    """
    from story.tasks.media import read_frames

    clip_id, uri, indices = clip_fields(clip)
    key = make_key(clip_id, estimator.model_id, indices, size, normalize)
    if store.has(key):
        try:
            return store.get(key)
        except StructureStoreError:
            pass  # a damaged entry is recomputed and overwritten below
    if frames is None:
        frames = read_frames(uri, indices)
    array = estimator.estimate(frames, size=size, normalize=normalize)
    store.put(key, array, {"uri": uri})
    return store.get(key)
