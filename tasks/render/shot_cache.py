"""Rendered shots on disk, addressed by the hash of everything that determines their frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from story.tasks.atomic import atomic_path


class ShotCache:
    """`<root>/<key[:2]>/<key>.npy`; a write is atomic, an unreadable entry is a miss."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npy"

    def get(self, key: str) -> np.ndarray | None:
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            return None

    def put(self, key: str, frames: np.ndarray) -> None:
        with atomic_path(self.path(key), durable=False) as partial, partial.open("wb") as handle:
            np.save(handle, frames, allow_pickle=False)
