"""Files and folders that appear under their name complete or not at all.

Everything is written to a hidden sibling (`.<name>.<pid>.partial`) and renamed over the target,
so a reader sees the old content or the new, never a torn file, and a crash leaves only a hidden
partial behind. `durable=True` also fsyncs the file and its folder so the new content survives a
power cut once the call returns; caches that can be rebuilt skip that cost. Writers of one target
inside one process take turns (the partial name is per process); errors are `OSError`s that
name the file, for callers to wrap in their own error type.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def partial_path(target: str | os.PathLike[str]) -> Path:
    """The hidden sibling a file is written to before it is renamed into place."""
    path = Path(target)
    return path.with_name(f".{path.name}.{os.getpid()}.partial")


def _lock(target: Path) -> threading.Lock:
    key = os.path.abspath(target)
    with _locks_guard:
        return _locks.setdefault(key, threading.Lock())


def _fsync_folder(folder: Path) -> None:
    # Some filesystems refuse to open or fsync a directory; the rename itself is still atomic.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def publish(
    partial: str | os.PathLike[str], target: str | os.PathLike[str], durable: bool = True
) -> Path:
    """Rename a finished partial file over `target` (fsyncing both first when `durable`)."""
    partial, target = Path(partial), Path(target)
    if durable:
        fd = os.open(partial, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    os.replace(partial, target)
    if durable:
        _fsync_folder(target.parent)
    return target


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], *, durable: bool = True) -> Iterator[Path]:
    """A path to write `target`'s new content to (for `torch.save`, `np.save`, encoders, ...).

    On a clean exit the file there replaces `target`; on an exception it is removed and the
    exception propagates, leaving `target` as it was.
    """
    path = Path(target)
    partial = partial_path(path)
    with _lock(path):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            yield partial
            publish(partial, path, durable)
        except BaseException:
            with contextlib.suppress(OSError):
                partial.unlink()
            raise


def write_bytes(target: str | os.PathLike[str], data: bytes, *, durable: bool = True) -> Path:
    """Replace `target` with `data` atomically."""
    with atomic_path(target, durable=durable) as partial, open(partial, "wb") as handle:
        handle.write(data)
    return Path(target)


def write_text(target: str | os.PathLike[str], text: str, *, durable: bool = True) -> Path:
    """Replace `target` with UTF-8 `text` atomically."""
    return write_bytes(target, text.encode("utf-8"), durable=durable)


def write_json(
    target: str | os.PathLike[str], value: Any, *, indent: int | None = 2, durable: bool = True
) -> Path:
    """Replace `target` with `value` as JSON: sorted keys, no NaN, newline-terminated."""
    text = json.dumps(value, indent=indent, sort_keys=True, allow_nan=False) + "\n"
    return write_text(target, text, durable=durable)


@contextlib.contextmanager
def atomic_folder(target: str | os.PathLike[str]) -> Iterator[Path]:
    """A hidden folder to build `target` in; on a clean exit it replaces `target` whole.

    A stale partial folder of this process is cleared first; on an exception the partial
    folder is removed and `target` is left as it was. The old `target`, if any, is moved aside
    before the rename and deleted after it, so the new folder appears in one step.
    """
    final = Path(target)
    partial = final.with_name(f".{final.name}.{os.getpid()}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        yield partial
        old = final.with_name(f".{final.name}.{os.getpid()}.old")
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)
            final.rename(old)
        partial.rename(final)
        _fsync_folder(final.parent)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
