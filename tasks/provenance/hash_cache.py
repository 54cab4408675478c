"""sha256 of files and folders, remembered by each file's stat so unchanged files are not re-read.

A file's hash is reused while its path, size, mtime_ns, ctime_ns and inode are all unchanged
(ctime cannot be set back by tools that preserve mtime). A file modified within the last
`RACY_S` seconds is hashed but not remembered, since a second write in the same timestamp tick
could leave its stat unchanged. Folder hashes are exactly `hashing.sha256_tree`'s.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from story.tasks import atomic
from story.tasks.hashing import sha256_file, sha256_tree

RACY_S = 2.0


def _stamp(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


class HashCache:
    """Remembered file hashes in one JSON file (None: in memory only, for this process)."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self._entries: dict[str, list[Any]] | None = None
        self._dirty = False
        self._lock = threading.Lock()

    def _load(self) -> dict[str, list[Any]]:
        if self._entries is None:
            self._entries = {}
            if self.path is not None and self.path.is_file():
                try:
                    data = json.loads(self.path.read_text())
                    self._entries = data if isinstance(data, dict) else {}
                except (OSError, ValueError):
                    self._entries = {}
        return self._entries

    def file(self, path: str | os.PathLike[str]) -> str:
        """sha256 of a file's bytes, read only when its stat differs from the remembered one."""
        name = os.path.abspath(path)
        st = os.stat(name)
        stamp = _stamp(st)
        with self._lock:
            entry = self._load().get(name)
            if entry is not None and entry[:4] == stamp:
                return str(entry[4])
        digest = sha256_file(name)
        if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > RACY_S * 1e9:
            with self._lock:
                self._load()[name] = [*stamp, digest]
                self._dirty = True
        return digest

    def tree(self, path: str | os.PathLike[str]) -> str:
        """sha256 of a folder (or a file), identical to `hashing.sha256_tree`."""
        digest = sha256_tree(path, self.file)
        self.save()
        return digest

    def save(self) -> None:
        """Write remembered hashes (atomically; a lost race only costs a re-hash later)."""
        if self.path is None or not self._dirty:
            return
        with self._lock:
            data = json.dumps(self._entries, sort_keys=True)
            self._dirty = False
        with contextlib.suppress(OSError):
            atomic.write_text(self.path, data, durable=False)


_caches: dict[str, HashCache] = {}
_caches_lock = threading.Lock()


def hash_cache(workspace: str | os.PathLike[str]) -> HashCache:
    """The workspace's remembered hashes (`<workspace>/cache/sha256.json`), one per process."""
    path = os.path.abspath(Path(workspace) / "cache" / "sha256.json")
    with _caches_lock:
        if path not in _caches:
            _caches[path] = HashCache(path)
        return _caches[path]
