"""The structure store: per-frame depth (or edges, motion) of a clip, computed once per key.

A key is the content address of everything that determines the array: the clip, the model id
(which carries its checkpoint hash), the sampled frame indices, the output resolution and the
normalisation. Each entry is one float16 `.npz` under `<root>/<2-char prefix>/<key>.npz` with a
JSON sidecar holding the key's parts. Files rather than a Lance table because entries are
write-once blobs produced by many actors at once: a file per key needs no table commit (so no
writer conflicts or compaction), and a reader loads one key without touching the rest.

The root is a local folder (default `<workspace>/depth`) or an object-store prefix
(`STORY_DEPTH_STORE_URI=s3://bucket/prefix`, reached with `STORY_STORAGE_OPTIONS`). Publishing
an entry is what makes it visible, and it happens in one step: locally a temporary file is
renamed over the key (`story.tasks.atomic`); on an object store the `.npz` is serialised in
memory and sent as one PUT, which the store exposes only once complete. The sidecar goes first,
so an `.npz` implies both, and a reader never sees a partial array. Entries never change under a
key, so a remote store keeps a local read cache (`<workspace>/cache/depth`) that needs no
invalidation: a cached entry that fails to load is fetched again.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from story.tasks import atomic
from story.tasks.errors import StoryError
from story.tasks.hashing import sha256_json
from story.tasks.library.media_paths import stored_uri
from story.tasks.object_store import is_remote

if TYPE_CHECKING:
    from story.tasks.settings import Settings

KEY_LENGTH = 32
KEY_VERSION = 1
LIST_ABOVE = 64  # asking about more keys than this lists the remote store once instead


class StructureStoreError(StoryError):
    """A store entry is missing or cannot be read, or the store cannot be written."""


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


ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the zip epoch: an entry's bytes carry no write time


def _encode(array: np.ndarray) -> bytes:
    """The entry's bytes: the float16 array and the sha256 of its bytes, checked on every read.

    An `.npz` as `np.savez` writes it, except that each member's zip time is fixed, so equal
    arrays give equal bytes (`np.savez` stamps the current time, which made every rebuilt store
    differ)."""
    data = np.ascontiguousarray(array, dtype=np.float16)
    members = {"structure": data, "sha256": np.array(hashlib.sha256(data.tobytes()).hexdigest())}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, value in members.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, value, allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_TIME)
            info.external_attr = 0o600 << 16
            archive.writestr(info, member.getvalue())
    return buffer.getvalue()


def _decode(source: Path | bytes, where: str) -> np.ndarray:
    """An entry's array as float32; StructureStoreError names `where` when it does not load or
    its content no longer matches the sha256 stored with it (entries without one only get the
    zip CRC check)."""
    try:
        with np.load(io.BytesIO(source) if isinstance(source, bytes) else source) as data:
            array = data["structure"]
            stored = str(data["sha256"]) if "sha256" in data.files else None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise StructureStoreError(f"{where}: unreadable structure entry: {exc}") from exc
    if stored is not None and hashlib.sha256(array.tobytes()).hexdigest() != stored:
        raise StructureStoreError(f"{where}: structure entry fails its sha256 check")
    return array.astype(np.float32)


class DepthStore:
    """Content-addressed structure arrays under a local folder or an object-store prefix.

    `storage_options` (LanceDB key names, as in the settings) reach an object store; `cache` is
    the local folder that keeps entries read from or written to it.
    """

    def __init__(
        self,
        root: str | Path,
        storage_options: dict[str, str] | None = None,
        cache: str | Path | None = None,
    ) -> None:
        self.remote = is_remote(str(root))
        self.root: str | Path = str(root).rstrip("/") if self.remote else Path(root)
        self.storage_options = dict(storage_options or {})
        self.cache = DepthStore(cache) if self.remote and cache is not None else None
        self._fs: Any = None

    @classmethod
    def from_settings(cls, settings: Settings) -> DepthStore:
        """The store the settings name (`depth_store_uri`, default `<workspace>/depth`)."""
        root = settings.depth_store
        if is_remote(root):
            cache = Path(settings.workspace) / "cache" / "depth"
            return cls(root, settings.storage_options, cache=cache)
        return cls(Path(root))

    @property
    def fs(self) -> Any:
        """The fsspec filesystem of a remote root (created on first use)."""
        if self._fs is None:
            from story.tasks.object_store import filesystem

            self._fs = filesystem(str(self.root), self.storage_options)[0]
        return self._fs

    def path(self, key: StructureKey | str) -> Any:
        """Where the key's `.npz` lives: a Path for a local root, a URI for a remote one."""
        digest = _digest(key)
        if self.remote:
            return posixpath.join(str(self.root), digest[:2], f"{digest}.npz")
        return Path(self.root) / digest[:2] / f"{digest}.npz"

    def meta_path(self, key: StructureKey | str) -> Any:
        where = self.path(key)
        return where[: -len(".npz")] + ".json" if self.remote else where.with_suffix(".json")

    def _remote_call(self, uri: str, action: str, call: Any) -> Any:
        """One object-store call; a missing object stays FileNotFoundError, others name `uri`."""
        try:
            return call()
        except FileNotFoundError:
            raise
        except Exception as exc:  # noqa: BLE001 - botocore/aiohttp errors are not all OSError
            raise StructureStoreError(f"{uri}: cannot {action} the depth store: {exc}") from exc

    def has(self, key: StructureKey | str) -> bool:
        if not self.remote:
            return self.path(key).is_file()
        uri = self.path(key)
        path = self.fs._strip_protocol(uri)
        self.fs.invalidate_cache(path)
        return bool(self._remote_call(uri, "reach", lambda: self.fs.exists(path)))

    def missing(self, keys: Iterable[StructureKey | str]) -> list[str]:
        """The digests among `keys` with no entry (a remote store is listed once for many)."""
        digests = list(dict.fromkeys(_digest(k) for k in keys))
        if self.remote and len(digests) > LIST_ABOVE:
            stored = set(self.keys())
            return [d for d in digests if d not in stored]
        return [d for d in digests if not self.has(d)]

    def get(self, key: StructureKey | str) -> np.ndarray:
        """The stored array as float32; raises StructureStoreError when missing or unreadable."""
        digest = _digest(key)
        if not self.remote:
            path = self.path(digest)
            if not path.is_file():
                raise StructureStoreError(f"{path}: no stored structure for key {digest}")
            return _decode(path, str(path))
        if self.cache is not None and self.cache.has(digest):
            try:
                return self.cache.get(digest)
            except StructureStoreError:
                pass  # a damaged cached copy is fetched again below
        uri = self.path(digest)
        try:
            data = self._remote_call(uri, "read", lambda: self.fs.cat_file(uri))
        except FileNotFoundError as exc:
            raise StructureStoreError(f"{uri}: no stored structure for key {digest}") from exc
        array = _decode(bytes(data), uri)
        if self.cache is not None:
            atomic.write_bytes(self.cache.path(digest), bytes(data), durable=False)
        return array

    def meta(self, key: StructureKey | str) -> dict[str, Any]:
        """The sidecar: the key's parts plus whatever the writer recorded."""
        where = self.meta_path(key)
        if not self.remote:
            if not where.is_file():
                raise StructureStoreError(f"{where}: no sidecar for key {_digest(key)}")
            return json.loads(where.read_text())
        try:
            data = self._remote_call(where, "read", lambda: self.fs.cat_file(where))
        except FileNotFoundError as exc:
            raise StructureStoreError(f"{where}: no sidecar for key {_digest(key)}") from exc
        return json.loads(bytes(data))

    def put(
        self, key: StructureKey | str, array: np.ndarray, meta: dict[str, Any] | None = None
    ) -> Any:
        """Store an array as float16 with its sidecar (sidecar first: an `.npz` implies both)."""
        digest = _digest(key)
        record = {"key": digest, "shape": list(array.shape), "dtype": "float16", **(meta or {})}
        if isinstance(key, StructureKey):
            record.update(key.parts())
        if isinstance(record.get("uri"), str):
            # Relative to the store when the clip lives in the same project: no machine's path.
            record["uri"] = stored_uri(str(self.root), record["uri"])
        sidecar = json.dumps(record, indent=2, sort_keys=True, default=str).encode("utf-8")
        data = _encode(array)
        if not self.remote:
            atomic.write_bytes(self.meta_path(digest), sidecar, durable=False)
            atomic.write_bytes(self.path(digest), data, durable=False)
            return self.path(digest)
        for where, payload in ((self.meta_path(digest), sidecar), (self.path(digest), data)):
            self._remote_call(where, "write", lambda w=where, p=payload: self.fs.pipe_file(w, p))
        if self.cache is not None:
            atomic.write_bytes(self.cache.path(digest), data, durable=False)
        return self.path(digest)

    def keys(self) -> Iterator[str]:
        """Every stored key (digest), in no particular order."""
        if not self.remote:
            if Path(self.root).is_dir():
                for path in Path(self.root).glob("??/*.npz"):
                    yield path.stem
            return
        base = self.fs._strip_protocol(str(self.root))
        self.fs.invalidate_cache(base)
        try:
            found = self._remote_call(str(self.root), "list", lambda: self.fs.find(base))
        except FileNotFoundError:
            return
        for item in found:
            parent, name = posixpath.split(item)
            if name.endswith(".npz") and len(posixpath.basename(parent)) == 2:
                yield name[: -len(".npz")]


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
    from story.tasks.library.media import read_frames

    clip_id, uri, indices = clip_fields(clip)
    key = make_key(clip_id, estimator.model_id, indices, size, normalize)
    try:
        return store.get(key)
    except StructureStoreError:
        pass  # missing, or damaged: computed and (over)written below
    if frames is None:
        frames = read_frames(uri, indices)
    array = estimator.estimate(frames, size=size, normalize=normalize)
    store.put(key, array, {"uri": uri})
    return store.get(key)
