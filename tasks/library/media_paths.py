"""How a clip's media path is stored in the library table, and read back.

A local file inside the library's project (the nearest folder above the LanceDB folder holding
`.dvc` or `.git`, else the LanceDB folder's parent) is stored relative to the LanceDB folder, so
a second clone, a `dvc pull` on another machine or a moved project finds its own copy of the
media. Object-store URIs, files elsewhere on disk and libraries on an object store keep the path
as given. Tables written with absolute paths read back unchanged.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from story.tasks.object_store import is_remote


@lru_cache(maxsize=64)
def _library_folder(index_uri: str) -> Path | None:
    # Paths are made absolute without following symlinks: a DVC checkout may link media into its
    # cache, and the stored path must name the checkout's file, not the cache's.
    if is_remote(index_uri):
        return None
    return Path(os.path.abspath(Path(index_uri).expanduser()))


@lru_cache(maxsize=64)
def _project_root(folder: Path) -> Path:
    for parent in folder.parents:
        if (parent / ".dvc").is_dir() or (parent / ".git").exists():
            return parent
    return folder.parent


def stored_uri(index_uri: str, uri: str) -> str:
    """The form of `uri` written to the table of the library at `index_uri`."""
    folder = _library_folder(index_uri)
    if folder is None or is_remote(uri) or not os.path.isabs(uri):
        return uri
    path = Path(os.path.normpath(uri))
    if not path.is_relative_to(_project_root(folder)):
        return uri
    return Path(os.path.relpath(path, folder)).as_posix()


def media_uri(index_uri: str, stored: str) -> str:
    """A stored uri as a path or URI to open on this machine."""
    folder = _library_folder(index_uri)
    if folder is None or is_remote(stored) or os.path.isabs(stored):
        return stored
    return os.path.normpath(folder / stored)
